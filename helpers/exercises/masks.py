"""Grading keep-masks (True = keep) group by group: the quota, the lowest removed, the tie rule.

The mask exercises (``row_mask``, ``nm_mask``, ``global_magnitude_masks``) view a mask and its
scores as groups (rows of a 2-D tensor): each group keeps exactly its quota of the highest scores,
and among EQUAL scores the reference removes the earlier position first (a stable ascending sort).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def _cut_ties(scores: Tensor, n_remove: int) -> tuple[int, float] | None:
    """(how many scores, value) when scores tie across the cut between removed and kept; else None."""
    if not 0 < n_remove < len(scores):
        return None
    ordered = scores.sort().values
    if ordered[n_remove - 1] != ordered[n_remove]:
        return None
    value = ordered[n_remove]
    return int((scores == value).sum()), float(value)


def count_problem(mask: Tensor, scores: Tensor, n_keep: int) -> tuple[int, int, str] | None:
    """(group, how many it keeps, a note on ties) for the first group of ``mask`` that does not keep
    ``n_keep``; None when all do. The note is empty unless scores tie at the cut, where a threshold
    (> or >=) treats all tied scores alike."""
    kept = mask.sum(1)
    wrong = torch.nonzero(kept != n_keep).flatten()
    if not len(wrong):
        return None
    g = int(wrong[0])
    ties = _cut_ties(scores[g].double(), scores.shape[1] - n_keep)
    note = (f" — {ties[0]} scores tie at {ties[1]:.4g}, right at the cut: a threshold (> or >=) removes or keeps "
            "all of them; remove exactly the quota, the EARLIER position first among equal scores") if ties else ""
    return g, int(kept[g]), note


def order_problem(mask: Tensor, scores: Tensor) -> tuple[int, str] | None:
    """(group, what is wrong) for the first group that removes a higher score than one it keeps; else None."""
    scores = scores.double()
    removed_max = torch.where(mask, -math.inf, scores).amax(1)
    kept_min = torch.where(mask, scores, math.inf).amin(1)
    wrong = torch.nonzero(removed_max > kept_min).flatten()
    if not len(wrong):
        return None
    g = int(wrong[0])
    return g, f"removes a weight scored {removed_max[g]:.6g} but keeps one scored {kept_min[g]:.6g}"


def tie_problem(mask: Tensor, ref: Tensor) -> tuple[int, int, int] | None:
    """(group, position the reference removes, position it keeps) for the first group where ``mask``
    differs from the reference ``ref``; call it once count and order are right, so the two positions
    hold equal scores and the answer broke the tie differently."""
    differs = torch.nonzero((mask != ref).any(1)).flatten()
    if not len(differs):
        return None
    g = int(differs[0])
    ref_removes = int(torch.nonzero(mask[g] & ~ref[g])[0])
    ref_keeps = int(torch.nonzero(~mask[g] & ref[g])[0])
    return g, ref_removes, ref_keeps


def tie_text(first: str, second: str, value: float) -> str:
    """The hint for a tie broken the other way: ``first`` (the reference removes it) and ``second``."""
    return (f"{first} and {second} tie (score {value:.6g}): among equal scores remove the EARLIER position first "
            f"(a stable ascending sort, torch.sort(..., stable=True)); you removed {second} and kept {first}")
