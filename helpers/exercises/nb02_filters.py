"""Notebook 02 (L1 filter pruning): the L1 score of each filter or unit, the fc1 columns kept, and the
safe ratio of each layer read off a sensitivity scan (a decision).

The ``*_reference`` functions carry no docstring: ``solution(name)`` prints their source as it is.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..pruning import structured
from .core import Hint, _call, _close, _first_diff, _rand, _run, _shape, _tensor, _weight, course_model, exercise


def filter_l1_reference(weight: Tensor) -> Tensor:
    return weight.abs().flatten(1).sum(dim=1)


def safe_ratios_reference(scan: dict, ratios: list, reference: float, max_drop: float) -> dict:
    safe = {}
    for layer, accuracies in scan.items():
        safe[layer] = 0.0
        for ratio, accuracy in sorted(zip(ratios, accuracies)):
            if reference - accuracy > max_drop:
                break
            safe[layer] = ratio
    return safe


@exercise("filter_l1_scores", "02", "sum |W| over each filter (conv) or row (Linear): one L1 score per output",
          filter_l1_reference, (structured.l1_scores, structured.conv_filter_l1, structured.keep_top),
          hints=("weight: (C_out, C_in, k_h, k_w) of a conv or (out, in) of a Linear layer; return (C_out,)",
                 "s_j = Σ |W[j, ...]| over every dim but the first"))
def _check_filter_l1(fn):
    """Small weights (an all-zero filter, 1x1, 1x3 and 5x5 kernels, one filter, a Linear weight), block2's
    conv and fc2; signed sums, L2 norms, means and conv-only code are named."""
    zero_filter = _rand(4, 2, 3, 3, seed=34) * torch.tensor([1.0, 1.0, 0.0, 1.0])[:, None, None, None]
    model, source = course_model()
    cases = [(_rand(5, 3, 3, 3, seed=2), "a (5, 3, 3, 3) weight"),
             (zero_filter, "a (4, 2, 3, 3) weight, filter 2 all zero"),
             (_rand(3, 4, 1, 1, seed=35), "a 1x1 conv weight (3, 4, 1, 1)"),
             (_rand(1, 2, 1, 3, seed=36), "a single (1, 2, 1, 3) filter"),
             (_rand(2, 3, 5, 5, seed=37), "a 5x5 conv weight (2, 3, 5, 5)"),
             (_rand(6, 5, seed=38), "a Linear weight (6, 5): one score per row"),
             (_weight("features.block2.conv"), f"features.block2.conv of {source}"),
             (_weight("classifier.fc2"), f"classifier.fc2 of {source}")]
    for weight, case in cases:
        note = "a Linear weight is 2-D (out, in): sum over every dim but 0" if weight.ndim == 2 else ""
        out = _tensor(_call(fn, weight, case=case, note=note))
        ref = filter_l1_reference(weight)
        _shape(out, ref.shape, why=" (one score per output filter, dim 0)")
        if _close(out, ref, rtol=1e-4):
            continue
        if _close(out, weight.flatten(1).sum(dim=1), rtol=1e-4):
            raise Hint("the scores can be negative: sum the absolute values |W| (L1 norm), not W")
        if _close(out, weight.flatten(1).norm(dim=1), rtol=1e-4):
            raise Hint("that is the L2 norm; the L1 score is Σ|W| over the filter")
        if _close(out, ref / weight[0].numel(), rtol=1e-4):
            raise Hint(f"that is the mean |W|; the L1 score is the SUM Σ|W| over the filter's "
                       f"{weight[0].numel()} weights ({case})")
        raise Hint(f"on {case}: {_first_diff(out, ref, rtol=1e-4)}")
    return (f"matches on six small weights (a zero filter, 1x1, 1x3 and 5x5 kernels, a Linear weight) and on "
            f"block2's conv and fc2 of {source}")


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


def _scan_table(seed: int) -> tuple[dict, list]:
    """A scan like notebook 02's: 5 layers x 9 ratios, accuracies (reference 94.02) falling with the
    ratio, conv layers faster, with ±0.5 points of noise (dips, and points above the reference)."""
    g = torch.Generator().manual_seed(seed)
    ratios = [round(0.1 * k, 1) for k in range(1, 10)]
    layers = ["features.block1.conv", "features.block2.conv", "features.block3.conv", "classifier.fc1",
              "classifier.fc2"]
    scan = {}
    for layer, scale, power in zip(layers, (40.0, 25.0, 12.0, 6.0, 9.0), (1, 2, 3, 4, 3)):
        fall = torch.linspace(0.1, 0.9, 9) ** power * scale + torch.rand(9, generator=g) - 0.5
        scan[layer] = [round(94.02 - float(f), 2) for f in fall]
    return scan, ratios


@exercise("safe_ratios", "02",
          "per layer, the largest scanned ratio whose accuracy stays within max_drop of the reference",
          safe_ratios_reference, (structured.ratios_from_sensitivity, structured.layer_ratios),
          hints=("scan: {layer: [accuracy % at each ratio]}, ratios in the same order (any order); "
                 "return {layer: ratio}",
                 "safe = within max_drop (drop <= max_drop) at that ratio AND at every smaller one; 0.0 when none is"))
def _check_safe_ratios(fn):
    """Small scans (a drop of exactly max_drop, a curve that recovers after a dip, unsorted ratios,
    max_drop = 0 with an accuracy above the reference, a layer hurt at once) and two 5-layer scans."""
    big, big_ratios = _scan_table(5)
    cases = [({"a": [89.5, 88.5, 80.0], "b": [85.0, 80.0, 70.0], "c": [90.0, 89.75, 89.0]}, [0.25, 0.5, 0.75],
              90.0, 2.0, "three layers, ratios [0.25, 0.5, 0.75], reference 90.0, max_drop 2.0"),
             ({"a": [88.0, 87.5]}, [0.25, 0.5], 90.0, 2.0, "a drop of exactly max_drop = 2.0 at ratio 0.25"),
             ({"a": [89.0, 86.0, 89.5]}, [0.25, 0.5, 0.75], 90.0, 2.0,
              "a curve that dips at 0.5 (drop 4.0) and recovers at 0.75"),
             ({"a": [87.0, 89.0, 89.5]}, [0.5, 0.25, 0.75], 90.0, 2.0, "ratios given unsorted, [0.5, 0.25, 0.75]"),
             ({"a": [90.0, 90.5, 89.5]}, [0.25, 0.5, 0.75], 90.0, 0.0,
              "max_drop = 0 and an accuracy above the reference at 0.5"),
             (big, big_ratios, 94.02, 2.0, "a scan of 5 layers x 9 ratios, reference 94.02, max_drop 2.0"),
             (big, big_ratios, 94.02, 0.5, "the same scan with max_drop 0.5")]
    for scan, ratios, reference, max_drop, case in cases:
        given = ({layer: list(accuracies) for layer, accuracies in scan.items()}, list(ratios))
        out = _run(fn, (*given, reference, max_drop), (scan, ratios, reference, max_drop), case)
        for name, now, before in zip(("scan", "ratios"), given, (scan, ratios)):
            if now != before:  # (_call compares tensors; lists of numbers are compared here, by value)
                raise Hint(f"your function changed its input {name} (on {case}): it sorted or rewrote the caller's "
                           "lists; leave them as they were and work on copies (sorted(...) returns a new list)")
        ref = safe_ratios_reference(scan, ratios, reference, max_drop)
        if not isinstance(out, dict):
            raise Hint(f"return a dict {{layer: safe ratio}}, got {type(out).__name__} on {case}")
        if set(out) != set(ref):
            raise Hint(f"return one ratio for every layer of the scan, {sorted(ref)}; got keys {sorted(out)} on {case}")
        for layer, want in ref.items():
            if out[layer] is None:
                raise Hint(f"layer {layer!r} has no safe ratio on {case}: return 0.0 (prune nothing), not None")
            try:
                got = float(out[layer])
            except (TypeError, ValueError):
                raise Hint(f"layer {layer!r}: return a ratio (a number), got {out[layer]!r} on {case}") from None
            if not math.isclose(got, want, abs_tol=1e-9):
                why = _why_not_safe(scan[layer], ratios, reference, max_drop, got)
                raise Hint(f"layer {layer!r}: expected {want}, got {got:g} on {case} — {why}")
    return ("matches on five small scans (exact ties, a dip, unsorted ratios, max_drop = 0, no safe ratio) and "
            "two 5-layer scans")


def _why_not_safe(accuracies: list, ratios: list, reference: float, max_drop: float, got: float) -> str:
    """What a learner's safe ratio ``got`` overlooked, for a hint."""
    walk = sorted(zip(ratios, accuracies))
    drops = {r: reference - a for r, a in walk}
    if got not in drops and got != 0:
        return f"the answer must be one of the scanned ratios {sorted(ratios)}, or 0.0 when none is safe"
    if got > 0 and any(r < got and drops[r] > max_drop for r in drops):
        first = next(r for r, _ in walk if drops[r] > max_drop)
        return (f"at ratio {first} the drop is already {drops[first]:g} > {max_drop:g}: a ratio is safe only when "
                "every smaller one is too (stop at the first that loses too much)")
    if got > 0 and drops[got] > max_drop:
        return f"at ratio {got:g} the drop is {drops[got]:g} > max_drop {max_drop:g}"
    if max_drop == 0 and any(d < 0 for d in drops.values()):
        return ("an accuracy ABOVE the reference is no drop at all: compare reference − accuracy with max_drop, "
                "not |…|")
    if any(d == max_drop for d in drops.values()):
        return f"a drop of exactly max_drop = {max_drop:g} is within it: safe means drop <= max_drop"
    if list(ratios) != sorted(ratios):
        return "the ratios come in any order: walk them from the smallest up (sort ratio and accuracy together)"
    return f"walk the ratios from the smallest up, keep the last whose drop (reference − accuracy) is <= {max_drop:g}"
