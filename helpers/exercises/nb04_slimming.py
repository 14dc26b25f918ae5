"""Notebook 04 (network slimming): the L1 subgradient on BatchNorm γ, and the global γ threshold."""
from __future__ import annotations

import math

import torch

from ..pruning import slimming
from .core import (Hint, NotImplementedYet, _call, _close, _copy, _first_diff, _rand, _shape, _tensor, course_model,
                   exercise)


@exercise("gamma_subgradient", "04", "the gradient of loss + s·Σ|γ| with respect to BatchNorm γ, given the loss's",
          slimming.gamma_subgradient, (slimming.gamma_subgradient, slimming.add_gamma_l1_hooks),
          hints=("grad, gamma: (C,) float tensors; s: float >= 0; returns a new (C,) tensor of grad's dtype",
                 "the subgradient of s·|γ| at γ = 0 is taken as 0; grad and gamma are left unchanged"))
def _check_gamma(fn):
    """Small cases (γ = 0, an all-zero γ, s = 0) and block2's γ; L2 penalty, missing grad, |γ| and
    a push at γ = 0 are named."""
    model, source = course_model()
    gamma_model = model.features.block2.bn.weight.detach().clone()
    cases = [(torch.tensor([0.1, -0.2, 0.3, 0.0]), torch.tensor([0.5, -2.0, 0.0, 1.5]), 1e-2, "4 channels, s = 0.01"),
             (torch.tensor([0.1, -0.2, 0.3]), torch.tensor([0.5, -2.0, 1.0]), 0.0, "3 channels, s = 0 (no penalty)"),
             (_rand(5, seed=37), torch.zeros(5), 0.1, "an all-zero γ, s = 0.1"),
             (_rand(64, seed=13) * 1e-3, gamma_model, 1e-4, f"γ of features.block2.bn of {source}, s = 1e-4")]
    for grad, gamma, s, case in cases:
        ref = slimming.gamma_subgradient(grad, gamma, s)
        raw = _call(fn, grad, gamma, s, case=case)
        out = _tensor(raw)
        _shape(out, grad.shape, why=" (one value per channel)")
        if not isinstance(raw, torch.Tensor) or raw.dtype != grad.dtype:
            got = f"a {type(raw).__name__}" if not isinstance(raw, torch.Tensor) else f"dtype {raw.dtype}"
            raise Hint(f"autograd takes your result as γ's gradient: return a torch tensor of grad's dtype "
                       f"({grad.dtype}), got {got} ({case})")
        if _close(out, ref, atol=1e-9):
            continue
        if _close(out, s * torch.sign(gamma), atol=1e-9):
            raise Hint(f"the penalty's term is ADDED to the loss gradient: return grad + s·sign(γ) ({case})")
        if _close(out, grad + s * gamma, atol=1e-9):
            raise Hint(f"s·γ is the gradient of an L2 penalty; the L1 penalty s|γ| gives s·sign(γ) ({case})")
        if _close(out, grad + s * gamma.abs(), atol=1e-9) or _close(out, grad + s, atol=1e-9):
            raise Hint(f"the subgradient of s|γ| is s·sign(γ): negative γ are pushed UP toward 0 ({case})")
        bad = ~torch.isclose(out.double(), ref.double(), atol=1e-9)
        if (gamma[bad] == 0).all():
            i = int(bad.nonzero()[0])
            raise Hint(f"at γ = 0 the subgradient adds nothing (sign(0) = 0, use torch.sign): channel {i} expected "
                       f"{ref[i]:.6g}, got {out[i]:.6g} ({case})")
        raise Hint(f"on {case}: {_first_diff(out, ref, atol=1e-9)}")
    return f"matches on small cases (γ = 0, an all-zero γ, s = 0) and on block2 γ of {source}"


def _midpoint(values: torch.Tensor, n: int) -> float:
    """(v[n-1] + v[n]) / 2 of the sorted ``values`` (0.0 for n = 0; NaN where an index is out of range)."""
    if n == 0:
        return 0.0
    return float((values[n - 1] + values[n]) / 2) if 0 < n < len(values) else float("nan")


def _threshold_mistake(t: float, gammas: list, ratio: float) -> str:
    """The mistake that gives threshold ``t`` (signed γ, floor, v[n] alone, off by one), or ""."""
    signed, values = torch.cat(gammas).sort().values, torch.cat(gammas).abs().sort().values
    n, floor = int(round(ratio * len(values))), int(ratio * len(values))
    same = lambda v: math.isclose(t, v, rel_tol=1e-5, abs_tol=1e-9)  # noqa: E731
    if n == 0:
        return "ratio·n rounds to 0: nothing is removed, so return 0.0"
    half_up = math.floor(ratio * len(values) + 0.5)
    if half_up != n and same(_midpoint(values, half_up)):
        return (f"ratio·n = {ratio * len(values):g} lies halfway: halves round to the EVEN neighbour, as Python's "
                f"round() does (round({ratio * len(values):g}) = {n}), not up (floor(x + 0.5) = {half_up})")
    if floor != n and same(_midpoint(values, floor)):
        return f"n = round(ratio·n) = round({ratio * len(values):g}) = {n} channels, not the floor {floor}"
    if same(_midpoint(signed, n)):
        return "rank the absolute values |γ| of all layers together (a negative γ near 0 is small too)"
    if same(float(values[n])) or same(float(values[n - 1])):
        return "the threshold is the midpoint (v[n-1] + v[n]) / 2 of the largest removed and smallest kept |γ|"
    if n + 1 < len(values) and same(_midpoint(values, n + 1)):
        return ("off by one: the n removed are v[0] … v[n-1] (0-based), so take (v[n-1] + v[n]) / 2, "
                "not (v[n] + v[n+1]) / 2")
    return ""


@exercise("global_threshold", "04", "the |γ| below which the lowest ratio of ALL channels lie (midpoint)",
          slimming.global_threshold, (slimming.global_threshold,),
          hints=("gammas: list of (C_l,) float tensors, one per BatchNorm, signs either way; ratio in [0, 1)",
                 "returns a Python float: the midpoint between the largest removed and the smallest kept |γ| "
                 "when round(ratio · total) channels go (Python's round: halves to even); 0.0 when none go",
                 "a ratio whose round(ratio · total) is every channel raises ValueError"))
def _check_threshold(fn):
    """Ratios 0.3, 0.55 (round ≠ floor), 0.25 (a half: to even), 0, 0.9 (one channel kept) on 10 γ, |γ|
    tied at the cut, a one-channel layer, and the model's γ: the named mistake, else how many |γ| lie
    below; then 0.96 of 10 (rounds to every channel) must raise ValueError."""
    model, source = course_model()
    small = [torch.tensor([0.9, -0.05, 0.4]), torch.tensor([-0.8, 0.02, 0.3, 0.07]),
             torch.tensor([0.01, -0.6, 0.5])]
    tied = [torch.tensor([0.2, -0.2, 0.5]), torch.tensor([0.1]), torch.tensor([0.2, 0.7])]
    real = [bn.weight.detach().clone() for bn in model.bn_layers()]
    cases = [(small, 0.3, "3 layers, 10 γ, ratio 0.3"), (small, 0.55, "3 layers, 10 γ, ratio 0.55"),
             (small, 0.25, "3 layers, 10 γ, ratio 0.25 (ratio·n = 2.5, a half)"), (small, 0.0, "ratio 0"),
             (small, 0.9, "3 layers, 10 γ, ratio 0.9 (one channel kept)"),
             (tied, 0.4, "|γ| 0.2 three times, tied at the cut, and a one-channel layer, ratio 0.4"),
             (real, 0.5, f"the γ of {source}, ratio 0.5")]
    for gammas, ratio, case in cases:
        ref = slimming.global_threshold(gammas, ratio)
        out = _call(fn, gammas, ratio, case=case)
        try:
            t = float(_tensor(out).reshape(()).item())
        except Hint:
            raise
        except Exception:
            raise Hint(f"return one number (the threshold), got {out!r} ({case})") from None
        if math.isclose(t, ref, rel_tol=1e-5, abs_tol=1e-9):
            continue
        mistake = _threshold_mistake(t, gammas, ratio)
        if mistake:
            raise Hint(f"expected {ref:.6g}, got {t:.6g}: {mistake} ({case})")
        values = torch.cat(gammas).abs()
        n_remove, below = int(round(ratio * len(values))), int((values < t).sum())
        raise Hint(f"{below} of the {len(values)} |γ| lie below your threshold {t:.4g}; exactly round(ratio·n) = "
                   f"{n_remove} must — rank |γ| of all layers together, threshold (v[n-1] + v[n]) / 2 ({case})")
    _expect_value_error(fn, small, 0.96, "3 layers, 10 γ, ratio 0.96: round(9.6) = 10, every channel")
    return (f"matches on small cases (round ≠ floor, a half rounded to even, ratio 0, ties at the cut) and on all "
            f"BatchNorm γ of {source}; raises ValueError where every channel would go")


def _expect_value_error(fn, gammas: list, ratio: float, case: str) -> None:
    """A Hint unless ``fn(gammas, ratio)`` raises ValueError (the ratio would remove every channel)."""
    passed = _copy(gammas)
    try:
        out = fn(passed, ratio)
    except NotImplementedError:
        raise NotImplementedYet from None
    except ValueError:
        return
    except Exception as exc:
        raise Hint(f"raise ValueError when round(ratio · n) removes every channel (a model needs at least one), "
                   f"got {type(exc).__name__}: {exc} ({case})") from None
    raise Hint(f"round(ratio · n) removes every channel here: raise ValueError (a model needs at least one "
               f"channel), got {out!r} ({case})")
