"""Notebook 06 (quantization): symmetric per-channel scales, fake quantization, the STE round.

The ``*_reference`` functions carry no docstring: ``solution(name)`` prints their source as it is.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..quantization import codes as qcodes, fake
from .core import (Hint, NotImplementedYet, _call, _close, _first_diff, _rand, _shape, _tensor, _weight,
                   course_model, exercise)


def symmetric_scales_reference(weight: Tensor, bits: int) -> Tensor:
    q_max = 2 ** (bits - 1) - 1                          # narrow symmetric range: q in [-q_max, q_max]
    return weight.reshape(weight.shape[0], -1).abs().amax(dim=1) / q_max


def fake_quantize_reference(weight: Tensor, scales: Tensor, bits: int) -> Tensor:
    q_max = 2 ** (bits - 1) - 1
    s = scales.reshape(-1, *[1] * (weight.ndim - 1))     # one scale per output channel
    q = torch.clamp(torch.round(weight / s), -q_max, q_max)
    return q * s


def ste_round_reference(x: Tensor) -> Tensor:
    return x + (torch.round(x) - x).detach()             # forward: round(x); backward: gradient 1


@exercise("symmetric_scales", "06", "per output channel, max|w_c| / (2^(b-1) - 1): the symmetric weight scale",
          symmetric_scales_reference, (qcodes.weight_scales, qcodes.symmetric_range),
          hints=("weight: (out, …); return (out,); 4 bits: q in [-7, 7], so s_c = max|w_c| / 7",))
def _check_scales(fn):
    """Small weights and fc1 / block2.conv: max|w| / q_max per row; the asymmetric scale is named."""
    model, source = course_model()
    cases = [(_rand(3, 8, seed=17), 4, "a (3, 8) weight, 4 bits"), (_rand(2, 2, 3, 3, seed=18), 2, "a conv weight, 2 bits"),
             (_weight("classifier.fc1"), 4, f"classifier.fc1 of {source}, 4 bits"),
             (_weight("features.block2.conv"), 8, f"features.block2.conv of {source}, 8 bits")]
    for weight, bits, case in cases:
        ref = symmetric_scales_reference(weight, bits)
        out = _tensor(_call(fn, weight, bits, case=case))
        if out.numel() == 1 and ref.numel() > 1:
            raise Hint(f"one scale per output channel (dim 0): expected shape {tuple(ref.shape)}, got one scale ({case})")
        _shape(out, ref.shape, why=" (one scale per output channel)")
        if _close(out, ref, rtol=1e-5):
            continue
        q_max = 2 ** (bits - 1) - 1
        rows = weight.reshape(len(weight), -1)
        r = int((~torch.isclose(out.double(), ref.double(), rtol=1e-5)).nonzero()[0])
        asym = (rows.amax(1) - rows.amin(1)) / (2 ** bits - 1)
        extra = " — (max - min) / (2^b - 1) is the asymmetric scale" if _close(out, asym, rtol=1e-5) else ""
        raise Hint(f"scale must be max|w| / {q_max} for {bits}-bit symmetric: row {r} expected "
                   f"{ref[r]:.6g}, got {out[r]:.6g}{extra} ({case})")
    return f"matches on small weights and on fc1 / block2.conv of {source}"


def _tie_free(weight: Tensor, s: Tensor) -> Tensor:
    """Entries whose w/s is not within 1e-4 of a rounding tie (where x/s and x·(1/s) may differ)."""
    ratio = (weight / s).double()
    return (ratio - ratio.floor() - 0.5).abs() > 1e-4


@exercise("fake_quantize", "06", "round(w / s_c), clamp to ±(2^(b-1) - 1), multiply back by s_c",
          fake_quantize_reference, (qcodes.fake_quantize_weight, qcodes.quantize_weight, qcodes.symmetric_range),
          hints=("weight: (out, …); scales: (out,); return floats of the weight's shape on the levels s_c·q",
                 "q = clamp(round(w / s_c), -(2^(b-1) - 1), 2^(b-1) - 1); ŵ = s_c · q"))
def _check_fake_quantize(fn):
    """Small cases and fc2 with MSE scales (rounding ties skipped); codes, no clamp, floor named."""
    model, source = course_model()
    w = torch.tensor([[0.26, -0.34, 0.05, 1.2], [-0.9, 0.44, 0.0, -0.16]])
    fc2 = _weight("classifier.fc2")
    cases = [(w, torch.tensor([0.1, 0.1]), 4, "a (2, 4) weight, s = 0.1, 4 bits (0.9 and 1.2 clip at ±0.7)"),
             (_rand(3, 2, 3, 3, seed=19), torch.tensor([0.3, 0.5, 0.2]), 2, "a conv weight at 2 bits"),
             (fc2, qcodes.weight_scales(fc2, 4, clip="mse"), 4, f"classifier.fc2 of {source}, 4 bits, MSE scales")]
    for weight, scales, bits, case in cases:
        ref = fake_quantize_reference(weight, scales, bits)
        out = _tensor(_call(fn, weight, scales, bits, case=case))
        _shape(out, weight.shape, why=" (the weight's shape)")
        s = scales.reshape(-1, *[1] * (weight.ndim - 1))
        ok = _tie_free(weight, s)
        if torch.allclose(out.double()[ok], ref.double()[ok], rtol=1e-5, atol=1e-7):
            continue
        q_max = 2 ** (bits - 1) - 1
        codes = torch.clamp(torch.round(weight / s), -q_max, q_max)
        if torch.allclose(out.double(), codes.double()):
            raise Hint(f"you returned the integer codes q; return the dequantized weight s_c·q ({case})")
        if (out.abs() > q_max * s * (1 + 1e-5)).any():
            raise Hint(f"values must be clamped to ±{q_max}·s_c ({bits}-bit narrow symmetric range [-{q_max}, {q_max}]): "
                       f"got {float(out.abs().max()):.4g} where the largest level is {float((q_max * s).max()):.4g} ({case})")
        if torch.allclose(out.double(), (torch.floor(weight / s).clamp(-q_max, q_max) * s).double()):
            raise Hint(f"round to the NEAREST level (torch.round), not down (floor) ({case})")
        bad = (~torch.isclose(out.double(), ref.double(), rtol=1e-5, atol=1e-7)) & ok
        i = tuple(int(v) for v in bad.nonzero()[0])
        raise Hint(f"w = {weight[i]:.4g} with s = {float(s.expand_as(weight)[i]):.4g} must become {ref[i]:.4g}, got "
                   f"{out[i]:.4g} (round(w/s), clamp, times s) ({case})")
    return f"matches (clamping included) on small cases and on fc2 of {source}"


@exercise("ste_round", "06", "straight-through round: forward round(x), gradient 1 in backward",
          ste_round_reference, (qcodes.fake_quantize_weight, fake._QuantMixin.quantized_weight),
          hints=("x + (round(x) - x).detach(): the detached part carries the rounding, x the gradient",))
def _check_ste(fn):
    """5 values and fc1 over its scales: forward round(x), gradient exactly 1 back to x."""
    model, source = course_model()
    fc1 = _weight("classifier.fc1")
    scales = qcodes.weight_scales(fc1, 4, clip="max")
    for x, case in [(torch.tensor([0.2, 0.7, -1.6, 2.5, -0.4]), "5 values"),
                    (fc1 / scales[:, None], f"classifier.fc1 of {source} divided by its 4-bit scales")]:
        x = x.clone().requires_grad_(True)
        try:
            out = fn(x)
        except NotImplementedError:
            raise NotImplementedYet from None
        except Exception as exc:
            raise Hint(f"your function raised {type(exc).__name__}: {exc} (on {case})") from None
        if not isinstance(out, Tensor):
            raise Hint(f"return a tensor, got {type(out).__name__} ({case})")
        _shape(out, x.shape, why=" (x's shape)")
        if not torch.equal(out.detach(), torch.round(x.detach())):
            raise Hint(f"the forward value must be round(x): {_first_diff(out.detach(), torch.round(x.detach()))} ({case})")
        if not out.requires_grad:
            raise Hint(f"no gradient flows back to x (the output is detached from x): keep x in the graph ({case})")
        grad, = torch.autograd.grad(out.sum(), x, allow_unused=True)
        if grad is None or not torch.allclose(grad, torch.ones_like(x)):
            got = 0.0 if grad is None else float(grad.flatten()[0])
            raise Hint(f"the gradient through ste_round must be 1 (straight-through), got {got:g} "
                       f"(torch.round's own gradient is 0) ({case})")
    return f"forward rounds, gradient 1 — as the course's fake-quantizer on fc1 of {source}"
