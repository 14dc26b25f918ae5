"""Notebook 03 (Wanda): Wanda's scores, the im2col input norms, per-row and N:M masks.

The ``*_reference`` functions carry no docstring: ``solution(name)`` prints their source as it is.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from ..pruning import unstructured
from . import masks
from .core import (Hint, _call, _close, _first_diff, _images, _mask, _rand, _shape, _tensor, _weight,
                   course_model, exercise)


def wanda_reference(weight: Tensor, input_norms: Tensor) -> Tensor:
    rows = weight.reshape(weight.shape[0], -1)          # (out, fan_in); conv: (C_out, C_in·k·k)
    return (rows.abs() * input_norms[None, :]).reshape(weight.shape)


def im2col_norms_reference(x: Tensor, kernel_size: int, padding: int) -> Tensor:
    patches = F.unfold(x, kernel_size, padding=padding)  # (N, C_in·k·k, positions)
    return patches.pow(2).sum(dim=(0, 2)).div(len(x)).sqrt()


@exercise("wanda_scores", "03", "|W| * ||X_j|| per weight (conv: weight viewed as (C_out, C_in·k·k))",
          wanda_reference, (unstructured.wanda_scores,),
          hints=("weight: (out, in) or (C_out, C_in, k, k); input_norms: (fan_in,); same shape as weight",))
def _check_wanda(fn):
    """Square, single-row, 1x1 and 3x3 weights, a zero norm, then block2's conv with real input norms;
    |W| alone, signed W and norms along the rows are named."""
    model, source = course_model()
    layer = "features.block2.conv"
    conv = model.get_submodule(layer)
    norms = unstructured.input_norms(model, {layer: conv}, _images())[layer]
    cases = [(_rand(5, 5, seed=33), torch.linspace(0.5, 3.0, 5), "a square (5, 5) Linear weight"),
             (_rand(4, 6, seed=3), torch.linspace(0.0, 3.0, 6), "a (4, 6) Linear weight, input 0's norm 0"),
             (_rand(1, 3, seed=29), torch.tensor([2.0, 0.5, 1.0]), "a single-row (1, 3) weight"),
             (_rand(3, 2, 3, 3, seed=4), torch.linspace(0.1, 2.0, 18), "a (3, 2, 3, 3) conv weight"),
             (_rand(4, 3, 1, 1, seed=30), torch.tensor([1.0, 2.0, 3.0]), "a 1x1 conv weight (4, 3, 1, 1)"),
             (_weight(layer), norms, f"{layer} of {source}")]
    for weight, n, case in cases:
        ref = wanda_reference(weight, n)
        out = _tensor(_call(fn, weight, n, case=case))
        _shape(out, weight.shape, why=" (the weight's shape)")
        if _close(out, ref, rtol=1e-4):
            continue
        rows = weight.reshape(len(weight), -1)
        if _close(out, weight.abs(), rtol=1e-4):
            raise Hint(f"the scores are |W| alone (magnitude): multiply each weight by its input's norm ||X_j|| ({case})")
        if _close(out.abs(), ref, rtol=1e-4):
            raise Hint(f"scores must be non-negative: use |W|, not W ({case})")
        for power, what in ((2, "its square ||X_j||² (a sum of squares, not a norm)"), (0.5, "its square root")):
            if n.ne(n.pow(power)).any() and _close(out, wanda_reference(weight, n.pow(power)), rtol=1e-4):
                raise Hint(f"you multiplied |W| by {what}: input_norms already holds the norm "
                           f"||X_j|| = sqrt(mean over images of Σ x_j²); multiply by it as it is ({case})")
        if rows.shape[0] == rows.shape[1] and _close(out, (rows.abs() * n[:, None]).reshape(weight.shape), rtol=1e-4):
            raise Hint(f"you scaled row i by input_norms[i]; the norm belongs to input COLUMN j: "
                       f"rows.abs() * input_norms[None, :] ({case})")
        raise Hint(f"on {case}: {_first_diff(out, ref, rtol=1e-4)} — column j of weight.reshape(out, -1) "
                   "is multiplied by input_norms[j]")
    return f"matches on square, single-row, 1x1 and 3x3 weights (a zero norm included) and {layer} of {source}"


@exercise("im2col_input_norms", "03", "sqrt(mean over images of Σ_positions x_j²) per row of the unfolded input",
          im2col_norms_reference, (unstructured.input_sq_sums, unstructured.unfold_conv_input),
          hints=("x: (N, C_in, H, W); F.unfold(x, k, padding=p) gives (N, C_in·k·k, positions)",
                 "sum the squares over images and positions, divide by N (images), take the square root"))
def _check_im2col(fn):
    """Small inputs (k = 1, 3, 5; padding 0, 1, 2; non-square; a zero channel) and block2's real input;
    a missing sqrt or mean over images, a per-position mean or a missing padding is named."""
    model, source = course_model()
    layer = "features.block2.conv"
    with torch.no_grad():
        x = model.features.block1(model.normalize(_images()))
    zero_channel = _rand(2, 3, 4, 4, seed=31) * torch.tensor([1.0, 0.0, 1.0])[:, None, None]
    cases = [(_rand(2, 1, 4, 4, seed=5), 3, 1, "2 images 1x4x4, k=3, padding 1"),
             (_rand(3, 2, 5, 5, seed=6), 3, 0, "3 images 2x5x5, k=3, padding 0"),
             (zero_channel, 1, 0, "2 images 3x4x4 (channel 1 all zero), k=1, padding 0"),
             (_rand(1, 2, 6, 7, seed=32), 5, 2, "1 image 2x6x7, k=5, padding 2"),
             (x, 3, 1, f"the input of {layer} of {source} on 16 images")]
    for inp, k, p, case in cases:
        ref = im2col_norms_reference(inp, k, p)
        out = _tensor(_call(fn, inp, k, p, case=case))
        _shape(out, ref.shape, why=f" (one norm per weight column: C_in·k·k = {inp.shape[1]}·{k * k})")
        if _close(out, ref, rtol=1e-4):
            continue
        positions = F.unfold(inp, k, padding=p).shape[-1]
        if _close(out, ref.pow(2), rtol=1e-4):
            raise Hint(f"take the square root: ||X_j|| = sqrt(mean_n Σ x²) ({case})")
        if _close(out, ref * math.sqrt(len(inp)), rtol=1e-4):
            raise Hint(f"average over the {len(inp)} images: divide the sum of squares by N before the sqrt ({case})")
        if _close(out, ref / math.sqrt(positions), rtol=1e-4):
            raise Hint(f"||x_j||² sums over the {positions} patch positions of an image; average over images only ({case})")
        if p and _close(out[:1], im2col_norms_reference(inp, k, 0)[:1], rtol=1e-4):
            raise Hint(f"use the conv's zero padding ({p}) when unfolding ({case})")
        raise Hint(f"on {case}: {_first_diff(out, ref, rtol=1e-4)}")
    return f"matches on four small inputs (k = 1, 3, 5) and on the input of {layer} of {source}"


def _quota_text(kept: int, fan_in: int, s: float) -> str:
    """What a row's quota is, and the mistake when it kept round(s·fan_in) or anything at s·fan_in < 1."""
    k = int(s * fan_in)
    text = f"each row must keep exactly {fan_in - k} (fan_in {fan_in} - floor({s}·{fan_in}))"
    if round(s * fan_in) != k and kept == fan_in - round(s * fan_in):
        text += (f" — you removed round(s·fan_in) = {round(s * fan_in)}; remove floor(s·fan_in) = "
                 f"int({s}·{fan_in}) = {k}")
    elif k == 0:
        text += " — floor(s·fan_in) = 0 removes nothing: every weight is kept"
    return text


@exercise("row_mask", "03", "per output row, remove exactly floor(s·fan_in) lowest scores (True = keep)",
          unstructured.row_mask, (unstructured.row_mask, unstructured._lowest),
          hints=("scores: (out, in) or (C_out, C_in, k, k); return a bool mask of the same shape",
                 "view as (out, -1); k = int(s · fan_in) removed in EVERY row, not over the whole layer",
                 "equal scores: the earlier position is removed first (torch.sort(..., stable=True))"))
def _check_row_mask(fn):
    """Ten score tensors (s·fan_in = 4.6 and 4.5, ties, s = 0, fan_in 1): each row's quota of the
    highest scores, and among equal scores the earlier position removed first."""
    model, source = course_model()
    ties = torch.tensor([[0.5, 0.5, 0.5, 0.5, 1.0, 1.0], [2.0, 0.0, 2.0, 0.0, 2.0, 0.0], [0.0] * 6,
                         [3.0, 1.0, 1.0, 2.0, 1.0, 1.0]])
    cases = [(_rand(4, 10, seed=8).abs(), 0.5, "(4, 10) scores at s = 0.5"),
             (_rand(3, 2, 3, 3, seed=9).abs(), 0.3, "(3, 2, 3, 3) conv scores at s = 0.3"),
             (_rand(6, 7, seed=10).abs() * torch.arange(1, 7)[:, None], 0.45, "(6, 7) scores at s = 0.45"),
             (_rand(4, 10, seed=20).abs(), 0.46, "(4, 10) scores at s = 0.46 (s·fan_in = 4.6)"),
             (_rand(2, 9, seed=21).abs(), 0.5, "(2, 9) scores at s = 0.5 (s·fan_in = 4.5)"),
             (ties, 0.5, "(4, 6) scores with ties and an all-zero row, s = 0.5"),
             (_rand(3, 5, seed=22).abs(), 0.0, "(3, 5) scores at s = 0"),
             (_rand(5, 1, seed=23).abs(), 0.5, "(5, 1) scores (fan_in 1) at s = 0.5"),
             (_rand(1, 7, seed=24).abs(), 0.9, "one row of 7 scores at s = 0.9"),
             (_weight("classifier.fc2").abs(), 0.9, f"|W| of classifier.fc2 of {source} at s = 0.9")]
    for scores, s, case in cases:
        out = _mask(_call(fn, scores, s, case=case), scores.shape)
        rows, got = scores.reshape(len(scores), -1), out.reshape(len(out), -1)
        fan_in = rows.shape[1]
        problem = masks.count_problem(got, rows, fan_in - int(s * fan_in))
        if problem:
            raise Hint(f"row {problem[0]} keeps {problem[1]} weights; {_quota_text(problem[1], fan_in, s)}"
                       f"{problem[2]} ({case})")
        problem = masks.order_problem(got, rows)
        if problem:
            raise Hint(f"row {problem[0]} {problem[1]}: remove the LOWEST scores of each row ({case})")
        tie = masks.tie_problem(got, unstructured.row_mask(scores, s).reshape(rows.shape))
        if tie:
            r, i, j = tie
            raise Hint(f"row {r}: " + masks.tie_text(f"position {i}", f"position {j}", rows[r, i]) + f" ({case})")
    return "every row keeps exactly its quota of the highest scores, ties by position, on 9 small cases " \
           f"(s·fan_in = 4.6 and 4.5, ties, s = 0, fan_in 1) and fc2 of {source}"


def _group_name(g: int, m: int, n_inputs: int) -> tuple[str, int]:
    """("row r, inputs a..b", a) for group ``g`` of ``m`` consecutive inputs of rows of ``n_inputs``."""
    row, first = divmod(g, n_inputs // m)
    return f"row {row}, inputs {first * m}..{first * m + m - 1}", first * m


@exercise("nm_mask", "03", "N:M for (out, in) scores: keep the n highest of every m consecutive inputs",
          unstructured.nm_mask, (unstructured.nm_mask,),
          hints=("scores: (out, in) with in divisible by m; groups: inputs 0..m-1, m..2m-1, … of each row",
                 "reshape to (-1, m), remove the m - n lowest of each group, reshape back",
                 "equal scores: the earlier input is removed first (torch.sort(..., stable=True))"))
def _check_nm_mask(fn):
    """2:4, 4:8, 1:4, 3:8, 1:3 and 3:4, ties and fc2: every group of m keeps exactly its n highest,
    and among equal scores the earlier input is removed first."""
    model, source = course_model()
    ties = torch.tensor([[0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0], [3.0, 3.0, 3.0, 3.0, 0.0, 5.0, 5.0, 0.0]])
    cases = [(_rand(3, 8, seed=11).abs(), 2, 4, "(3, 8) scores, 2:4"),
             (torch.arange(16.0).reshape(2, 8), 2, 4, "(2, 8) increasing scores, 2:4"),
             (_rand(2, 16, seed=12).abs(), 4, 8, "(2, 16) scores, 4:8"),
             (_rand(3, 8, seed=25).abs(), 1, 4, "(3, 8) scores, 1:4"),
             (_rand(2, 16, seed=26).abs(), 3, 8, "(2, 16) scores, 3:8"),
             (_rand(4, 6, seed=27).abs(), 1, 3, "(4, 6) scores, 1:3"),
             (_rand(2, 8, seed=28).abs(), 3, 4, "(2, 8) scores, 3:4"),
             (ties, 2, 4, "(2, 8) scores with ties (zeros, as after pruning), 2:4"),
             (_weight("classifier.fc2").abs(), 2, 4, f"|W| of classifier.fc2 of {source}, 2:4")]
    for scores, n, m, case in cases:
        out = _mask(_call(fn, scores, n, m, case=case), scores.shape)
        groups, got = scores.reshape(-1, m), out.reshape(-1, m)
        count = masks.count_problem(got, groups, n)
        if count:
            g, kept, tie_note = count
            swapped = f" — you kept m - n = {m - n}: n is how many to KEEP of every m, so remove the m - n lowest" \
                if kept == m - n != n else ""
            raise Hint(f"group ({_group_name(g, m, scores.shape[1])[0]}) keeps {kept} weights; every group of {m} "
                       f"consecutive inputs must keep exactly {n}{swapped}{tie_note} ({case})")
        order = masks.order_problem(got, groups)
        if order:
            raise Hint(f"group ({_group_name(order[0], m, scores.shape[1])[0]}) {order[1]}: keep the {n} HIGHEST "
                       f"of each group ({case})")
        tie = masks.tie_problem(got, unstructured.nm_mask(scores, n, m).reshape(-1, m))
        if tie:
            (g, i, j), (name, first) = tie, _group_name(tie[0], m, scores.shape[1])
            raise Hint(f"group ({name}): " + masks.tie_text(f"input {first + i}", f"input {first + j}", groups[g, i])
                       + f" ({case})")
    return "every group of m keeps exactly its n highest, ties by position, for 2:4, 4:8, 1:4, 3:8, 1:3 and 3:4 " \
           f"and on fc2 of {source}"
