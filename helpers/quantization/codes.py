"""The arithmetic of linear quantization: integer codes, scales and zero-points, clipping ratios.

A real number ``x`` is stored as an integer code ``q`` with a **scale** ``s`` and a **zero-point**
``z``: ``q = clamp(round(x / s) + z, q_min, q_max)``, ``x_hat = s * (q - z)``. Weights are
symmetric (``z = 0``, narrow range, one scale per output channel or per tensor); activations are
unsigned with one scale and zero-point per tensor. ``"mse"`` clipping picks the ratio of the maximum
that minimises the squared error (``quantization.fake`` applies all of this to the course CNN).
"""
from __future__ import annotations

import torch
from torch import Tensor

BIT_WIDTHS = (2, 4, 6, 8)
CLIP_METHODS = ("max", "mse")
GRANULARITIES = ("channel", "tensor")  # weight scales: one per output channel, or one per layer
MSE_RATIOS = torch.linspace(0.2, 1.0, 41)  # candidate clipping ratios of the max, for "mse"


# ----------------------------------------------------------------------------------------------
# The math
# ----------------------------------------------------------------------------------------------
def check_bits(bits, what: str = "bits", allow_float: bool = False):
    """``bits`` as an int in 2..8 (or None = float when ``allow_float``); a clear error otherwise."""
    if bits is None and allow_float:
        return None
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 8:
        allowed = "an integer from 2 to 8" + (" or None (float)" if allow_float else "")
        raise ValueError(f"{what} must be {allowed}, got {bits!r}")
    return bits


def symmetric_range(bits: int) -> tuple[int, int]:
    """Narrow signed range ``(-(2^(b-1)-1), 2^(b-1)-1)``: ``2^b - 1`` levels, zero in the middle."""
    qmax = 2 ** (check_bits(bits) - 1) - 1
    return -qmax, qmax


def unsigned_range(bits: int) -> tuple[int, int]:
    """``(0, 2^b - 1)``: the ``2^b`` levels of an unsigned activation code."""
    return 0, 2 ** check_bits(bits) - 1


def _check_clip(clip: str) -> str:
    if clip not in CLIP_METHODS:
        raise ValueError(f"clip must be one of {CLIP_METHODS}, got {clip!r}")
    return clip


def _check_granularity(granularity: str) -> str:
    if granularity not in GRANULARITIES:
        raise ValueError(f"weight granularity must be one of {GRANULARITIES}, got {granularity!r}")
    return granularity


@torch.no_grad()
def clip_ratios(weight: Tensor, bits: int, clip: str = "mse") -> Tensor:
    """Per output channel, the fraction of ``max |w_c|`` to clip at (1 for ``"max"``).

    ``"mse"`` picks, out of ``MSE_RATIOS``, the ratio that minimises the channel's squared error.
    """
    qmin, qmax = symmetric_range(bits)
    w2d = weight.detach().reshape(weight.shape[0], -1).float()
    max_abs = w2d.abs().amax(1).clamp(min=1e-12)
    if _check_clip(clip) == "max":
        return torch.ones_like(max_abs)
    ratios = MSE_RATIOS.to(w2d.device)
    nonzero = w2d.ne(0).flatten()
    if w2d.shape[0] > 1 and 2 * int(nonzero.sum()) < w2d.numel():  # a pruned layer, half zeros or more
        return ratios[_pruned_clip_errors(w2d, nonzero, max_abs, ratios, qmin, qmax).argmin(0)]
    errors = []
    chunk = max(1, 4_000_000 // w2d.numel())  # candidate ratios evaluated at once (bounded memory)
    for rs in ratios.split(chunk):
        scale = (rs[:, None] * max_abs[None, :] / qmax)[..., None]  # ratios x channels x 1
        err = (w2d[None] / scale).round_().clamp_(qmin, qmax).mul_(scale).sub_(w2d[None])
        errors.append(err.pow_(2).mean(-1))
    return ratios[torch.cat(errors).argmin(0)]


def _pruned_clip_errors(w2d: Tensor, nonzero: Tensor, max_abs: Tensor, ratios: Tensor, qmin: int, qmax: int
                        ) -> Tensor:
    """``clip_ratios``' squared-error table (ratios x channels) of a mostly-zero weight, bit for bit.

    A zero weight quantizes to exactly 0 (error 0) at every ratio, so the elementwise errors are
    computed on the non-zero weights only and written into a tensor of zeros of the weight's shape,
    whose per-channel means are then taken by the same reduction as in the dense computation (the
    same values in the same places: the same sums). A 90%-sparse layer costs about a fifth.
    """
    index = nonzero.nonzero().squeeze(1)
    values = w2d.flatten().index_select(0, index)
    channel_max = max_abs.index_select(0, index // w2d.shape[1])
    squared = torch.zeros_like(w2d)
    flat = squared.view(-1)
    errors = torch.empty(len(ratios), w2d.shape[0], device=w2d.device)
    for i, ratio in enumerate(ratios):
        scale = ratio * channel_max / qmax  # the dense path's scale, elementwise the same ops
        flat.index_copy_(0, index, (values / scale).round_().clamp_(qmin, qmax).mul_(scale).sub_(values).pow_(2))
        errors[i] = squared.mean(-1)
    return errors


@torch.no_grad()
def weight_scales(weight: Tensor, bits: int, clip: str = "mse", ratios: Tensor | None = None) -> Tensor:
    """One symmetric scale per output channel (dim 0): ``s_c = r_c max|w_c| / (2^(b-1) - 1)``.

    ``r_c``: the given ``ratios``, else ``clip_ratios(weight, bits, clip)`` (1 for ``"max"``:
    nothing is clipped).
    """
    _, qmax = symmetric_range(bits)
    max_abs = weight.detach().reshape(weight.shape[0], -1).abs().amax(1).float().clamp(min=1e-12)
    if ratios is None:
        ratios = clip_ratios(weight, bits, clip)
    return ratios * max_abs / qmax


def activation_qparams(lo: float, hi: float, bits: int) -> tuple[float, int]:
    """Asymmetric (unsigned) ``(scale, zero_point)`` that maps ``[lo, hi]`` onto ``[0, 2^b - 1]``.

    The range is widened to include 0 so that zero is exactly representable (``q = z``).
    """
    qmin, qmax = unsigned_range(bits)
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = max((hi - lo) / (qmax - qmin), 1e-8)
    zero_point = int(min(max(round(qmin - lo / scale), qmin), qmax))
    return scale, zero_point


def quantize_weight(weight: Tensor, scales: Tensor, bits: int) -> Tensor:
    """Integer codes (int8) of a weight with per-output-channel symmetric ``scales``."""
    # through the same kernel as the forward pass, so that codes * scales is bit-for-bit the
    # weight the fake-quantized model computes with (x / s and x * (1/s) can round differently)
    shape = (-1,) + (1,) * (weight.ndim - 1)
    fq = fake_quantize_weight(weight.detach().float(), scales, bits)
    return (fq / scales.float().reshape(shape)).round().to(torch.int8)


def dequantize_weight(codes: Tensor, scales: Tensor) -> Tensor:
    """``s_c * q``: float weights from integer codes and per-channel scales."""
    shape = (-1,) + (1,) * (codes.ndim - 1)
    return codes.float() * scales.float().reshape(shape)


def _clamp_straight(q: Tensor, qmin: int, qmax: int) -> Tensor:
    """``clamp(q, qmin, qmax)`` whose gradient is 1 where ``qmin <= q <= qmax``, the bounds included
    (the fused fake-quantize kernels' rule; ``torch.clamp`` gives 0 on the bounds), else 0."""
    return torch.where((q >= qmin) & (q <= qmax), q, q.detach().clamp(qmin, qmax))


def fake_quantize_weight(weight: Tensor, scales: Tensor, bits: int, round_fn=None) -> Tensor:
    """Quantize-dequantize per output channel (symmetric, narrow); gradient = straight-through.

    ``round_fn``: a straight-through rounding (forward ``round``, gradient 1; e.g. a learner's
    ``ste_round``) in place of PyTorch's fused kernel, whose rule it spells out: the same values bit
    for bit (``w * (1/s)``, as the kernel computes), gradient 1 where the code is not clamped, else 0.
    """
    qmin, qmax = symmetric_range(bits)
    if round_fn is not None:
        s = scales.float().reshape((-1,) + (1,) * (weight.ndim - 1))
        return _clamp_straight(round_fn(weight * (1.0 / s)), qmin, qmax) * s
    zeros = torch.zeros(len(scales), dtype=torch.int32, device=weight.device)
    return torch.fake_quantize_per_channel_affine(weight, scales.float(), zeros, 0, qmin, qmax)


def fake_quantize_activation(x: Tensor, scale: Tensor, zero_point: Tensor, bits: int, round_fn=None) -> Tensor:
    """Quantize-dequantize per tensor (unsigned, asymmetric); gradient = straight-through
    (``round_fn``: as in ``fake_quantize_weight``)."""
    qmin, qmax = unsigned_range(bits)
    if round_fn is not None:
        z = torch.as_tensor(zero_point, device=x.device).float()
        return (_clamp_straight(round_fn(x * (1.0 / scale)) + z, qmin, qmax) - z) * scale
    return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, qmin, qmax)


def levels(scale: float, bits: int, zero_point: int = 0, signed: bool = True) -> Tensor:
    """The representable values ``s * (q - z)`` (symmetric narrow when ``signed``, else unsigned)."""
    qmin, qmax = symmetric_range(bits) if signed else unsigned_range(bits)
    return scale * (torch.arange(qmin, qmax + 1, dtype=torch.float32) - zero_point)


def quantization_error(weight: Tensor, bits: int, clip: str = "mse", scales_fn=None, quantize_fn=None) -> float:
    """Root-mean-square error of quantizing ``weight`` per channel at ``bits``: scales by ``clip``
    (or ``scales_fn(weight, bits)``, e.g. a learner's max|w| / (2^(b-1) - 1)), quantize-dequantize by
    ``fake_quantize_weight`` (or ``quantize_fn(weight, scales, bits)``)."""
    weight = weight.detach()
    scales = weight_scales(weight, bits, clip) if scales_fn is None else torch.as_tensor(scales_fn(weight, bits))
    quantized = (quantize_fn or fake_quantize_weight)(weight, scales.float().clamp(min=1e-12), bits)
    return (torch.as_tensor(quantized) - weight).pow(2).mean().sqrt().item()
