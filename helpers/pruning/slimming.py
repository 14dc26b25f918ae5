"""Network Slimming (Liu et al. 2017): an L1 penalty on BatchNorm scales γ, then channel removal.

1. **Sparsity training.** Train with ``loss + s·Σ|γ|``. Its subgradient ``s·sign(γ)`` is added to
   every γ's gradient by a tensor hook on the γ parameters (``gamma_l1_penalty``), so it works with
   any training loop, ``helpers.training.fit`` included, without touching it.
2. **Global threshold.** All |γ| of all conv blocks are ranked together; the channels whose |γ| lies
   below the threshold (the midpoint under the lowest ``ratio`` of them) are removed, but every layer
   keeps at least ``min_channels`` channels (its largest |γ|). The threshold function is an argument
   (``threshold_fn``), so a learner's ``global_threshold`` can pick the channels.
3. **Removal** through the shared surgery of ``structured.remove_channels``: a genuinely smaller
   model. Optionally (``absorb=True``) the constant a removed channel still emits, ReLU(β), is
   first folded into the next layer (see ``absorb_removed_channels``).
"""
from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import Tensor

from ..models import FashionCNN
from .structured import (KeepPlan, bn_gamma_abs, check_ratio, conv_layer_names, fc1_columns,
                         keep_top, remove_channels, removed_indices)


# ------------------------------------------------------------------------- sparsity training
def check_penalty(s: float) -> float:
    value = float(s)
    if not value >= 0.0:
        raise ValueError(f"the L1 penalty strength s must be >= 0, got {s!r}")
    return value


def gamma_subgradient(grad: Tensor, gamma: Tensor, s: float) -> Tensor:
    """The gradient of ``loss + s·Σ|γ|``: the loss gradient plus ``s·sign(γ)`` (0 where γ = 0)."""
    return grad + s * torch.sign(gamma)


def add_gamma_l1_hooks(model: FashionCNN, s: float, subgradient: Callable = gamma_subgradient) -> list:
    """Add ``s·sign(γ)`` to the gradient of every BatchNorm γ in ``model``; returns the hook handles.

    The hook runs during ``backward`` (before the optimizer step), so any optimizer sees the
    penalised gradient of ``loss + s·Σ|γ|``. Remove the hooks with ``handle.remove()``.
    ``subgradient(grad, gamma, s)`` computes it (``gamma_subgradient``, or a learner's own).
    """
    s = check_penalty(s)
    handles = []
    for bn in model.bn_layers():
        gamma = bn.weight
        handles.append(gamma.register_hook(lambda grad, g=gamma: subgradient(grad, g.detach(), s)))
    return handles


@contextmanager
def gamma_l1_penalty(model: FashionCNN, s: float, subgradient: Callable = gamma_subgradient) -> Iterator[list]:
    """``with gamma_l1_penalty(model, s): fit(model, ...)``: sparsity training, hooks removed after."""
    handles = add_gamma_l1_hooks(model, s, subgradient)
    try:
        yield handles
    finally:
        for handle in handles:
            handle.remove()


def gamma_l1(model: FashionCNN) -> float:
    """Σ|γ| over all BatchNorm layers (the quantity the penalty shrinks)."""
    return float(sum(g.sum() for g in bn_gamma_abs(model)))


# -------------------------------------------------------------------------------- threshold
@dataclass(frozen=True)
class SlimmingPlan:
    """Channels kept per conv block, the global |γ| threshold, and the ratio actually removed."""

    keep: KeepPlan
    threshold: float
    ratio: float
    removed_fraction: float

    @property
    def conv_channels(self) -> tuple[int, ...]:
        return self.keep.conv_channels


def global_threshold(gammas: list[Tensor], ratio: float) -> float:
    """The |γ| below which the lowest ``ratio`` of all channels lie (midpoint between neighbours)."""
    ratio = check_ratio(ratio, "slimming ratio")
    values = torch.cat([g.flatten() for g in gammas]).abs().sort().values
    n_remove = int(round(ratio * len(values)))
    if n_remove == 0:
        return 0.0
    if n_remove >= len(values):
        raise ValueError(f"slimming ratio {ratio} would remove every channel")
    return float((values[n_remove - 1] + values[n_remove]) / 2)


def channels_below(values: Tensor, threshold: float, n_remove: int) -> Tensor:
    """Which of ``values`` (all |γ|, flat) go: every one below ``threshold``, then, where |γ| ties
    exactly at it, the first in channel order until ``n_remove`` are gone (bool, one per channel)."""
    removed = values < threshold
    ties = torch.nonzero(values == threshold).flatten()[:max(n_remove - int(removed.sum()), 0)]
    removed[ties] = True
    return removed


def slimming_plan(model: FashionCNN, ratio: float, min_channels: int = 1,
                  threshold_fn: Callable = global_threshold) -> SlimmingPlan:
    """Remove the channels whose |γ| lies below ``threshold_fn(|γ| per block, ratio)`` (all conv
    blocks ranked together: ``global_threshold`` removes the lowest ``ratio`` of them), keeping at
    least ``min_channels`` per layer; hidden FC units are left alone.

    ``min_channels=0`` allows no floor: then a ratio that would empty a layer is a ValueError.
    """
    ratio = check_ratio(ratio, "slimming ratio")
    gammas = bn_gamma_abs(model)
    widths = [len(g) for g in gammas]
    if int(min_channels) != min_channels or not 0 <= min_channels <= min(widths):
        raise ValueError(f"min_channels must be an integer in [0, {min(widths)}] (the narrowest "
                         f"layer), got {min_channels!r}")
    flat = torch.cat(gammas)
    threshold = float(threshold_fn([g.clone() for g in gammas], ratio))
    removed = channels_below(flat, threshold, int(round(ratio * len(flat))))
    keeps, start = [], 0
    for name, g, width in zip(conv_layer_names(model), gammas, widths):
        survivors = torch.nonzero(~removed[start:start + width]).flatten()
        start += width
        if len(survivors) < min_channels:
            survivors = keep_top(g, int(min_channels), name)
        if len(survivors) == 0:
            raise ValueError(f"slimming ratio {ratio} removes every channel of {name}; "
                             "lower the ratio or set min_channels >= 1")
        keeps.append(survivors)
    plan = KeepPlan(tuple(keeps), tuple(torch.arange(f) for f in model.config.fc_features))
    removed_fraction = 1 - sum(plan.conv_channels) / sum(widths)
    return SlimmingPlan(plan, threshold, ratio, removed_fraction)


# ---------------------------------------------------------------------------------- removal
@torch.no_grad()
def absorb_removed_channels(model: FashionCNN, plan: KeepPlan) -> FashionCNN:
    """A copy of ``model`` in which each channel to be removed hands its constant part on.

    A channel whose γ is 0 emits the constant ReLU(β) everywhere. For the last conv block that
    constant enters fc1 through the channel's columns and is folded *exactly* into fc1's bias; for
    an earlier block it enters the next conv and is folded into the next BatchNorm's running mean
    (exact away from the zero-padded border). The removed channels then contribute nothing.
    """
    model = copy.deepcopy(model)
    blocks = list(model.features)
    spatial = model.config.feature_map_size ** 2
    for k, (block, keep) in enumerate(zip(blocks, plan.conv)):
        gone = removed_indices(block.conv.out_channels, keep).to(block.bn.bias.device)
        if len(gone) == 0:
            continue
        const = torch.relu(block.bn.bias[gone])  # output of BN with γ = 0, then ReLU (and max pool)
        if k + 1 < len(blocks):
            nxt = blocks[k + 1]
            kernel_sums = nxt.conv.weight[:, gone].sum(dim=(2, 3))  # out x removed
            nxt.bn.running_mean -= kernel_sums @ const
            nxt.conv.weight[:, gone] = 0.0
        else:
            fc1 = model.classifier.fc1
            cols = fc1_columns(gone.cpu(), spatial).to(fc1.weight.device)
            fc1.bias += fc1.weight[:, cols] @ const.repeat_interleave(spatial)
            fc1.weight[:, cols] = 0.0
        block.bn.weight[gone] = 0.0
        block.bn.bias[gone] = 0.0
    return model


def slim(model: FashionCNN, ratio: float, min_channels: int = 1, absorb: bool = False,
         threshold_fn: Callable = global_threshold) -> FashionCNN:
    """Network-slimming channel removal: a genuinely smaller copy of ``model`` (``slimming_plan``)."""
    plan = slimming_plan(model, ratio, min_channels, threshold_fn).keep
    source = absorb_removed_channels(model, plan) if absorb else model
    return remove_channels(source, plan)
