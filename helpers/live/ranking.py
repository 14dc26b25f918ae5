"""A global weight ranking computed once, so that a slider gets the masks at any sparsity fast.

``global_ranking(model, "lamp", layers="inner")`` scores the chosen layers (data-free: magnitude or
LAMP) and sorts all scores together once; ``ranking.masks(s)`` then equals
``masks_from_scores(scores, s, "global", total=...)`` of ``helpers.pruning.unstructured`` (the same
stable sort), without re-sorting a million scores on every move. ``model_wide``: ``s`` counts every
prunable weight of the model, also those of the layers kept dense (as notebooks 05 and 07 do).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..counting import prunable_weight_count
from ..pruning.unstructured import Masks, apply_masks, check_sparsity, compute_scores, select_layers


@dataclass(frozen=True)
class GlobalRanking:
    """The layers' names and shapes and the stable ascending order of all their scores."""

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]
    order: Tensor  # indices into the concatenated scores, lowest score first
    total: int     # the weight count a sparsity refers to

    def masks(self, sparsity: float) -> Masks:
        """True = kept: the ``floor(s * total)`` lowest-scored weights removed."""
        k = int(check_sparsity(sparsity) * self.total)
        if k > len(self.order):
            raise ValueError(f"sparsity {sparsity} of {self.total} weights needs {k} zeros, but only "
                             f"{len(self.order)} weights may be pruned")
        keep = torch.ones(len(self.order), dtype=torch.bool)
        keep[self.order[:k]] = False
        masks, start = {}, 0
        for name, shape in zip(self.names, self.shapes):
            masks[name] = keep[start:start + shape.numel()].reshape(shape)
            start += shape.numel()
        return masks

    def pruned_copy(self, model: nn.Module, sparsity: float) -> tuple[nn.Module, Masks]:
        """A copy of ``model`` (eval mode) with the masks at ``sparsity`` applied, and the masks."""
        masks = self.masks(sparsity)
        return apply_masks(copy.deepcopy(model).eval(), masks), masks


def global_ranking(model: nn.Module, method: str = "lamp", layers="inner", model_wide: bool = True
                   ) -> GlobalRanking:
    """The ranking of ``mask_maker(method, layers, "global", model_wide)`` (notebook 05) for ``model``."""
    if method not in ("magnitude", "lamp"):
        raise ValueError(f"a live ranking uses data-free scores: 'magnitude' or 'lamp', got {method!r}")
    scores = compute_scores(model, select_layers(model, layers), method)
    flat = torch.cat([s.flatten().float().cpu() for s in scores.values()])
    total = prunable_weight_count(model) if model_wide else len(flat)
    return GlobalRanking(tuple(scores), tuple(s.shape for s in scores.values()),
                         torch.sort(flat, stable=True).indices, total)
