"""Unstructured and N:M pruning masks: magnitude and Wanda, for Conv2d and Linear layers.

A *mask* is a bool tensor of a layer's weight shape (True = keep). Masks are kept in a dict
``{layer name: mask}`` (names as in ``model.named_modules()``), applied by multiplying the weights,
re-applied after every optimizer step while fine-tuning (``MaskKeeper``), and folded in before
saving, so a saved model holds plain weights with zeros.

Scores (higher = more important):

* magnitude: ``|W_ij|``;
* LAMP (Lee et al. 2021): magnitude rescaled so that a *global* ranking compares layers fairly;
* Wanda (Sun et al. 2023, locuslab/wanda ``lib/prune.py``): ``|W_ij| * ||X_j||_2``, where ``X_j`` is
  the j-th input feature of the layer over calibration images. For a Linear layer ``j`` is an input
  feature; for a Conv2d the weight is viewed as ``(C_out, C_in*k*k)`` and ``j`` runs over the rows
  of the unfolded input (im2col, ``torch.nn.functional.unfold``), so every weight of a filter has its
  own input norm. As in the official code the statistic is ``sqrt(mean over images ||x_j||^2)``
  (for a conv, ``||x_j||^2`` sums over the patch positions of one image).

Comparison groups: ``"row"`` removes exactly ``floor(s * fan_in)`` weights from every output row
(Wanda's rule), ``"layer"`` removes ``floor(s * numel)`` weights of each layer, ``"global"`` removes
``floor(s * total)`` weights over all chosen layers ranked together. N:M keeps at most N weights in
every group of M consecutive inputs (for a conv: M consecutive input channels at one kernel position,
the layout of NVIDIA's 2:4 sparse tensor cores).

Every step that is an exercise of notebook 03 or 05 (Wanda's scores, the im2col input norms, the per-row
and N:M masks, the global ranking) can run through a learner's function instead of the course's: pass an
``Implementation`` (``helpers.exercises.use`` hands out the learner's function once it passes its check).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, fields
from typing import Callable, Iterable, Mapping

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..inputs import check_finite, check_fraction, image_batches
from ..counting import prunable_weight_count
from ..models import prunable_layers
from .ranking import GlobalRanking

METHODS = ("magnitude", "wanda", "lamp")
GROUPS = ("row", "layer", "global")
LAYER_POLICIES = ("all", "inner")

Masks = dict[str, Tensor]


# --------------------------------------------------------------------------- checks and layer choice
def check_sparsity(sparsity: float) -> float:
    """``sparsity`` as a float, or a ValueError unless it is a number with ``0 <= sparsity < 1``."""
    return check_fraction(sparsity, "sparsity", "e.g. 0.9 for 90% zeros")


def check_nm(n: int, m: int) -> tuple[int, int]:
    """``(n, m)`` or a ValueError unless ``1 <= n < m`` (N:M keeps n of every m weights)."""
    if not (isinstance(n, int) and isinstance(m, int)) or n < 1 or m < 2 or n >= m:
        raise ValueError(f"N:M sparsity keeps N of every M weights and needs 1 <= N < M, got {n}:{m}")
    return n, m


def select_layers(model: nn.Module, layers: str | Iterable[str] = "all") -> dict[str, nn.Module]:
    """The layers to prune, by an explicit choice, in forward (definition) order.

    ``"all"``: every Conv2d and Linear layer; ``"inner"``: all but the first conv and the last
    (classifier output) layer, which stay dense; or an iterable of layer names.
    """
    available = prunable_layers(model)
    if isinstance(layers, str):
        if layers not in LAYER_POLICIES:
            raise ValueError(f"layers must be one of {LAYER_POLICIES} or a list of layer names, got {layers!r}")
        names = list(available)
        if layers == "inner":
            names = names[1:-1]
        return {name: available[name] for name in names}
    wanted = list(layers)
    unknown = [name for name in wanted if name not in available]
    if unknown or not wanted:
        raise ValueError(f"unknown or no layers {unknown}; prunable layers are {list(available)}")
    return {name: module for name, module in available.items() if name in wanted}


def _rows(weight: Tensor) -> Tensor:
    """The weight as a 2-D (out, fan_in) view: conv filters flattened in (C_in, k, k) order."""
    return weight.reshape(weight.shape[0], -1)


def is_learners(fn: Callable | None) -> bool:
    """Whether ``fn`` is a learner's function (defined outside ``helpers``, e.g. in a notebook)."""
    return fn is not None and not str(getattr(fn, "__module__", "")).startswith("helpers.")


@dataclass(frozen=True)
class Implementation:
    """The functions pruning runs through, by exercise name: None = the course's own; else a function
    with the exercise's signature: a learner's once it passed its check, or the exercise's reference
    (``helpers.exercises.use`` hands out the one or the other)."""

    wanda_scores: Callable[[Tensor, Tensor], Tensor] | None = None          # (weight, input_norms) -> scores
    im2col_input_norms: Callable[[Tensor, int, int], Tensor] | None = None  # (x, kernel_size, padding) -> norms
    row_mask: Callable[[Tensor, float], Tensor] | None = None               # (scores, sparsity) -> keep-mask
    nm_mask: Callable[[Tensor, int, int], Tensor] | None = None             # ((out, in) scores, n, m) -> keep-mask
    global_masks: Callable[[dict, float], dict] | None = None               # ({name: scores}, sparsity) -> masks

    def describe(self) -> str:
        """Whose functions run the steps that were set, e.g. ``"yours: wanda_scores · the reference: row_mask"``
        (the other steps run the course's own code)."""
        given = [f.name for f in fields(self) if getattr(self, f.name) is not None]
        yours = [name for name in given if is_learners(getattr(self, name))]
        reference = [name for name in given if name not in yours]
        parts = [f"{who}: {', '.join(names)}" for who, names in (("yours", yours), ("the reference", reference)) if names]
        return " · ".join(parts) or "the course's own functions"


COURSE = Implementation()  # every step the course's own


# --------------------------------------------------------------------------- activation statistics
def unfold_conv_input(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """im2col of ``x`` for ``conv``: (N, C_in*k*k, L), rows in the order of ``weight.view(C_out, -1)``."""
    if conv.groups != 1:
        raise ValueError("Wanda norms are implemented for ordinary convolutions (groups=1) only")
    if isinstance(conv.padding, str) or conv.padding_mode != "zeros":
        raise ValueError("Wanda norms need numeric zero padding on the conv layer")
    return F.unfold(x, conv.kernel_size, dilation=conv.dilation, padding=conv.padding, stride=conv.stride)


def _plain_conv(conv: nn.Conv2d) -> bool:
    """A conv whose im2col is ``F.unfold(x, k, padding=p)``: square kernel, stride and dilation 1."""
    k, p = conv.kernel_size, conv.padding
    return (k[0] == k[1] and not isinstance(p, str) and p[0] == p[1] and conv.stride == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros")


def input_sq_sums(layer: nn.Module, x: Tensor, conv_norms: Callable | None = None) -> Tensor:
    """Sum over the batch (and patch positions) of the squared inputs of each weight column j.

    ``conv_norms(x, kernel_size, padding)``: a learner's im2col input norms, used for plain convs."""
    x = x.detach().float()
    if isinstance(layer, nn.Conv2d) and conv_norms is not None and _plain_conv(layer):
        return conv_norms(x.clone(), layer.kernel_size[0], layer.padding[0]).double().pow(2).mul(len(x)).float()
    if isinstance(layer, nn.Conv2d):
        return unfold_conv_input(layer, x).pow(2).sum(dim=(0, 2))
    if isinstance(layer, nn.Linear):
        return x.reshape(-1, x.shape[-1]).pow(2).sum(dim=0)
    raise TypeError(f"Wanda handles Conv2d and Linear layers, not {type(layer).__name__}")


class _StopForward(Exception):
    """Raised by a statistics hook once every hooked layer has seen the batch."""


@torch.no_grad()
def input_norms(model: nn.Module, layers: Mapping[str, nn.Module], calibration,
                batch_size: int = 256, conv_norms: Callable | None = None) -> dict[str, Tensor]:
    """``sqrt(mean over images ||x_j||^2)`` per weight column of each layer, by forward hooks.

    ``calibration``: images (tensor) or an iterable of batches. The model runs in eval mode; the
    result for a conv has length ``C_in*k*k``, for a Linear ``in_features``. ``conv_norms``: see
    ``input_sq_sums``.
    """
    check_finite(model.state_dict(), "the model")
    batches = image_batches(calibration, batch_size, "Wanda calibration")
    sums = {name: None for name in layers}
    count, seen = 0, set()

    def hook_for(name):
        def hook(module, inputs, output):
            s = input_sq_sums(module, inputs[0], conv_norms)
            sums[name] = s if sums[name] is None else sums[name] + s
            seen.add(name)
            if len(seen) == len(sums):  # every hooked layer has its input: skip the rest
                raise _StopForward
        return hook

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    handles = [module.register_forward_hook(hook_for(name)) for name, module in layers.items()]
    try:
        for images in batches:
            seen.clear()
            try:
                model(images.to(device))
            except _StopForward:
                pass
            count += len(images)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return {name: (s / count).sqrt() for name, s in sums.items()}


# --------------------------------------------------------------------------- scores and masks
def magnitude_scores(layer: nn.Module) -> Tensor:
    return layer.weight.detach().abs()


def lamp_scores(layer: nn.Module) -> Tensor:
    """LAMP (Lee et al. 2021, *Layer-adaptive sparsity for the magnitude-based pruning*).

    With the layer's weights sorted by magnitude, ``score(u) = w_u^2 / sum_{v >= u} w_v^2``: the
    weight's share of the energy of all weights at least as large. Within a layer the order is
    that of magnitude; across layers the scores are comparable, so a *global* ranking gives each
    layer its own sparsity without over-pruning layers whose weights are small as a whole.
    Zero weights score 0.
    """
    squared = layer.weight.detach().flatten().pow(2)
    order = squared.argsort(stable=True)
    ascending = squared[order]
    suffix = ascending.flip(0).cumsum(0).flip(0).clamp_min(torch.finfo(squared.dtype).tiny)
    scores = torch.empty_like(squared)
    scores[order] = ascending / suffix
    return scores.reshape(layer.weight.shape)


def wanda_scores(layer: nn.Module, norms: Tensor, scorer: Callable | None = None) -> Tensor:
    """``|W_ij| * ||X_j||``, in the weight's shape (conv: norms indexed by the (C_in, k, k) column).

    ``scorer(weight, input_norms)``: a learner's function computing the same (on a copy of the weight)."""
    weight = layer.weight.detach()
    if norms.numel() != _rows(weight).shape[1]:
        raise ValueError(f"{norms.numel()} input norms for a layer with fan-in {_rows(weight).shape[1]}")
    if scorer is not None:
        return torch.as_tensor(scorer(weight.clone(), norms.to(weight.device).clone())).to(weight.device)
    return (_rows(weight).abs() * norms.to(weight.device)[None, :]).reshape(weight.shape)


def _lowest(scores: Tensor, k: int, dim: int) -> Tensor:
    """Indices of the ``k`` lowest scores along ``dim`` (ties broken by position, stable)."""
    return torch.sort(scores, dim=dim, stable=True).indices.narrow(dim, 0, k)


def _learners_mask(out, like: Tensor) -> Tensor:
    """A learner's mask (tensor, array or 0/1 values) as a bool tensor on ``like``'s device."""
    return torch.as_tensor(out).bool().to(like.device)


def row_mask(scores: Tensor, sparsity: float) -> Tensor:
    """Remove exactly ``floor(s * fan_in)`` lowest-scored weights from every output row."""
    rows = _rows(scores)
    k = int(check_sparsity(sparsity) * rows.shape[1])
    mask = torch.ones_like(rows, dtype=torch.bool)
    if k:
        mask.scatter_(1, _lowest(rows, k, 1), False)
    return mask.reshape(scores.shape)


def layer_mask(scores: Tensor, sparsity: float) -> Tensor:
    """Remove the ``floor(s * numel)`` lowest-scored weights of the whole layer."""
    flat = scores.flatten()
    k = int(check_sparsity(sparsity) * flat.numel())
    mask = torch.ones_like(flat, dtype=torch.bool)
    if k:
        mask[_lowest(flat, k, 0)] = False
    return mask.reshape(scores.shape)


def global_masks(scores: Mapping[str, Tensor], sparsity: float, total: int | None = None) -> Masks:
    """Remove the ``floor(s * total)`` lowest scores over all layers ranked together (``GlobalRanking``).

    ``total`` defaults to the number of scored weights; pass the model's prunable weight count to
    make ``s`` the sparsity of the whole model while some layers stay dense (not scored).
    """
    check_sparsity(sparsity)
    return GlobalRanking.of(scores, total).masks(sparsity)


def nm_mask(scores: Tensor, n: int, m: int, rows_mask: Callable | None = None) -> Tensor:
    """Keep the ``n`` highest of every ``m`` consecutive inputs of each output row.

    Linear: groups along ``in_features``. Conv2d (4-D scores): groups of ``m`` consecutive input
    channels at the same kernel position (channels-last, as NVIDIA's ASP does for sparse tensor
    cores). The input dimension must be divisible by ``m``. ``rows_mask((rows, C_in) scores, n, m)``:
    a learner's N:M mask of 2-D scores, used instead of the course's on that channels-last view.
    """
    n, m = check_nm(n, m)
    grouped = scores.permute(0, 2, 3, 1) if scores.ndim == 4 else scores  # (out, kh, kw, C_in)
    if grouped.shape[-1] % m:
        raise ValueError(f"N:M needs the input dimension ({grouped.shape[-1]}) divisible by M={m}; "
                         "keep such a layer dense (e.g. the first conv with one input channel)")
    if rows_mask is not None:
        mask = _learners_mask(rows_mask(grouped.reshape(-1, grouped.shape[-1]).clone(), n, m), scores)
    else:
        groups = grouped.reshape(-1, m)
        mask = torch.ones_like(groups, dtype=torch.bool)
        mask.scatter_(1, _lowest(groups, m - n, 1), False)
    mask = mask.reshape(grouped.shape).to(scores.device)
    return mask.permute(0, 3, 1, 2).contiguous() if scores.ndim == 4 else mask


def masks_from_scores(scores: Mapping[str, Tensor], sparsity: float | None = None, group: str = "row",
                      nm: tuple[int, int] | None = None, total: int | None = None,
                      impl: Implementation = COURSE) -> Masks:
    """Masks for every scored layer: N:M when ``nm`` is given, else ``group`` at ``sparsity``
    (``total``: see ``global_masks``; a sparsity over such a ``total`` always runs the course's ranking).
    ``impl``: the learner's ``row_mask``, ``nm_mask`` and ``global_masks`` where given (on copies)."""
    if nm is not None:
        return {name: nm_mask(s, *nm, rows_mask=impl.nm_mask) for name, s in scores.items()}
    if group not in GROUPS:
        raise ValueError(f"group must be one of {GROUPS}, got {group!r}")
    check_sparsity(sparsity)
    if group == "global" and impl.global_masks is not None and total is None:
        masks = impl.global_masks({name: s.detach().clone() for name, s in scores.items()}, sparsity)
        return {name: _learners_mask(masks[name], s) for name, s in scores.items()}
    if group == "global":
        return global_masks(scores, sparsity, total)
    if group == "row" and impl.row_mask is not None:
        return {name: _learners_mask(impl.row_mask(s.detach().clone(), sparsity), s) for name, s in scores.items()}
    make = row_mask if group == "row" else layer_mask
    return {name: make(s, sparsity) for name, s in scores.items()}


# --------------------------------------------------------------------------- applying and keeping masks
@torch.no_grad()
def apply_masks(model: nn.Module, masks: Mapping[str, Tensor]) -> nn.Module:
    """Zero the masked weights in place (``weight *= mask``); returns the model."""
    modules = dict(model.named_modules())
    for name, mask in masks.items():
        if name not in modules:
            raise KeyError(f"the model has no layer {name!r} for this mask")
        weight = modules[name].weight
        if weight.shape != mask.shape:
            raise ValueError(f"mask of {name!r} has shape {tuple(mask.shape)}, the weight {tuple(weight.shape)}")
        weight.masked_fill_(~mask.to(weight.device), 0.0)  # +0.0 (a product would give -0.0)
    return model


class MaskKeeper:
    """``after_step`` callback for ``helpers.training.fit``: re-applies fixed masks after each step.

    AdamW's update (and weight decay) would otherwise move pruned weights away from zero.
    """

    def __init__(self, masks: Mapping[str, Tensor]):
        self.masks = dict(masks)
        self._cache: dict[int, list[tuple[Tensor, Tensor]]] = {}

    def __call__(self, model: nn.Module) -> None:
        pairs = self._cache.get(id(model))
        if pairs is None:
            modules = dict(model.named_modules())
            pairs = [(modules[name].weight, ~mask.to(modules[name].weight.device))
                     for name, mask in self.masks.items()]
            self._cache = {id(model): pairs}
        with torch.no_grad():
            for weight, pruned in pairs:
                weight.masked_fill_(pruned, 0.0)


def fold_masks(model: nn.Module, masks: Mapping[str, Tensor] | None = None) -> nn.Module:
    """Plain weights with zeros, ready for ``save_model``: applies ``masks`` and removes any
    ``torch.nn.utils.prune`` re-parametrisation (``weight_orig``/``weight_mask``)."""
    from torch.nn.utils import prune

    for module in model.modules():
        for hook in list(getattr(module, "_forward_pre_hooks", {}).values()):
            if isinstance(hook, prune.BasePruningMethod):
                prune.remove(module, hook._tensor_name)
    if masks:
        apply_masks(model, masks)
    return model


def mask_sparsity(masks: Mapping[str, Tensor]) -> float:
    """Fraction of masked-out weights over all masks."""
    total = sum(m.numel() for m in masks.values())
    return sum(int((~m).sum()) for m in masks.values()) / max(total, 1)


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, calibration, batch_size: int = 256) -> nn.Module:
    """Re-estimate every BatchNorm's running mean/variance on the calibration images, in place.

    Pruning shifts the statistics of the conv outputs that BatchNorm normalises; the stored running
    statistics are those of the dense model. This changes no weight (no gradient, no fine-tuning):
    it only recomputes the statistics, as a cumulative average over the calibration batches.
    """
    batches = image_batches(calibration, batch_size, "BatchNorm recalibration")
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    was_training, momenta = model.training, [bn.momentum for bn in norms]
    model.eval()
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
        bn.train()
    device = next(model.parameters()).device
    try:
        for images in batches:
            model(images.to(device))
    finally:
        for bn, momentum in zip(norms, momenta):
            bn.momentum = momentum
        model.train(was_training)
    return model


# --------------------------------------------------------------------------- one call: prune a copy
SCORERS: dict[str, Callable[[nn.Module, Tensor | None], Tensor]] = {  # name -> score(layer, input norms)
    "magnitude": lambda layer, norms: magnitude_scores(layer),
    "wanda": lambda layer, norms: wanda_scores(layer, norms),
    "lamp": lambda layer, norms: lamp_scores(layer),
}
DATA_FREE = ("magnitude", "lamp")  # scores that need no calibration images


def check_method(method: str, allowed: tuple[str, ...] = METHODS, why: str = "") -> str:
    """``method`` when it names a scorer in ``allowed``; a ValueError listing them otherwise."""
    if method not in allowed:
        raise ValueError(f"method must be one of {allowed}{why}, got {method!r}")
    return method


def scores_of(layers: Mapping[str, nn.Module], method: str, norms: Mapping[str, Tensor] | None = None,
              impl: Implementation = COURSE) -> dict[str, Tensor]:
    """Scores of every layer by the scorer named ``method`` (Wanda with the given input norms, through
    ``impl.wanda_scores`` when given)."""
    if check_method(method) == "wanda" and impl.wanda_scores is not None:
        return {name: wanda_scores(layer, norms[name], impl.wanda_scores) for name, layer in layers.items()}
    score = SCORERS[method]
    return {name: score(layer, None if norms is None else norms[name]) for name, layer in layers.items()}


def compute_scores(model: nn.Module, layers: Mapping[str, nn.Module], method: str,
                   calibration=None, batch_size: int = 256, impl: Implementation = COURSE) -> dict[str, Tensor]:
    """Scores of every chosen layer (Wanda: with the current weights of the model's earlier layers)."""
    norms = (input_norms(model, layers, calibration, batch_size, impl.im2col_input_norms)
             if check_method(method) == "wanda" else None)
    return scores_of(layers, method, norms, impl)


def global_ranking(model: nn.Module, method: str = "lamp", layers="inner", model_wide: bool = True) -> GlobalRanking:
    """The global ranking of ``model``'s chosen layers by a data-free score, computed once
    (``model_wide``: a sparsity counts every prunable weight of the model)."""
    check_method(method, DATA_FREE, " (data-free scores)")
    scores = compute_scores(model, select_layers(model, layers), method)
    return GlobalRanking.of(scores, prunable_weight_count(model) if model_wide else None)


def prune_model(model: nn.Module, method: str = "wanda", sparsity: float | None = None, *,
                group: str = "row", layers: str | Iterable[str] = "all", nm: tuple[int, int] | None = None,
                calibration=None, sequential: bool = True, recalibrate_bn: bool = False,
                model_wide: bool = False, batch_size: int = 256,
                impl: Implementation = COURSE) -> tuple[nn.Module, Masks]:
    """A pruned deep copy of ``model`` and its masks (the original is left untouched).

    ``sequential`` (Wanda with row/layer groups): prune layer by layer in forward order, each
    layer's input norms measured through the already-pruned earlier layers, as the official code
    does block by block. Otherwise all norms come from one pass through the dense model.
    ``recalibrate_bn``: afterwards re-estimate the BatchNorm statistics on the calibration images
    (no weight changes). ``model_wide`` (global group): ``sparsity`` counts all prunable weights of
    the model, also those of layers kept dense. ``impl``: the learner's functions to run instead of
    the course's (``Implementation``).
    """
    if nm is not None:
        check_nm(*nm)
    elif group not in GROUPS:
        raise ValueError(f"group must be one of {GROUPS}, got {group!r}")
    else:
        check_sparsity(sparsity)
    check_method(method)
    if method == "wanda" or recalibrate_bn:
        image_batches(calibration, batch_size, "Wanda calibration")  # fail early without calibration data
    pruned = copy.deepcopy(model).eval()
    chosen = select_layers(pruned, layers)
    if method == "wanda" and sequential and (group != "global" or nm is not None):
        masks: Masks = {}
        for name, layer in chosen.items():
            scores = compute_scores(pruned, {name: layer}, method, calibration, batch_size, impl)
            masks.update(masks_from_scores(scores, sparsity, group, nm, impl=impl))
            apply_masks(pruned, {name: masks[name]})
    else:
        scores = compute_scores(pruned, chosen, method, calibration, batch_size, impl)
        total = sum(m.weight.numel() for m in prunable_layers(pruned).values()) if model_wide else None
        masks = masks_from_scores(scores, sparsity, group, nm, total=total, impl=impl)
        apply_masks(pruned, masks)
    if recalibrate_bn:
        recalibrate_batchnorm(pruned, calibration, batch_size)
    return pruned, masks


def prune_per_layer(model: nn.Module, sparsities: Mapping[str, float]) -> tuple[nn.Module, Masks]:
    """A pruned deep copy of ``model`` and its masks: each layer ``name`` of ``sparsities`` loses its
    ``floor(s * numel)`` smallest |w| (magnitude, layer-wise); other layers, and those at 0, stay dense."""
    pruned = copy.deepcopy(model).eval()
    chosen = select_layers(pruned, list(sparsities))
    masks = {name: layer_mask(magnitude_scores(layer), check_sparsity(sparsities[name]))
             for name, layer in chosen.items() if sparsities[name] > 0}
    return apply_masks(pruned, masks), masks


def masked_fine_tune(model: nn.Module, masks: Mapping[str, Tensor], train_batches, epochs: int,
                     lr: float = 1e-3, fit_fn: Callable | None = None, **kwargs):
    """Fine-tune with the masks fixed (re-applied after every optimizer step); returns the History."""
    from ..training import fine_tune

    keeper = MaskKeeper(masks)
    keeper(model)
    return (fit_fn or fine_tune)(model, train_batches, epochs=epochs, lr=lr, after_step=keeper, **kwargs)


def masked_fine_tune_seeds(model: nn.Module, masks: Mapping[str, Tensor], seeds: Iterable[int],
                           batches_for: Callable[[int], Iterable], score: Callable[[nn.Module], float],
                           epochs: int, lr: float = 1e-3, **kwargs) -> list[float]:
    """``score`` of a copy of ``model`` fine-tuned with the masks fixed, once per seed (in order): every
    generator seeded with it (``seed_everything``), the batches of ``batches_for(seed)``."""
    from ..training import seed_everything

    scores = []
    for seed in seeds:
        seed_everything(seed)
        tuned = copy.deepcopy(model)
        masked_fine_tune(tuned, masks, batches_for(seed), epochs, lr, desc=f"seed {seed}", **kwargs)
        scores.append(score(tuned))
    return scores


def masks_from_zeros(model: nn.Module, layers: str | Iterable[str] = "all") -> Masks:
    """The masks of a saved pruned model (masks folded in): True where the weight is not zero."""
    return {name: layer.weight.detach() != 0 for name, layer in select_layers(model, layers).items()}
