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
    """Small weights (an all-zero filter, 1x1 and 1x3 kernels, one filter) and block2's conv;
    signed sums, L2 norms and means are named."""
    zero_filter = _rand(4, 2, 3, 3, seed=34) * torch.tensor([1.0, 1.0, 0.0, 1.0])[:, None, None, None]
    model, source = course_model()
    cases = [(_rand(5, 3, 3, 3, seed=2), "a (5, 3, 3, 3) weight"),
             (zero_filter, "a (4, 2, 3, 3) weight, filter 2 all zero"),
             (_rand(3, 4, 1, 1, seed=35), "a 1x1 conv weight (3, 4, 1, 1)"),
             (_rand(1, 2, 1, 3, seed=36), "a single (1, 2, 1, 3) filter"),
             (_weight("features.block2.conv"), f"features.block2.conv of {source}")]
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
        if _close(out, ref / weight[0].numel(), rtol=1e-4):
            raise Hint(f"that is the mean |W|; the L1 score is the SUM Σ|W| over the filter's "
                       f"{weight[0].numel()} weights ({case})")
        raise Hint(f"on {case}: {_first_diff(out, ref, rtol=1e-4)}")
    return f"matches on four small weights (a zero filter, 1x1 and 1x3 kernels) and on features.block2.conv of {source}"


@exercise("fc1_kept_columns", "02", "fc1 input columns that survive when only some last-conv channels are kept",
          structured.fc1_columns, (structured.fc1_columns, structured._copy_classifier),
          hints=("kept_channels: sorted int64 (k,); spatial = H·W of the last feature map (3·3 = 9)",
                 "flatten puts channel c's H·W values at columns c·spatial … c·spatial + spatial - 1"))
def _check_fc1_columns(fn):
    """Small cases (spatial 1, channel 0 alone, the last channel) and the half of block3's channels L1
    keeps; a wrong count, a wrong order and float indices are named."""
    model, source = course_model()
    kept = structured.keep_by_ratio(structured.conv_filter_l1(model)[-1], 0.5)
    cases = [(torch.tensor([0, 2]), 9, "kept channels [0, 2], spatial 9"),
             (torch.tensor([1, 3, 4]), 4, "kept channels [1, 3, 4], spatial 4"),
             (torch.tensor([2, 5, 6]), 1, "kept channels [2, 5, 6], spatial 1 (a 1x1 map)"),
             (torch.tensor([0]), 9, "channel 0 alone, spatial 9"),
             (torch.tensor([127]), 9, "the last channel of 128 alone, spatial 9"),
             (kept, model.config.feature_map_size ** 2, f"the half of block3's channels L1 keeps in {source}")]
    for channels, spatial, case in cases:
        ref = structured.fc1_columns(channels, spatial)
        out = _tensor(_call(fn, channels, spatial, case=case)).flatten()
        if out.numel() != ref.numel():
            raise Hint(f"expected {ref.numel()} columns ({spatial} per kept channel), got {out.numel()} on {case}")
        if not torch.is_floating_point(out) and torch.equal(out.long(), ref):
            continue
        if torch.is_floating_point(out) and torch.equal(out, ref.to(out.dtype)):
            raise Hint(f"right columns as {out.dtype}: return integer indices (torch.long), usable to index fc1 "
                       f"({case})")
        if torch.equal(out.long().sort().values, ref):
            raise Hint(f"right columns, wrong order: list them channel by channel, ascending ({case})")
        raise Hint(f"on {case}: expected {ref[:12].tolist()}…, got {out[:12].tolist()}… — channel c "
                   f"owns columns c·{spatial} … c·{spatial}+{spatial - 1} (flatten of a (C, H, W) map)")
    return f"matches on five small cases (spatial 1, channel 0, the last channel) and on block3 → fc1 of {source}"
