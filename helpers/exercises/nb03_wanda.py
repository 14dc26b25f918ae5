"""Notebook 03 (Wanda): Wanda's scores, the im2col input norms, per-row and N:M masks.

The ``*_reference`` functions carry no docstring: ``solution(name)`` prints their source as it is.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from ..pruning import unstructured
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
    """A Linear, a conv and block2's conv with real input norms; |W| alone and signed W are named."""
    model, source = course_model()
    layer = "features.block2.conv"
    conv = model.get_submodule(layer)
    norms = unstructured.input_norms(model, {layer: conv}, _images())[layer]
    cases = [(_rand(4, 6, seed=3), torch.linspace(0.5, 3.0, 6), "a (4, 6) Linear weight"),
             (_rand(3, 2, 3, 3, seed=4), torch.linspace(0.1, 2.0, 18), "a (3, 2, 3, 3) conv weight"),
             (_weight(layer), norms, f"{layer} of {source}")]
    for weight, n, case in cases:
        ref = wanda_reference(weight, n)
        out = _tensor(_call(fn, weight, n, case=case))
        _shape(out, weight.shape, why=" (the weight's shape)")
        if _close(out, ref, rtol=1e-4):
            continue
        if _close(out, weight.abs(), rtol=1e-4):
            raise Hint(f"the scores are |W| alone (magnitude): multiply each weight by its input's norm ||X_j|| ({case})")
        if _close(out.abs(), ref, rtol=1e-4):
            raise Hint(f"scores must be non-negative: use |W|, not W ({case})")
        raise Hint(f"on {case}: {_first_diff(out, ref, rtol=1e-4)} — column j of weight.reshape(out, -1) "
                   "is multiplied by input_norms[j]")
    return f"matches on a Linear, a conv and {layer} of {source}"


@exercise("im2col_input_norms", "03", "sqrt(mean over images of Σ_positions x_j²) per row of the unfolded input",
          im2col_norms_reference, (unstructured.input_sq_sums, unstructured.unfold_conv_input),
          hints=("x: (N, C_in, H, W); F.unfold(x, k, padding=p) gives (N, C_in·k·k, positions)",
                 "sum the squares over images and positions, divide by N (images), take the square root"))
def _check_im2col(fn):
    """Two small inputs and block2's real input; a missing sqrt, per-position mean or padding is named."""
    model, source = course_model()
    layer = "features.block2.conv"
    with torch.no_grad():
        x = model.features.block1(model.normalize(_images()))
    cases = [(_rand(2, 1, 4, 4, seed=5), 3, 1, "2 images 1x4x4, k=3, padding 1"),
             (_rand(3, 2, 5, 5, seed=6), 3, 0, "3 images 2x5x5, k=3, padding 0"),
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
        if _close(out, ref / math.sqrt(positions), rtol=1e-4):
            raise Hint(f"||x_j||² sums over the {positions} patch positions of an image; average over images only ({case})")
        if p and _close(out[:1], im2col_norms_reference(inp, k, 0)[:1], rtol=1e-4):
            raise Hint(f"use the conv's zero padding ({p}) when unfolding ({case})")
        raise Hint(f"on {case}: {_first_diff(out, ref, rtol=1e-4)}")
    return f"matches on two small inputs and on the input of {layer} of {source}"


def _group_problem(mask: Tensor, scores: Tensor, n_keep: int) -> tuple[int, str] | None:
    """(group index, what is wrong) for the first group (row of ``mask``) that does not keep
    exactly its ``n_keep`` highest scores; None when every group does."""
    kept = mask.sum(1)
    wrong_count = torch.nonzero(kept != n_keep).flatten()
    if len(wrong_count):
        g = int(wrong_count[0])
        return g, f"keeps {int(kept[g])} weights"
    scores = scores.double()
    removed_max = torch.where(mask, -math.inf, scores).amax(1)
    kept_min = torch.where(mask, scores, math.inf).amin(1)
    wrong_order = torch.nonzero(removed_max > kept_min).flatten()
    if len(wrong_order):
        g = int(wrong_order[0])
        return g, f"removes a weight scored {removed_max[g]:.4g} but keeps one scored {kept_min[g]:.4g}"
    return None


@exercise("row_mask", "03", "per output row, remove exactly floor(s·fan_in) lowest scores (True = keep)",
          unstructured.row_mask, (unstructured.row_mask, unstructured._lowest),
          hints=("scores: (out, in) or (C_out, C_in, k, k); return a bool mask of the same shape",
                 "view as (out, -1); k = int(s · fan_in) removed in EVERY row, not over the whole layer"))
def _check_row_mask(fn):
    """Four score tensors: every row keeps exactly its quota of the highest scores."""
    model, source = course_model()
    cases = [(_rand(4, 10, seed=8).abs(), 0.5, "(4, 10) scores at s = 0.5"),
             (_rand(3, 2, 3, 3, seed=9).abs(), 0.3, "(3, 2, 3, 3) conv scores at s = 0.3"),
             (_rand(6, 7, seed=10).abs() * torch.arange(1, 7)[:, None], 0.45, "(6, 7) scores at s = 0.45"),
             (_weight("classifier.fc2").abs(), 0.9, f"|W| of classifier.fc2 of {source} at s = 0.9")]
    for scores, s, case in cases:
        out = _mask(_call(fn, scores, s, case=case), scores.shape)
        fan_in = scores[0].numel()
        k_keep = fan_in - int(s * fan_in)
        problem = _group_problem(out.reshape(len(out), -1), scores.reshape(len(scores), -1), k_keep)
        if problem and problem[1].startswith("keeps"):
            raise Hint(f"row {problem[0]} {problem[1]}; each row must keep exactly {k_keep} "
                       f"(fan_in {fan_in} - floor({s}·{fan_in})) ({case})")
        if problem:
            raise Hint(f"row {problem[0]} {problem[1]}: remove the LOWEST scores of each row ({case})")
    return f"every row keeps exactly its quota of the highest scores, on 3 small cases and fc2 of {source}"


@exercise("nm_mask", "03", "N:M for (out, in) scores: keep the n highest of every m consecutive inputs",
          unstructured.nm_mask, (unstructured.nm_mask,),
          hints=("scores: (out, in) with in divisible by m; groups: inputs 0..m-1, m..2m-1, … of each row",
                 "reshape to (-1, m), remove the m - n lowest of each group, reshape back"))
def _check_nm_mask(fn):
    """Four score tensors: every group of m consecutive inputs keeps exactly its n highest."""
    model, source = course_model()
    cases = [(_rand(3, 8, seed=11).abs(), 2, 4, "(3, 8) scores, 2:4"),
             (torch.arange(16.0).reshape(2, 8), 2, 4, "(2, 8) increasing scores, 2:4"),
             (_rand(2, 16, seed=12).abs(), 4, 8, "(2, 16) scores, 4:8"),
             (_weight("classifier.fc2").abs(), 2, 4, f"|W| of classifier.fc2 of {source}, 2:4")]
    for scores, n, m, case in cases:
        out = _mask(_call(fn, scores, n, m, case=case), scores.shape)
        problem = _group_problem(out.reshape(-1, m), scores.reshape(-1, m), n)
        if problem:
            r, c = divmod(problem[0], scores.shape[1] // m)
            where = f"row {r}, inputs {c * m}..{c * m + m - 1}"
            if problem[1].startswith("keeps"):
                raise Hint(f"group ({where}) {problem[1]}; every group of {m} consecutive inputs "
                           f"must keep exactly {n} ({case})")
            raise Hint(f"group ({where}) {problem[1]}: keep the {n} HIGHEST of each group ({case})")
    return f"every group of m keeps exactly its n highest, on 3 small cases and fc2 of {source}"
