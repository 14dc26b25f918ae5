"""Notebook 02 (L1 filter pruning): the L1 score of each conv filter, and the fc1 columns kept.

The ``*_reference`` functions carry no docstring: ``solution(name)`` prints their source as it is.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..pruning import structured
from .core import Hint, _call, _close, _first_diff, _rand, _shape, _tensor, _weight, course_model, exercise


def filter_l1_reference(weight: Tensor) -> Tensor:
    return weight.abs().sum(dim=(1, 2, 3))


@exercise("filter_l1_scores", "02", "sum |W| over each conv filter: one L1 score per output channel",
          filter_l1_reference, (structured.conv_filter_l1, structured.keep_top),
          hints=("weight: (C_out, C_in, k, k); return (C_out,)", "s_j = Σ_{c,u,v} |W[j, c, u, v]|"))
def _check_filter_l1(fn):
    """A small weight and block2's conv; signed sums and L2 norms are named."""
    w = _rand(5, 3, 3, 3, seed=2)
    model, source = course_model()
    cases = [(w, "a (5, 3, 3, 3) weight"), (_weight("features.block2.conv"), f"features.block2.conv of {source}")]
    for weight, case in cases:
        out = _tensor(_call(fn, weight, case=case))
        ref = filter_l1_reference(weight)
        _shape(out, ref.shape, why=" (one score per output filter, dim 0)")
        if _close(out, ref, rtol=1e-4):
            continue
        if _close(out, weight.sum(dim=(1, 2, 3)), rtol=1e-4):
            raise Hint("the scores can be negative: sum the absolute values |W| (L1 norm), not W")
        if _close(out, weight.flatten(1).norm(dim=1), rtol=1e-4):
            raise Hint("that is the L2 norm; the L1 score is Σ|W| over the filter")
        raise Hint(f"on {case}: {_first_diff(out, ref, rtol=1e-4)}")
    return f"matches on a small weight and on features.block2.conv of {source}"


@exercise("fc1_kept_columns", "02", "fc1 input columns that survive when only some last-conv channels are kept",
          structured.fc1_columns, (structured.fc1_columns, structured._copy_classifier),
          hints=("kept_channels: sorted int64 (k,); spatial = H·W of the last feature map (3·3 = 9)",
                 "flatten puts channel c's H·W values at columns c·spatial … c·spatial + spatial - 1"))
def _check_fc1_columns(fn):
    """Two small cases and the half of block3's channels L1 keeps; a wrong order is named."""
    model, source = course_model()
    kept = structured.keep_by_ratio(structured.conv_filter_l1(model)[-1], 0.5)
    cases = [(torch.tensor([0, 2]), 9, "kept channels [0, 2], spatial 9"),
             (torch.tensor([1, 3, 4]), 4, "kept channels [1, 3, 4], spatial 4"),
             (kept, model.config.feature_map_size ** 2, f"the half of block3's channels L1 keeps in {source}")]
    for channels, spatial, case in cases:
        ref = structured.fc1_columns(channels, spatial)
        out = _tensor(_call(fn, channels, spatial, case=case)).flatten()
        if out.numel() != ref.numel():
            raise Hint(f"expected {ref.numel()} columns ({spatial} per kept channel), got {out.numel()} on {case}")
        if torch.is_floating_point(out) or not torch.equal(out.long(), ref):
            if torch.equal(out.long().sort().values, ref):
                raise Hint(f"right columns, wrong order: list them channel by channel, ascending ({case})")
            raise Hint(f"on {case}: expected {ref[:12].tolist()}…, got {out[:12].tolist()}… — channel c "
                       f"owns columns c·{spatial} … c·{spatial}+{spatial - 1} (flatten of a (C, H, W) map)")
    return f"matches on two small cases and on block3 → fc1 of {source}"
