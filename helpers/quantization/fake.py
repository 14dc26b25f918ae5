"""Linear ("fake") quantization of the course CNN to 2/4/6/8 bits: the math, PTQ and QAT.

A real number ``x`` is stored as an integer code ``q`` with a **scale** ``s`` and a **zero-point**
``z``::

    q = clamp(round(x / s) + z, q_min, q_max)          x_hat = s * (q - z)

- **Weights**: symmetric (``z = 0``), *narrow* range ``q in [-(2^(b-1) - 1), 2^(b-1) - 1]``, i.e.
  ``2^b - 1`` levels, one scale **per output channel** (per row of a Linear, per filter of a conv),
  or, with ``weight_granularity="tensor"``, one scale for the whole layer (for comparison).
  Zero is exactly representable, and the range is symmetric so ``-w`` quantizes to ``-q``.
- **Activations**: asymmetric/unsigned, one scale and zero-point **per tensor**,
  ``q in [0, 2^b - 1]``. After a ReLU the minimum is 0, so ``z = 0`` and every level is spent on
  non-negative values; the (signed) normalised input image gets a non-zero ``z``.
- **Clipping**: the range ``[lo, hi]`` need not cover the extreme values. A tighter range gives a
  finer step ``s`` (smaller rounding error) at the price of clipping the tails. ``"max"`` covers
  everything; ``"mse"`` picks the clipping ratio that minimises the mean squared error, which
  matters at 2-4 bits.

The quantized model is the same ``FashionCNN`` (still an ``nn.Module`` taking [0, 1] images)
with BatchNorm folded into the convolutions and every Conv2d/Linear swapped for a
``QuantConv2d``/``QuantLinear`` that fake-quantizes its **input** activations and its **weights**
with ``torch.fake_quantize_per_tensor_affine`` / ``torch.fake_quantize_per_channel_affine``.
Their gradient is the straight-through estimator (identity inside the clipping range, zero
outside), which is what quantization-aware training (QAT) needs. ``qat(..., round_fn=ste_round)``
(or ``straight_through``) makes every fake quantizer round with a given straight-through rounding
instead (e.g. a learner's): the same values, that function's gradient.

Policy for the first and last layers (``edge_bits``, default 8): the first conv (whose input is the
image) and the last Linear (whose output is the logits) keep 8-bit weights and 8-bit inputs; they
hold 0.1% of the weights, so this costs nothing in size. ``edge_bits=None`` quantizes them like
every other layer (the notebook measures both).
"""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..inputs import check_finite, image_batches
from ..models import FashionCNN, build_model
from .codes import (MSE_RATIOS, _check_clip, _check_granularity, activation_qparams, check_bits, clip_ratios,
                    dequantize_weight, fake_quantize_activation, fake_quantize_weight, quantize_weight,
                    unsigned_range, weight_scales)

# ----------------------------------------------------------------------------------------------
# BatchNorm folding
# ----------------------------------------------------------------------------------------------
@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A conv with bias equal to ``bn(conv(x))`` in eval mode: ``w' = g w / sigma``,
    ``b' = beta + g (b - mu) / sigma`` with ``sigma = sqrt(var + eps)``."""
    factor = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                       conv.padding, conv.dilation, conv.groups, bias=True)
    folded.weight.copy_(conv.weight * factor.reshape(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    folded.bias.copy_(bn.bias + (bias - bn.running_mean) * factor)
    return folded.to(conv.weight.device)


def fold_batchnorm(model: FashionCNN) -> FashionCNN:
    """A copy of ``model`` (eval mode) with every BatchNorm folded into its conv (BN -> Identity)."""
    if not isinstance(model, FashionCNN):
        raise TypeError(f"fold_batchnorm expects a FashionCNN, got {type(model).__name__}")
    folded = copy.deepcopy(model).eval()
    for block in folded.features:
        if isinstance(block.bn, nn.BatchNorm2d):
            block.conv = fold_conv_bn(block.conv, block.bn)
            block.bn = nn.Identity()
    return folded


# ----------------------------------------------------------------------------------------------
# Observers and quantized layers
# ----------------------------------------------------------------------------------------------
class ActQuant(nn.Module):
    """Per-tensor activation fake-quantizer with an observer.

    ``observing = True``: pass-through, collecting the min, max and a random sample of values.
    ``compute_qparams()`` then fixes ``scale``/``zero_point`` (buffers, saved with the model).
    ``bits=None``: a float activation (identity). ``round_fn``: see ``straight_through``.
    """

    round_fn = None  # None: PyTorch's fused fake-quantize kernel

    def __init__(self, bits: int | None, clip: str = "mse", non_negative: bool = True,
                 max_samples: int = 100_000):
        super().__init__()
        self.bits = check_bits(bits, "activation bits", allow_float=True)
        self.clip, self.non_negative, self.max_samples = _check_clip(clip), non_negative, max_samples
        self.register_buffer("scale", torch.tensor(1.0))
        self.register_buffer("zero_point", torch.tensor(0, dtype=torch.int32))
        self.observing, self.calibrated = False, False
        self._samples: list[Tensor] = []
        self._rng: torch.Generator | None = None

    def extra_repr(self) -> str:
        return f"bits={self.bits}, clip={self.clip!r}, scale={self.scale.item():.4g}, zero_point={self.zero_point.item()}"

    def forward(self, x: Tensor) -> Tensor:
        if self.bits is None:
            return x
        if self.observing:
            flat = x.detach().flatten().float()
            if self._rng is None:  # a fixed seed: calibration does not depend on the global RNG
                self._rng = torch.Generator().manual_seed(len(self._samples))
            keep = torch.randint(flat.numel(), (min(flat.numel(), self.max_samples // 8),), generator=self._rng)
            self._samples.append(flat[keep.to(flat.device)].cpu())
            self._samples.append(torch.stack([flat.min(), flat.max()]).cpu())
            return x
        if not self.calibrated:
            raise RuntimeError("activation quantizer used before calibration: call calibrate(model, images)")
        return fake_quantize_activation(x, self.scale, self.zero_point, self.bits, self.round_fn)

    @torch.no_grad()
    def compute_qparams(self) -> None:
        """Set ``scale``/``zero_point`` from what was observed (``clip``: "max" or "mse")."""
        if self.bits is None:
            return
        if not self._samples:
            raise ValueError("nothing observed: run calibration images through the model first")
        values = torch.cat(self._samples)
        lo = 0.0 if self.non_negative else values.min().item()
        hi = values.max().item()
        if values.numel() > self.max_samples:
            keep = torch.randperm(values.numel(), generator=torch.Generator().manual_seed(0))
            values = values[keep[: self.max_samples]]
        ratios = MSE_RATIOS.tolist() if self.clip == "mse" else [1.0]
        qparams = [activation_qparams(lo * r, hi * r, self.bits) for r in ratios]
        scale = torch.tensor([p[0] for p in qparams])[:, None]
        zero_point = torch.tensor([p[1] for p in qparams], dtype=torch.float32)[:, None]
        qmin, qmax = unsigned_range(self.bits)
        approx = ((values[None] / scale).round_().add_(zero_point).clamp_(qmin, qmax).sub_(zero_point)).mul_(scale)
        best = qparams[int(approx.sub_(values[None]).pow_(2).mean(1).argmin())]
        self.scale.fill_(best[0])
        self.zero_point.fill_(best[1])
        self._samples, self._rng, self.observing, self.calibrated = [], None, False, True


class _QuantMixin:
    """Shared by QuantConv2d/QuantLinear: fake-quantized input and per-channel fake-quantized weight.

    The clipping ratios (buffer ``weight_clip_ratio``) are chosen at construction and calibration;
    the weight scales (buffer ``weight_scale``) follow the weights at every training step (QAT) and
    stay fixed in eval mode, so eval outputs are deterministic. ``weight_granularity="tensor"``:
    one scale (and clipping ratio) for the whole layer, repeated in every channel's slot.
    ``round_fn``: see ``straight_through``.
    """

    round_fn = None  # None: PyTorch's fused fake-quantize kernel

    def _setup(self, weight_bits, act_bits, weight_clip, act_clip, non_negative_input,
               weight_granularity="channel"):
        self.weight_bits = check_bits(weight_bits, "weight bits", allow_float=True)
        self.weight_clip = _check_clip(weight_clip)
        self.weight_granularity = _check_granularity(weight_granularity)
        self.input_quant = ActQuant(act_bits, act_clip, non_negative=non_negative_input)
        self.register_buffer("weight_scale", torch.ones(self.weight.shape[0]))
        self.register_buffer("weight_clip_ratio", torch.ones(self.weight.shape[0]))
        self.update_weight_scale(search=True)

    @torch.no_grad()
    def update_weight_scale(self, search: bool = False) -> None:
        """Scales from the current weights; ``search``: also re-choose the clipping ratios (MSE)."""
        if self.weight_bits is None:
            return
        per_tensor = self.weight_granularity == "tensor"
        weight = self.weight.reshape(1, -1) if per_tensor else self.weight  # one "channel": the layer
        if search:
            self.weight_clip_ratio.copy_(clip_ratios(weight, self.weight_bits, self.weight_clip)
                                         .expand_as(self.weight_clip_ratio))
        ratios = self.weight_clip_ratio[:1] if per_tensor else self.weight_clip_ratio
        self.weight_scale.copy_(weight_scales(weight, self.weight_bits, ratios=ratios).expand_as(self.weight_scale))

    def quantized_weight(self) -> Tensor:
        if self.weight_bits is None:
            return self.weight
        if self.training:  # QAT: the scale follows the weights (same clipping ratio, cheap)
            self.update_weight_scale()
        return fake_quantize_weight(self.weight, self.weight_scale, self.weight_bits, self.round_fn)

    def weight_codes(self) -> Tensor:
        """The integer codes of the weight (what a packed file stores)."""
        if self.weight_bits is None:
            raise ValueError("this layer keeps float weights: no integer codes")
        return quantize_weight(self.weight, self.weight_scale, self.weight_bits)


class QuantConv2d(_QuantMixin, nn.Conv2d):
    """A Conv2d whose input and weights are fake-quantized (see module docstring)."""

    def __init__(self, conv: nn.Conv2d, weight_bits, act_bits, weight_clip="mse", act_clip="mse",
                 non_negative_input=True, weight_granularity="channel"):
        nn.Conv2d.__init__(self, conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                           conv.padding, conv.dilation, conv.groups, bias=conv.bias is not None)
        self.load_state_dict(conv.state_dict())
        self._setup(weight_bits, act_bits, weight_clip, act_clip, non_negative_input, weight_granularity)

    def forward(self, x):
        return self._conv_forward(self.input_quant(x), self.quantized_weight(), self.bias)


class QuantLinear(_QuantMixin, nn.Linear):
    """A Linear whose input and weights are fake-quantized (see module docstring)."""

    def __init__(self, linear: nn.Linear, weight_bits, act_bits, weight_clip="mse", act_clip="mse",
                 non_negative_input=True, weight_granularity="channel"):
        nn.Linear.__init__(self, linear.in_features, linear.out_features, bias=linear.bias is not None)
        self.load_state_dict(linear.state_dict())
        self._setup(weight_bits, act_bits, weight_clip, act_clip, non_negative_input, weight_granularity)

    def forward(self, x):
        return F.linear(self.input_quant(x), self.quantized_weight(), self.bias)


QUANT_LAYERS = (QuantConv2d, QuantLinear)


@dataclass(frozen=True)
class QuantSpec:
    """What a quantized model is: bits of weights/activations, edge-layer policy, clipping rules."""

    weight_bits: int | None
    act_bits: int | None
    edge_bits: int | None = 8
    weight_clip: str = "mse"
    act_clip: str = "mse"
    weight_granularity: str = "channel"

    def __post_init__(self):
        check_bits(self.weight_bits, "weight_bits", allow_float=True)
        check_bits(self.act_bits, "act_bits", allow_float=True)
        check_bits(self.edge_bits, "edge_bits", allow_float=True)
        _check_clip(self.weight_clip), _check_clip(self.act_clip), _check_granularity(self.weight_granularity)
        if self.weight_bits is None and self.act_bits is None:
            raise ValueError("quantize weights, activations or both: weight_bits and act_bits are both None")

    def layer_bits(self, index: int, count: int) -> tuple[int | None, int | None]:
        """(weight bits, input-activation bits) of layer ``index`` of ``count`` (first/last policy)."""
        if self.edge_bits is not None and index in (0, count - 1):
            return (None if self.weight_bits is None else self.edge_bits,
                    None if self.act_bits is None else self.edge_bits)
        return self.weight_bits, self.act_bits

    def to_dict(self) -> dict:
        """The fields as a dict; ``weight_granularity`` only when not the default ("channel"), so
        files written before the option existed and files written now agree byte for byte."""
        fields = dict(self.__dict__)
        if fields["weight_granularity"] == "channel":
            del fields["weight_granularity"]
        return fields

    @property
    def label(self) -> str:
        per_tensor = " per-tensor" if self.weight_granularity == "tensor" and self.weight_bits else ""
        return f"W{self.weight_bits or 'f'}A{self.act_bits or 'f'}{per_tensor}"


def quantize_model(model: FashionCNN, weight_bits: int | None, act_bits: int | None,
                   edge_bits: int | None = 8, weight_clip: str = "mse", act_clip: str = "mse",
                   weight_granularity: str = "channel") -> FashionCNN:
    """A fake-quantized copy of ``model`` (BN folded, layers swapped); calibrate it before use.

    ``weight_bits``/``act_bits`` in 2..8 or None (float); ``edge_bits``: bits of the first conv and
    the last Linear (None: same as the others); ``weight_granularity``: ``"channel"`` (one weight
    scale per output channel) or ``"tensor"`` (one per layer).
    """
    spec = QuantSpec(weight_bits, act_bits, edge_bits, weight_clip, act_clip, weight_granularity)
    if quant_layers(model):
        raise ValueError("the model is already quantized: start from the float model")
    qmodel = fold_batchnorm(model)
    layers = qmodel.conv_layers() + qmodel.linear_layers()
    for i, (block, name) in enumerate(_layer_slots(qmodel)):
        w_bits, a_bits = spec.layer_bits(i, len(layers))
        cls = QuantConv2d if isinstance(getattr(block, name), nn.Conv2d) else QuantLinear
        # the first layer sees the normalised image (signed); every other input follows a ReLU
        setattr(block, name, cls(getattr(block, name), w_bits, a_bits, weight_clip, act_clip,
                                 non_negative_input=i > 0, weight_granularity=weight_granularity))
    qmodel.quant_spec = spec
    return qmodel.eval()


def _layer_slots(model: FashionCNN) -> list[tuple[nn.Module, str]]:
    """(parent module, attribute name) of every conv then every Linear, in forward order."""
    slots = [(block, "conv") for block in model.features]
    slots += [(model.classifier, name) for name, m in model.classifier.named_children()
              if isinstance(m, nn.Linear)]
    return slots


def quant_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Name -> every QuantConv2d/QuantLinear of a quantized model."""
    return {name: m for name, m in model.named_modules() if isinstance(m, QUANT_LAYERS)}


@torch.no_grad()
def observe_activations(qmodel: nn.Module, data) -> dict[str, list[Tensor]]:
    """Run ``data`` (training images: a tensor or batches) through ``qmodel`` (weights as they are,
    activations pass-through) and return what each layer's activation observer saw (name -> samples).

    ``calibrate`` is this followed by ``calibrate_from``; observations do not depend on the
    activation bits, so one pass serves every activation bit width of the same weights. Raises
    ValueError when ``data`` holds no image.
    """
    layers = quant_layers(qmodel)
    if not layers:
        raise ValueError("no quantized layers: build the model with quantize_model first")
    was_training = qmodel.training
    qmodel.eval()
    for layer in layers.values():
        layer.input_quant.observing, layer.input_quant._samples, layer.input_quant._rng = True, [], None
    seen = 0
    try:
        for images in image_batches(data):
            if len(images):
                qmodel(images.to(next(qmodel.parameters()).device))
                seen += len(images)
        if seen == 0:
            raise ValueError("calibration needs at least one image: the calibration data is empty")
        return {name: layer.input_quant._samples for name, layer in layers.items()}
    finally:
        for layer in layers.values():
            layer.input_quant.observing, layer.input_quant._samples, layer.input_quant._rng = False, [], None
        qmodel.train(was_training)


@torch.no_grad()
def calibrate_from(qmodel: nn.Module, observations: dict[str, list[Tensor]]) -> nn.Module:
    """Fix every activation quantizer's qparams from ``observe_activations``' output (not modified)."""
    for name, layer in quant_layers(qmodel).items():
        if layer.input_quant.bits is None:
            continue
        if name not in observations:
            raise ValueError(f"no observations for layer {name!r}")
        layer.input_quant._samples = list(observations[name])
        layer.input_quant.compute_qparams()
    return qmodel


@torch.no_grad()
def calibrate(qmodel: nn.Module, data, search_weight_clip: bool = True) -> nn.Module:
    """Observe activations on ``data`` (training images: a tensor or batches), fix the qparams.

    Also fixes the weight scales from the current weights (``search_weight_clip``: re-choosing the
    clipping ratios, which ``quantize_model`` has just done for unchanged weights). Raises
    ValueError when ``data`` holds no image.
    """
    layers = quant_layers(qmodel)
    if not layers:
        raise ValueError("no quantized layers: build the model with quantize_model first")
    check_finite(qmodel.state_dict(), "the model to calibrate")
    for layer in layers.values():
        layer.update_weight_scale(search=search_weight_clip)
    return calibrate_from(qmodel, observe_activations(qmodel, data))


def ptq(model: FashionCNN, calibration_data, weight_bits, act_bits, **kwargs) -> FashionCNN:
    """Post-training quantization: ``quantize_model`` then ``calibrate`` (no training)."""
    # the clipping ratios were chosen for these very weights when the layers were built
    return calibrate(quantize_model(model, weight_bits, act_bits, **kwargs), calibration_data,
                     search_weight_clip=False)


@contextlib.contextmanager
def straight_through(qmodel: nn.Module, round_fn=None):
    """Within the block, every fake quantizer of ``qmodel`` (weights and input activations) rounds
    with ``round_fn(x)`` (forward ``round(x)``, gradient 1: a straight-through rounding such as a
    learner's ``ste_round``) instead of PyTorch's fused kernel: the same values bit for bit, and the
    gradient ``round_fn`` gives (``codes.fake_quantize_weight``). None: the fused kernel. On leaving,
    each quantizer gets back the rounding it had."""
    modules = [m for layer in quant_layers(qmodel).values() for m in (layer, layer.input_quant)]
    before = [module.round_fn for module in modules]
    for module in modules:
        module.round_fn = round_fn
    try:
        yield qmodel
    finally:
        for module, previous in zip(modules, before):
            module.round_fn = previous


def qat(qmodel: FashionCNN, train_batches, epochs: int = 1, lr: float = 5e-4, round_fn=None, **fit_kwargs):
    """Quantization-aware training of a calibrated model: ``fine_tune`` through the fake quantizers.

    The straight-through estimator lets gradients reach the float weights (``round_fn``: the
    straight-through rounding the quantizers use, see ``straight_through``; None: PyTorch's fused
    kernel); activation ranges stay at their calibrated values, weight scales follow the weights.
    Returns the ``History``.
    """
    from ..training import fine_tune

    if not quant_layers(qmodel):
        raise ValueError("qat needs a model from quantize_model (and calibrate)")
    if any(m.input_quant.bits is not None and not m.input_quant.calibrated
           for m in quant_layers(qmodel).values()):
        raise ValueError("calibrate the model before QAT (activation ranges are not set)")
    with straight_through(qmodel, round_fn):
        history = fine_tune(qmodel, train_batches, epochs=epochs, lr=lr, desc=fit_kwargs.pop("desc", "QAT"),
                            **fit_kwargs)
    for layer in quant_layers(qmodel).values():
        layer.update_weight_scale(search=True)
    return history


def qat_step_changes(qmodel: nn.Module, images: Tensor, labels: Tensor, round_fn=None, lr: float = 1e-3,
                     seed: int = 0) -> dict[str, float]:
    """Mean |change| of each quantized layer's float weight after one plain SGD step of QAT on one
    batch (train mode, dropout seeded by ``seed``) with the quantizers rounding by ``round_fn``
    (see ``straight_through``; None: PyTorch's fused kernel). ``qmodel`` is untouched (a copy steps)."""
    model = copy.deepcopy(qmodel).train()
    before = {name: layer.weight.detach().clone() for name, layer in quant_layers(model).items()}
    with straight_through(model, round_fn), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        F.cross_entropy(model(images), labels).backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p -= lr * p.grad
    return {name: (layer.weight.detach() - before[name]).abs().mean().item()
            for name, layer in quant_layers(model).items()}


@torch.no_grad()
def bake_weights(qmodel: nn.Module) -> nn.Module:
    """A copy (eval mode) whose float weights are replaced by their quantized values ``s_c * q``
    (what a packed file stores): identical outputs, and weights whose code is 0 are exactly 0, so
    sparsity and non-zero counts describe the quantized model."""
    if not quant_layers(qmodel):
        raise ValueError("bake_weights expects a model from quantize_model")
    baked = copy.deepcopy(qmodel).eval()
    for layer in quant_layers(baked).values():
        if layer.weight_bits is not None:
            layer.weight.copy_(dequantize_weight(layer.weight_codes(), layer.weight_scale))
    return baked


@torch.no_grad()
def requantize_weights(qmodel: nn.Module, quantize_fn, scales_fn=None) -> nn.Module:
    """A copy (eval mode) whose quantized weights are ``quantize_fn(w, s, bits)`` (e.g. a learner's
    ``fake_quantize``), ``s`` from ``scales_fn(w, bits)`` (stored as the layer's scales; one per output
    channel, at least 1e-12 as ``weight_scales`` keeps them) or else the layer's own. The layers'
    fake quantization leaves weights already on their grid as they are, so the copy computes with
    ``quantize_fn``'s weights; activation ranges are not re-calibrated."""
    if not quant_layers(qmodel):
        raise ValueError("requantize_weights expects a model from quantize_model")
    copied = copy.deepcopy(qmodel).eval()
    for layer in quant_layers(copied).values():
        if layer.weight_bits is None:
            continue
        if scales_fn is not None:
            if layer.weight_granularity != "channel":
                raise ValueError("scales_fn gives one scale per output channel: build the model per channel")
            layer.weight_scale.copy_(torch.as_tensor(scales_fn(layer.weight.detach().clone(), layer.weight_bits))
                                     .float().clamp(min=1e-12))
        layer.weight.copy_(torch.as_tensor(quantize_fn(layer.weight.detach().clone(), layer.weight_scale.clone(),
                                                       layer.weight_bits)))
    return copied


def quantized_model_from(config: dict, spec: dict) -> nn.Module:
    """An untrained quantized model of a saved shape (``config``) and ``QuantSpec.to_dict()`` (``spec``),
    ready to receive a file's tensors."""
    return quantize_model(build_model(config), spec["weight_bits"], spec["act_bits"], edge_bits=spec["edge_bits"],
                          weight_clip=spec["weight_clip"], act_clip=spec["act_clip"],
                          weight_granularity=spec.get("weight_granularity", "channel"))
