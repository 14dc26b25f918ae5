"""Global ranking: all scores of the chosen layers sorted together once (stable, ties by position),
so that the masks at any sparsity are one slice of that order (``global_masks`` of
``pruning.unstructured``, and the live sliders of notebooks 05 and 07, which move without re-sorting
a million scores). ``total`` lets ``s`` count every prunable weight of the model, also those of the
layers kept dense (as notebooks 05 and 07 do)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
from torch import Tensor

from ..inputs import check_fraction


@dataclass(frozen=True)
class GlobalRanking:
    """The layers' names and shapes and the stable ascending order of all their scores."""

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]
    order: Tensor  # indices into the concatenated scores, lowest score first
    total: int     # the weight count a sparsity refers to
    device: torch.device = torch.device("cpu")

    @classmethod
    def of(cls, scores: Mapping[str, Tensor], total: int | None = None) -> "GlobalRanking":
        """The ranking of ``scores`` (one tensor per layer); ``total`` defaults to their count."""
        flat = torch.cat([s.flatten().float().cpu() for s in scores.values()])
        device = next(iter(scores.values())).device if scores else torch.device("cpu")
        return cls(tuple(scores), tuple(s.shape for s in scores.values()),
                   torch.sort(flat, stable=True).indices, len(flat) if total is None else total, device)

    def masks(self, sparsity: float) -> dict[str, Tensor]:
        """True = kept: the ``floor(s * total)`` lowest-scored weights removed."""
        k = int(check_fraction(sparsity, "sparsity", "e.g. 0.9 for 90% zeros") * self.total)
        if k > len(self.order):
            raise ValueError(f"sparsity {sparsity} of {self.total} weights needs {k} zeros, but only "
                             f"{len(self.order)} weights may be pruned")
        keep = torch.ones(len(self.order), dtype=torch.bool)
        keep[self.order[:k]] = False
        masks, start = {}, 0
        for name, shape in zip(self.names, self.shapes):
            masks[name] = keep[start:start + shape.numel()].reshape(shape).to(self.device)
            start += shape.numel()
        return masks
