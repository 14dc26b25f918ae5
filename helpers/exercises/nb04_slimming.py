"""Notebook 04 (network slimming): the L1 subgradient on BatchNorm γ, and the global γ threshold."""
from __future__ import annotations

import math

import torch

from ..pruning import slimming
from .core import Hint, _call, _close, _first_diff, _rand, _shape, _tensor, course_model, exercise


@exercise("gamma_subgradient", "04", "grad + s·sign(γ): the L1 penalty on BatchNorm γ added to the loss gradient",
          slimming.gamma_subgradient, (slimming.gamma_subgradient, slimming.add_gamma_l1_hooks),
          hints=("grad, gamma: (C,) tensors; s: float; d/dγ s|γ| = s·sign(γ), and 0 at γ = 0",))
def _check_gamma(fn):
    """A small case (γ = 0 included) and block2's γ; L2 penalty, missing grad and |γ| are named."""
    model, source = course_model()
    gamma_model = model.features.block2.bn.weight.detach().clone()
    cases = [(torch.tensor([0.1, -0.2, 0.3, 0.0]), torch.tensor([0.5, -2.0, 0.0, 1.5]), 1e-2, "4 channels, s = 0.01"),
             (_rand(64, seed=13) * 1e-3, gamma_model, 1e-4, f"γ of features.block2.bn of {source}, s = 1e-4")]
    for grad, gamma, s, case in cases:
        ref = slimming.gamma_subgradient(grad, gamma, s)
        out = _tensor(_call(fn, grad, gamma, s, case=case))
        _shape(out, grad.shape, why=" (one value per channel)")
        if _close(out, ref, atol=1e-9):
            continue
        if _close(out, s * torch.sign(gamma), atol=1e-9):
            raise Hint(f"the penalty's term is ADDED to the loss gradient: return grad + s·sign(γ) ({case})")
        if _close(out, grad + s * gamma, atol=1e-9):
            raise Hint(f"s·γ is the gradient of an L2 penalty; the L1 penalty s|γ| gives s·sign(γ) ({case})")
        if _close(out, grad + s * gamma.abs(), atol=1e-9) or _close(out, grad + s, atol=1e-9):
            raise Hint(f"the subgradient of s|γ| is s·sign(γ): negative γ are pushed UP toward 0 ({case})")
        raise Hint(f"on {case}: {_first_diff(out, ref, atol=1e-9)}")
    return f"matches on a small case (γ = 0 included) and on block2 γ of {source}"


@exercise("global_threshold", "04", "the |γ| below which the lowest ratio of ALL channels lie (midpoint)",
          slimming.global_threshold, (slimming.global_threshold,),
          hints=("gammas: list of (C_l,) tensors, one per BN layer; ratio in [0, 1)",
                 "n = round(ratio · total); sort all |γ|; threshold = (v[n-1] + v[n]) / 2; 0.0 when n = 0"))
def _check_threshold(fn):
    """Three ratios on 10 γ and ratio 0.5 on the model's γ: the count below it, then the midpoint."""
    model, source = course_model()
    small = [torch.tensor([0.9, -0.05, 0.4]), torch.tensor([-0.8, 0.02, 0.3, 0.07]),
             torch.tensor([0.01, -0.6, 0.5])]
    real = [bn.weight.detach().clone() for bn in model.bn_layers()]
    cases = [(small, 0.3, "3 layers, 10 γ, ratio 0.3"), (small, 0.55, "3 layers, 10 γ, ratio 0.55"),
             (small, 0.0, "ratio 0"), (real, 0.5, f"the γ of {source}, ratio 0.5")]
    for gammas, ratio, case in cases:
        ref = slimming.global_threshold(gammas, ratio)
        out = _call(fn, gammas, ratio, case=case)
        try:
            t = float(_tensor(out).reshape(()).item())
        except Hint:
            raise
        except Exception:
            raise Hint(f"return one number (the threshold), got {out!r} ({case})") from None
        values = torch.cat(gammas).abs()
        n_remove, below = int(round(ratio * len(values))), int((values < t).sum())
        if below != n_remove:
            raise Hint(f"{below} of the {len(values)} |γ| lie below your threshold {t:.4g}; exactly "
                       f"round(ratio·n) = {n_remove} must — rank the absolute values |γ| of all layers together ({case})")
        if not math.isclose(t, ref, rel_tol=1e-5, abs_tol=1e-9):
            raise Hint(f"the right channels fall below {t:.4g}, but the threshold is the midpoint between the "
                       f"largest removed and the smallest kept |γ|: {ref:.4g} ({case})")
    return f"matches on small cases and on all BatchNorm γ of {source}"
