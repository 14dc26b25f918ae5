"""Structured pruning that really removes filters, channels and hidden units.

Scores (which filters/units matter):

- ``conv_filter_l1``: Σ|W| of each conv filter (Li et al. 2017, "Pruning Filters for Efficient ConvNets"),
- ``fc_row_l1``: Σ|W| of each row (hidden unit) of a hidden fully connected layer,
- ``bn_gamma_abs``: |γ| of each BatchNorm channel (Network Slimming, see ``slimming.py``).

Every scoring step takes an optional ``scorer(weight) -> one score per output filter/unit`` (a
learner's function from notebook 02's exercise, checked first), Σ|W| when it is None.

Surgery (one mechanism, ``remove_channels``): from *keep indices* per conv layer and per hidden FC
layer it builds a genuinely smaller ``FashionCNN`` with ``build_model(smaller CNNConfig)`` and copies
the kept weights into it:

- conv *k*: the kept output filters, and the input channels kept in conv *k-1*;
- its BatchNorm: weight, bias, running_mean, running_var of the kept channels;
- the last conv's kept channel *c* owns the fc1 input columns ``c·H·W … (c+1)·H·W − 1``;
- hidden FC layer *k*: the kept rows (and biases) of fc_k and the same columns of fc_{k+1}.

The classifier's output units are never pruned. Because the result is a plain model of a smaller
config, ``save_model``/``load_model`` rebuild it at its smaller shape.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from ..inputs import check_fraction
from ..models import FashionCNN, build_model
from .schedules import linear_sparsity

RatioSpec = float | Sequence[float]


# ---------------------------------------------------------------------------------------- layers
def conv_layer_names(model: FashionCNN) -> list[str]:
    """``features.blockK.conv`` for every conv block, in order."""
    return [f"features.{name}.conv" for name in model.features._modules]


def hidden_fc_names(model: FashionCNN) -> list[str]:
    """The fully connected layers whose output units may be pruned (all but the classifier output)."""
    names = [f"classifier.{name}" for name, m in model.classifier.named_children() if isinstance(m, nn.Linear)]
    return names[:-1]


def prunable_structure_names(model: FashionCNN) -> list[str]:
    """Conv layers, then hidden FC layers: every layer whose filters/units this module can remove."""
    return conv_layer_names(model) + hidden_fc_names(model)


def layer_widths(model: FashionCNN) -> dict[str, int]:
    """Name -> number of filters (conv) or units (hidden FC) of each prunable layer."""
    config = model.config
    return dict(zip(prunable_structure_names(model), config.conv_channels + config.fc_features))


# ---------------------------------------------------------------------------------------- scores
@torch.no_grad()
def conv_filter_l1(model: FashionCNN) -> list[Tensor]:
    """Σ|W| of every output filter, one tensor per conv layer."""
    return [conv.weight.detach().abs().sum(dim=(1, 2, 3)).cpu() for conv in model.conv_layers()]


@torch.no_grad()
def fc_row_l1(model: FashionCNN) -> list[Tensor]:
    """Σ|W| of every row (hidden unit) of each hidden FC layer (the output layer is excluded)."""
    return [fc.weight.detach().abs().sum(dim=1).cpu() for fc in model.linear_layers()[:-1]]


@torch.no_grad()
def bn_gamma_abs(model: FashionCNN) -> list[Tensor]:
    """|γ| of every BatchNorm channel, one tensor per conv block."""
    return [bn.weight.detach().abs().cpu() for bn in model.bn_layers()]


Scorer = Callable[[Tensor], Tensor]  # a layer's weight -> one score per output filter/unit


def l1_scores(model: FashionCNN, scorer: Scorer | None = None) -> dict[str, Tensor]:
    """Name -> L1 score of each filter (conv) or unit (hidden FC), for every prunable layer.

    ``scorer(weight)`` computes the scores instead of Σ|W| (it gets a copy of each weight); a
    result that is not one number per filter/unit is a ValueError naming the layer.
    """
    names = prunable_structure_names(model)
    if scorer is None:
        return dict(zip(names, conv_filter_l1(model) + fc_row_l1(model)))
    scores = {}
    for name in names:
        weight = model.get_submodule(name).weight.detach()
        with torch.no_grad():
            score = torch.as_tensor(scorer(weight.clone())).detach().cpu().float()
        if tuple(score.shape) != (len(weight),):
            raise ValueError(f"{name}: the scorer must give one score per output filter/unit, shape "
                             f"({len(weight)},), got {tuple(score.shape)}")
        scores[name] = score
    return scores


# ------------------------------------------------------------------------------ ratios and keeps
def check_ratio(ratio: float, what: str = "ratio") -> float:
    """``ratio`` as a float when it is a number in [0, 1); a ValueError otherwise (strings included)."""
    return check_fraction(ratio, what, "the fraction of filters/units removed")


def keep_count(width: int, ratio: float, layer: str = "layer") -> int:
    """How many of ``width`` filters/units survive removing ``round(ratio·width)`` of them.

    A ratio outside [0, 1), or one that would remove every filter of the layer, is a ValueError.
    """
    ratio = check_ratio(ratio, f"pruning ratio of {layer}")
    keep = width - int(round(ratio * width))
    if keep < 1:
        raise ValueError(f"pruning ratio {ratio} would remove all {width} filters/units of {layer}; "
                         f"the largest ratio that keeps one is below {(width - 0.5) / width:.3f}")
    return keep


def expand_ratios(ratios: RatioSpec, n: int, what: str) -> list[float]:
    """One ratio per layer from a single number or a sequence of ``n`` numbers (each checked)."""
    if isinstance(ratios, (int, float, str)) or not hasattr(ratios, "__len__"):
        ratios = [ratios] * n
    ratios = list(ratios)
    if len(ratios) != n:
        raise ValueError(f"{what}: expected one ratio per layer ({n}), got {len(ratios)}")
    return [check_ratio(r, f"{what} ratio") for r in ratios]


def keep_top(scores: Tensor, n_keep: int, layer: str = "layer") -> Tensor:
    """Sorted indices of the ``n_keep`` highest scores (ties: the lower index wins)."""
    n = len(scores)
    if not 1 <= n_keep <= n:
        raise ValueError(f"{layer}: can keep between 1 and {n} filters/units, asked to keep {n_keep}")
    order = torch.sort(scores.detach().cpu().float(), descending=True, stable=True).indices
    return order[:n_keep].sort().values


def keep_by_ratio(scores: Tensor, ratio: float, layer: str = "layer") -> Tensor:
    """Sorted indices of the filters/units that survive removing the lowest-scoring ``ratio``."""
    return keep_top(scores, keep_count(len(scores), ratio, layer), layer)


@dataclass(frozen=True)
class KeepPlan:
    """Which filters survive in each conv layer, and which units in each hidden FC layer."""

    conv: tuple[Tensor, ...]
    fc: tuple[Tensor, ...]

    @property
    def conv_channels(self) -> tuple[int, ...]:
        return tuple(len(k) for k in self.conv)

    @property
    def fc_features(self) -> tuple[int, ...]:
        return tuple(len(k) for k in self.fc)


def plan_from_counts(model: FashionCNN, conv_counts: Sequence[int], fc_counts: Sequence[int] | None = None,
                     scores: dict[str, Tensor] | None = None) -> KeepPlan:
    """Keep the ``counts`` highest-scoring filters/units per layer (L1 scores unless given)."""
    scores = scores or l1_scores(model)
    names = prunable_structure_names(model)
    counts = list(conv_counts) + list(model.config.fc_features if fc_counts is None else fc_counts)
    if len(counts) != len(names):
        raise ValueError(f"expected {len(model.config.conv_channels)} conv and "
                         f"{len(model.config.fc_features)} FC counts, got {len(counts)} in all")
    keeps = [keep_top(scores[name], int(c), name) for name, c in zip(names, counts)]
    n_conv = len(model.config.conv_channels)
    return KeepPlan(tuple(keeps[:n_conv]), tuple(keeps[n_conv:]))


def counts_for_ratios(model: FashionCNN, conv_ratios: RatioSpec, fc_ratios: RatioSpec = 0.0
                      ) -> tuple[list[int], list[int]]:
    """(conv counts, FC counts) left after removing the given fraction of each layer."""
    config = model.config
    conv_r = expand_ratios(conv_ratios, len(config.conv_channels), "conv")
    fc_r = expand_ratios(fc_ratios, len(config.fc_features), "FC")
    names = prunable_structure_names(model)
    widths = list(config.conv_channels + config.fc_features)
    counts = [keep_count(w, r, name) for w, r, name in zip(widths, conv_r + fc_r, names)]
    return counts[:len(conv_r)], counts[len(conv_r):]


def plan_l1(model: FashionCNN, conv_ratios: RatioSpec, fc_ratios: RatioSpec = 0.0,
            scorer: Scorer | None = None) -> KeepPlan:
    """The L1-norm plan: in each layer, remove the given fraction of lowest-Σ|W| filters/units
    (lowest ``scorer`` scores when given)."""
    conv_counts, fc_counts = counts_for_ratios(model, conv_ratios, fc_ratios)
    return plan_from_counts(model, conv_counts, fc_counts, l1_scores(model, scorer))


# -------------------------------------------------------------------------------------- surgery
def _as_index(keep, width: int, layer: str) -> Tensor:
    if keep is None:
        return torch.arange(width)
    try:
        index = torch.as_tensor(keep).flatten().cpu()
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{layer}: keep indices must be integers, got {keep!r}") from err
    if index.numel() and (index.dtype == torch.bool or index.is_floating_point() or index.is_complex()):
        raise ValueError(f"{layer}: keep indices must be integers, got {index.dtype} values "
                         f"({index[:4].tolist()} ...)")
    index = index.long()
    if index.numel() == 0:
        raise ValueError(f"{layer}: keeping no filters/units would cut the network; keep at least one")
    if index.min() < 0 or index.max() >= width:
        raise ValueError(f"{layer}: keep indices must lie in [0, {width}), got {index.min()}..{index.max()}")
    if len(index.unique()) != len(index):
        raise ValueError(f"{layer}: keep indices contain duplicates")
    return index.sort().values


@torch.no_grad()
def remove_channels(model: FashionCNN, conv_keep: Sequence | KeepPlan,
                    fc_keep: Sequence | None = None, columns: Callable | None = None) -> FashionCNN:
    """A genuinely smaller copy of ``model`` that keeps only the given filters and hidden units.

    ``conv_keep``: per conv layer the indices of the output filters to keep (``None``: all), or a
    ``KeepPlan``; ``fc_keep``: per hidden FC layer the units to keep (``None``/omitted: all). The
    classifier's output units are always kept. The copy is built by ``build_model`` at the smaller
    ``CNNConfig`` and is on the same device and in the same train/eval mode as ``model``.
    ``columns(kept_channels, spatial)`` gives the fc1 input columns of the last conv's kept channels
    (default ``fc1_columns``; notebook 02's exercise passes the learner's).
    """
    if isinstance(conv_keep, KeepPlan):
        conv_keep, fc_keep = conv_keep.conv, conv_keep.fc
    config = model.config
    names = prunable_structure_names(model)
    conv_keep = list(conv_keep)
    fc_keep = [None] * len(config.fc_features) if fc_keep is None else list(fc_keep)
    if len(conv_keep) != len(config.conv_channels) or len(fc_keep) != len(config.fc_features):
        raise ValueError(f"expected keep indices for {len(config.conv_channels)} conv and "
                         f"{len(config.fc_features)} hidden FC layers, got {len(conv_keep)} and {len(fc_keep)}")
    widths = config.conv_channels + config.fc_features
    keeps = [_as_index(k, w, n) for k, w, n in zip(conv_keep + fc_keep, widths, names)]
    conv_idx, fc_idx = keeps[:len(conv_keep)], keeps[len(conv_keep):]
    new_config = replace(config, conv_channels=tuple(len(k) for k in conv_idx),
                         fc_features=tuple(len(k) for k in fc_idx))
    device = next(model.parameters()).device
    new = build_model(new_config).to(device)
    new.normalize.load_state_dict(model.normalize.state_dict())
    _copy_conv_blocks(model, new, conv_idx)
    _copy_classifier(model, new, conv_idx[-1], fc_idx, columns or fc1_columns)
    return new.train(model.training)


def _copy_conv_blocks(old: FashionCNN, new: FashionCNN, conv_idx: list[Tensor]) -> None:
    in_idx = torch.arange(old.config.in_channels)
    for old_block, new_block, out_idx in zip(old.features, new.features, conv_idx):
        out_dev, in_dev = out_idx.to(old_block.conv.weight.device), in_idx.to(old_block.conv.weight.device)
        new_block.conv.weight.copy_(old_block.conv.weight[out_dev][:, in_dev])
        if old_block.conv.bias is not None:
            new_block.conv.bias.copy_(old_block.conv.bias[out_dev])
        for key in ("weight", "bias", "running_mean", "running_var"):
            getattr(new_block.bn, key).copy_(getattr(old_block.bn, key)[out_dev])
        new_block.bn.num_batches_tracked.copy_(old_block.bn.num_batches_tracked)
        in_idx = out_idx


def fc1_columns(kept_channels: Tensor, spatial: int) -> Tensor:
    """fc1 input columns of the kept last-conv channels: ``c·spatial … (c+1)·spatial − 1`` per ``c``."""
    kept = torch.as_tensor(kept_channels, dtype=torch.long)
    return (kept[:, None] * spatial + torch.arange(spatial)).flatten()


def _copy_classifier(old: FashionCNN, new: FashionCNN, last_conv_idx: Tensor, fc_idx: list[Tensor],
                     columns: Callable = fc1_columns) -> None:
    in_idx = torch.as_tensor(columns(last_conv_idx.clone(), old.config.feature_map_size ** 2)).long().flatten()
    if len(in_idx) != new.linear_layers()[0].in_features:
        raise ValueError(f"fc1 columns: expected {new.linear_layers()[0].in_features} "
                         f"({old.config.feature_map_size ** 2} per kept channel), got {len(in_idx)}")
    old_fcs, new_fcs = old.linear_layers(), new.linear_layers()
    out_indices = fc_idx + [torch.arange(old.config.num_classes)]  # output units are never pruned
    for old_fc, new_fc, out_idx in zip(old_fcs, new_fcs, out_indices):
        dev = old_fc.weight.device
        new_fc.weight.copy_(old_fc.weight[out_idx.to(dev)][:, in_idx.to(dev)])
        new_fc.bias.copy_(old_fc.bias[out_idx.to(dev)])
        in_idx = out_idx


def prune_l1(model: FashionCNN, conv_ratios: RatioSpec, fc_ratios: RatioSpec = 0.0,
             scorer: Scorer | None = None) -> FashionCNN:
    """L1-norm filter (and hidden-unit) pruning with real removal: a smaller copy of ``model``
    (scored by ``scorer`` instead of Σ|W| when given)."""
    return remove_channels(model, plan_l1(model, conv_ratios, fc_ratios, scorer))


def prune_to_counts(model: FashionCNN, conv_counts: Sequence[int], fc_counts: Sequence[int] | None = None,
                    scores: dict[str, Tensor] | None = None) -> FashionCNN:
    """Keep the ``counts`` highest-scoring filters/units per layer (L1 unless ``scores`` are given)."""
    return remove_channels(model, plan_from_counts(model, conv_counts, fc_counts, scores))


# ------------------------------------------------------------------------ sensitivity and ratios
@torch.no_grad()
def sensitivity_scan(model: FashionCNN, batches, ratios: Sequence[float],
                     evaluate_fn: Callable | None = None, scorer: Scorer | None = None) -> dict[str, list[float]]:
    """Accuracy (percent) after pruning *one* layer at a time by each ratio, without fine-tuning.

    Use the validation split for ``batches``: the scan chooses the per-layer ratios.
    Returns name -> one accuracy per ratio, for every conv and hidden FC layer.
    """
    from ..training import accuracy

    evaluate_fn = evaluate_fn or accuracy
    ratios = [check_ratio(r, "scan ratio") for r in ratios]
    n_conv = len(model.config.conv_channels)
    zeros = [0.0] * (n_conv + len(model.config.fc_features))
    scores = l1_scores(model, scorer)  # scored once: every pruned copy starts from the same model
    scan = {}
    for i, name in enumerate(prunable_structure_names(model)):
        scan[name] = []
        for ratio in ratios:
            layer_ratios = zeros.copy()
            layer_ratios[i] = ratio
            pruned = prune_to_counts(model, *counts_for_ratios(model, layer_ratios[:n_conv], layer_ratios[n_conv:]),
                                     scores=scores).eval()
            scan[name].append(float(evaluate_fn(pruned, batches)))
    return scan


def ratios_from_sensitivity(scan: dict[str, list[float]], ratios: Sequence[float], reference: float,
                            max_drop: float) -> dict[str, float]:
    """Per layer, the largest scanned ratio whose accuracy stays within ``max_drop`` points of
    ``reference`` (and within it at every smaller ratio); 0 when even the smallest ratio hurts more."""
    if max_drop < 0:
        raise ValueError(f"max_drop is an accuracy drop in points and must be >= 0, got {max_drop}")
    chosen = {}
    for name, accs in scan.items():
        best = 0.0
        for ratio, acc in sorted(zip(ratios, accs)):
            if reference - acc > max_drop:
                break
            best = ratio
        chosen[name] = best
    return chosen


def most_sensitive(scan: dict[str, list[float]], names: Sequence[str]) -> str:
    """Of ``names``, the layer whose scan curve lies lowest (smallest mean accuracy over the ratios)."""
    return min(names, key=lambda name: sum(scan[name]) / len(scan[name]))


def layer_ratios(model: FashionCNN, scan: dict[str, list[float]], scan_ratios: Sequence[float],
                 reference: float, conv_ratio: float, max_drop: float, conv_scale: Sequence[float],
                 fc_cap: Sequence[float] | None = None, safe: Callable | None = None
                 ) -> tuple[list[float], list[float]]:
    """(conv ratios, FC ratios) of one point of the pruning curve.

    Conv layer *k* loses ``conv_scale[k] * conv_ratio`` of its filters; hidden FC layer *k* loses
    its largest *safe* ratio in the sensitivity scan (validation drop within ``max_drop`` points,
    see ``ratios_from_sensitivity``, or ``safe`` with its arguments), at most ``fc_cap[k]`` (default: no cap).
    """
    conv_ratio = check_ratio(conv_ratio, "conv ratio")
    convs, fcs = conv_layer_names(model), hidden_fc_names(model)
    if len(conv_scale) != len(convs) or not all(0.0 <= f <= 1.0 for f in conv_scale):
        raise ValueError(f"conv_scale needs one factor in [0, 1] per conv layer ({len(convs)}), got {conv_scale}")
    caps = [check_ratio(c, "FC cap") for c in (fc_cap if fc_cap is not None else [0.99] * len(fcs))]
    if len(caps) != len(fcs):
        raise ValueError(f"fc_cap needs one ratio per hidden FC layer ({len(fcs)}), got {len(caps)}")
    safe_fn = safe or ratios_from_sensitivity
    safe_ratios = safe_fn({n: list(scan[n]) for n in fcs}, list(scan_ratios), reference, max_drop)
    return [conv_ratio * f for f in conv_scale], [min(float(safe_ratios[name]), cap) for name, cap in zip(fcs, caps)]


def step_fractions(steps: int) -> list[float]:
    """The linear schedule (``schedules.linear_sparsity``) at each of ``steps`` equal steps: after
    step k the fraction k/steps of the final ratio is removed."""
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    return [linear_sparsity(k + 1, int(steps), 1.0) for k in range(int(steps))]


def step_counts(model: FashionCNN, conv_ratios: RatioSpec, fc_ratios: RatioSpec, steps: int
                ) -> list[tuple[list[int], list[int]]]:
    """The (conv counts, FC counts) targets after each step, relative to ``model``'s widths."""
    config = model.config
    conv_r = expand_ratios(conv_ratios, len(config.conv_channels), "conv")
    fc_r = expand_ratios(fc_ratios, len(config.fc_features), "FC")
    counts_for_ratios(model, conv_r, fc_r)  # the final ratios must be valid
    return [counts_for_ratios(model, [r * f for r in conv_r], [r * f for r in fc_r])
            for f in step_fractions(steps)]


def prune_step_by_step(model: FashionCNN, conv_ratios: RatioSpec, fc_ratios: RatioSpec, steps: int,
                       between: Callable[[FashionCNN, int], object] | None = None,
                       scorer: Scorer | None = None) -> FashionCNN:
    """Remove the final ratios in ``steps`` equal steps, re-scoring (L1, or ``scorer``) the current model each step.

    ``between(model, step)`` (e.g. one short fine-tune) runs after every step, the last included,
    so the total fine-tuning budget is ``steps`` calls of it. Returns the final, smaller model.
    """
    current = model
    for step, (conv_counts, fc_counts) in enumerate(step_counts(model, conv_ratios, fc_ratios, steps)):
        current = prune_to_counts(current, conv_counts, fc_counts, l1_scores(current, scorer))
        if between is not None:
            between(current, step)
    return current


def prune_one_shot(model: FashionCNN, conv_ratios: RatioSpec, fc_ratios: RatioSpec,
                   after: Callable[[FashionCNN], object] | None = None, scorer: Scorer | None = None) -> FashionCNN:
    """Remove the final ratios at once (L1, or ``scorer``), then ``after(model)`` (e.g. the whole fine-tune)."""
    pruned = prune_l1(model, conv_ratios, fc_ratios, scorer)
    if after is not None:
        after(pruned)
    return pruned


def removed_indices(width: int, keep: Tensor) -> Tensor:
    """The indices in ``range(width)`` that are not in ``keep``."""
    mask = torch.ones(width, dtype=torch.bool)
    mask[torch.as_tensor(keep, dtype=torch.long)] = False
    return torch.nonzero(mask).flatten()
