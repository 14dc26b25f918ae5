"""Notebook 06 (quantization): symmetric per-channel scales, fake quantization, the STE round, and
an integer-only int8 Linear (the arithmetic of the int8 kernels).

The ``*_reference`` functions carry no docstring: ``solution(name)`` prints their source as it is.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..quantization import codes as qcodes, fake, integer as qinteger
from .core import (Hint, _call, _close, _first_diff, _images, _rand, _run, _shape, _tensor, _weight, course_model,
                   exercise)


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


def _scale_mistakes(weight: Tensor, bits: int) -> list[tuple[Tensor, str]]:
    """(what a plausible wrong scale gives, the hint naming it) for ``weight`` at ``bits``."""
    rows, q_max = weight.reshape(len(weight), -1), 2 ** (bits - 1) - 1
    max_abs = rows.abs().amax(1)
    return [((rows.amax(1) - rows.amin(1)) / (2 ** bits - 1), "(max - min) / (2^b - 1) is the asymmetric scale"),
            (max_abs / (2 ** bits - 1), f"2^b - 1 = {2 ** bits - 1} counts the unsigned levels; the symmetric "
                                        f"range is [-{q_max}, {q_max}], so divide by 2^(b-1) - 1 = {q_max}"),
            (max_abs / 2 ** (bits - 1), f"the narrow symmetric range stops at 2^(b-1) - 1 = {q_max}, not 2^(b-1)"),
            (rows.amax(1) / q_max, "use max|w|, the largest MAGNITUDE: a row whose largest |w| is negative "
                                   "gets the wrong scale from max(w)"),
            (torch.where(max_abs == 0, 1.0, max_abs / q_max), "an all-zero row has max|w| = 0, so its scale is 0 "
                                                               "(got 1 there)")]


@exercise("symmetric_scales", "06", "per output channel, max|w_c| / (2^(b-1) - 1): the symmetric weight scale",
          symmetric_scales_reference, (qcodes.weight_scales, qcodes.symmetric_range),
          hints=("weight: (out, …); return (out,); 4 bits: q in [-7, 7], so s_c = max|w_c| / 7",))
def _check_scales(fn):
    """Small weights (an all-zero row, a negative largest |w|, 2 and 3 bits) and fc1 / block2.conv:
    max|w| / q_max per row; the asymmetric, unsigned, 2^(b-1), signed-max and zero-row scales named."""
    model, source = course_model()
    signs = torch.tensor([[0.1, -0.9, 0.3], [0.0, 0.0, 0.0], [0.5, 0.2, -0.1]])
    cases = [(_rand(3, 8, seed=17), 4, "a (3, 8) weight, 4 bits"),
             (_rand(2, 2, 3, 3, seed=18), 2, "a conv weight, 2 bits"),
             (signs, 4, "a (3, 3) weight, 4 bits: row 0's largest |w| negative, row 1 all zero"),
             (_rand(1, 5, seed=38), 3, "a single-row (1, 5) weight, 3 bits"),
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
        r = int((~torch.isclose(out.double(), ref.double(), rtol=1e-5)).nonzero()[0])
        if ref[r] == 0:
            raise Hint(f"an all-zero row has max|w| = 0, so its scale is 0: row {r} got {out[r]:.6g} — no guard "
                       f"value: a zero scale is what marks the row empty ({case})")
        extra = next((f" — {why}" for wrong, why in _scale_mistakes(weight, bits)
                      if _close(out, wrong, rtol=1e-5)), "")
        raise Hint(f"scale must be max|w| / {2 ** (bits - 1) - 1} for {bits}-bit symmetric: row {r} expected "
                   f"{ref[r]:.6g}, got {out[r]:.6g}{extra} ({case})")
    return f"matches on small weights (an all-zero row, a negative largest |w|) and on fc1 / block2.conv of {source}"


def _tie_free(weight: Tensor, s: Tensor) -> Tensor:
    """Entries whose w/s is not within 1e-4 of a rounding tie (where x/s and x·(1/s) may differ)."""
    ratio = (weight / s).double()
    return (ratio - ratio.floor() - 0.5).abs() > 1e-4


def _level_problem(out: Tensor, weight: Tensor, s: Tensor, q_max: int) -> str:
    """What is wrong with the first entry of ``out`` beyond its row's largest level or off its grid; "" if none."""
    s = s.expand_as(weight).double()
    beyond = out.double().abs() > q_max * s * (1 + 1e-5) + 1e-12
    if beyond.any():
        i = tuple(int(v) for v in beyond.nonzero()[0])
        return (f"entry {i} is {out[i]:.6g}, beyond its row's largest level ±{q_max}·s_c = ±{q_max * s[i]:.6g} "
                f"(s_c = {s[i]:.6g}): clamp q = round(w / s_c) to [-{q_max}, {q_max}], per row")
    q = out.double() / s
    off = (s > 1e-9) & ((q - q.round()).abs() > 1e-3)
    if off.any():
        i = tuple(int(v) for v in off.nonzero()[0])
        return (f"entry {i} is {out[i]:.6g}, off the grid of levels s_c·q (multiples of s_c = {s[i]:.6g}; "
                f"{out[i]:.6g} / s_c = {q[i]:.4g}): round w / s_c to an integer q, then multiply by s_c")
    return ""


def _tie_problem(out: Tensor, ref: Tensor, weight: Tensor, s: Tensor) -> str:
    """The hint for an entry exactly halfway between two levels rounded away from the even code; "" if none."""
    ratio = (weight / s).double()
    bad = (ratio - ratio.floor() == 0.5) & ~torch.isclose(out.double(), ref.double(), rtol=1e-5, atol=1e-7)
    if not bad.any():
        return ""
    i = tuple(int(v) for v in bad.nonzero()[0])
    code = float(ratio[i].round())
    return (f"w / s_c = {ratio[i]:g} lies exactly halfway between two codes: torch.round rounds halves to the EVEN "
            f"one, {code:g} (so ŵ = {ref[i]:.6g}), got {out[i]:.6g} — half up or away from zero is another rule")


@exercise("fake_quantize", "06", "round(w / s_c), clamp to ±(2^(b-1) - 1), multiply back by s_c",
          fake_quantize_reference, (qcodes.fake_quantize_weight, qcodes.quantize_weight, qcodes.symmetric_range),
          hints=("weight: (out, …); scales: (out,); return floats of the weight's shape on the levels s_c·q",
                 "q = clamp(round(w / s_c), -(2^(b-1) - 1), 2^(b-1) - 1); ŵ = s_c · q",
                 "halves round to the even code, as torch.round does: 0.5 → 0, 1.5 → 2, 2.5 → 2"))
def _check_fake_quantize(fn):
    """Small cases (exact halves at power-of-two scales, an all-zero channel, 2 and 3 bits) and fc2 with
    MSE scales (inexact rounding ties skipped); codes, clamping, the grid, floor and ties are named."""
    model, source = course_model()
    w = torch.tensor([[0.26, -0.34, 0.05, 1.2], [-0.9, 0.44, 0.0, -0.16]])
    halves = torch.tensor([[0.25, 0.75, -0.25, -0.75, 1.25, 0.1], [0.375, -0.125, 0.625, 0.0, 0.3, -0.3]])
    zero_row = torch.tensor([[0.0, 0.0, 0.0], [0.3, -0.6, 0.9]])
    fc2 = _weight("classifier.fc2")
    cases = [(w, torch.tensor([0.1, 0.1]), 4, "a (2, 4) weight, s = 0.1, 4 bits (0.9 and 1.2 clip at ±0.7)", False),
             (halves, torch.tensor([0.5, 0.25]), 4, "w / s exactly 0.5, 1.5, 2.5, … (s = 0.5 and 0.25), 4 bits", True),
             (_rand(3, 2, 3, 3, seed=19), torch.tensor([0.3, 0.5, 0.2]), 2, "a conv weight at 2 bits", False),
             (zero_row, torch.tensor([1e-12 / 3, 0.3]), 3, "an all-zero channel (scale 1e-12 / 3), 3 bits", False),
             (fc2, qcodes.weight_scales(fc2, 4, clip="mse"), 4, f"classifier.fc2 of {source}, 4 bits, MSE scales",
              False)]
    for weight, scales, bits, case, exact in cases:
        ref = fake_quantize_reference(weight, scales, bits)
        out = _tensor(_call(fn, weight, scales, bits, case=case))
        _shape(out, weight.shape, why=" (the weight's shape)")
        s = scales.reshape(-1, *[1] * (weight.ndim - 1))
        ok = torch.ones_like(weight, dtype=torch.bool) if exact else _tie_free(weight, s)
        if torch.allclose(out.double()[ok], ref.double()[ok], rtol=1e-5, atol=1e-7):
            continue
        q_max = 2 ** (bits - 1) - 1
        codes = torch.clamp(torch.round(weight / s), -q_max, q_max)
        if torch.allclose(out.double(), codes.double()):
            raise Hint(f"you returned the integer codes q; return the dequantized weight s_c·q ({case})")
        problem = _level_problem(out, weight, s, q_max) or (exact and _tie_problem(out, ref, weight, s))
        if problem:
            raise Hint(f"{problem} ({case})")
        if torch.allclose(out.double(), (torch.floor(weight / s).clamp(-q_max, q_max) * s).double()):
            raise Hint(f"round to the NEAREST level (torch.round), not down (floor) ({case})")
        bad = (~torch.isclose(out.double(), ref.double(), rtol=1e-5, atol=1e-7)) & ok
        i = tuple(int(v) for v in bad.nonzero()[0])
        raise Hint(f"w = {weight[i]:.4g} with s = {float(s.expand_as(weight)[i]):.4g} must become {ref[i]:.4g}, got "
                   f"{out[i]:.4g} (round(w/s), clamp, times s) ({case})")
    return f"matches (clamping, exact halves and an all-zero channel included) on small cases and on fc2 of {source}"


def _gradient_hint(grad: Tensor | None, x: Tensor, case: str) -> str:
    """The hint when the gradient to ``x`` is not 1 everywhere: where it differs and what it is; "" if right."""
    if grad is not None and torch.allclose(grad, torch.ones_like(x)):
        return ""
    if grad is None or not grad.any():
        return (f"the gradient through ste_round must be 1 (straight-through), got 0 for every x: torch.round's own "
                f"gradient is 0, so the output must depend on x through an identity path whose rounding correction "
                f"autograd does not see ({case})")
    i = int((~torch.isclose(grad, torch.ones_like(x))).flatten().nonzero()[0])
    return (f"the gradient through ste_round must be 1 for every x (straight-through), got "
            f"{float(grad.flatten()[i]):.6g} at x = {float(x.flatten()[i]):.6g} (entry {i}) — no clipping, "
            f"no scaling: every x passes its gradient through unchanged ({case})")


@exercise("ste_round", "06", "straight-through round: forward round(x), gradient 1 in backward",
          ste_round_reference, (qcodes.fake_quantize_weight, qcodes._clamp_straight, fake.straight_through),
          hints=("x: a float tensor that requires grad; return a tensor of x's shape",
                 "forward: round(x), halves to the even integer as torch.round does (0.5 → 0, 1.5 → 2, -2.5 → -2)",
                 "backward: the gradient reaching x is exactly 1 everywhere, no clipping"))
def _check_ste(fn):
    """10 values (halves, |x| > 1) and fc1 over its scales: forward round(x) (halves to even),
    gradient exactly 1 back to x, x itself unchanged."""
    model, source = course_model()
    fc1 = _weight("classifier.fc1")
    scales = qcodes.weight_scales(fc1, 4, clip="max")
    for values, case in [(torch.tensor([0.2, 0.7, -1.6, 2.5, -0.4, 0.5, -0.5, 1.5, -2.5, 3.7]),
                          "10 values, halves included"),
                         (fc1 / scales[:, None], f"classifier.fc1 of {source} divided by its 4-bit scales")]:
        x = values.clone().requires_grad_(True)
        out = _run(fn, (x,), (values,), case)
        if not isinstance(out, Tensor):
            raise Hint(f"return a tensor, got {type(out).__name__} ({case})")
        _shape(out, x.shape, why=" (x's shape)")
        ref = torch.round(values)
        if not _close(out.detach(), ref, rtol=0, atol=1e-5):  # x + (round(x) - x) may be off by an ulp
            i = int((~torch.isclose(out.detach(), ref, rtol=0, atol=1e-5)).flatten().nonzero()[0])
            v, got = float(values.flatten()[i]), float(out.detach().flatten()[i])
            if v - math.floor(v) == 0.5:
                raise Hint(f"x = {v:g} lies exactly halfway: torch.round rounds halves to the EVEN integer, "
                           f"{ref.flatten()[i]:g}, got {got:g} ({case})")
            raise Hint(f"the forward value must be round(x): {_first_diff(out.detach(), ref, rtol=0, atol=1e-5)} "
                       f"({case})")
        if not out.requires_grad:
            raise Hint(f"no gradient flows back to x (the output is detached from x): keep x in the graph ({case})")
        grad, = torch.autograd.grad(out.sum(), x, allow_unused=True)
        hint = _gradient_hint(grad, values, case)
        if hint:
            raise Hint(hint)
    return f"forward rounds (halves to even), gradient 1 — as the course's fake-quantizer on fc1 of {source}"


def int8_linear_reference(x_q: Tensor, x_scale: float, x_zero_point: int, w_q: Tensor, w_scales: Tensor,
                          bias: Tensor, out_scale: float, out_zero_point: int) -> Tensor:
    acc = (x_q.to(torch.int32) - x_zero_point) @ w_q.to(torch.int32).T  # int8 x int8 products, int32 sums
    y = acc.double() * (x_scale * w_scales.double()) + bias.double()     # the real output, one scale per row
    q = torch.round(y / out_scale) + out_zero_point                      # requantize: halves to even
    return torch.clamp(q, 0, 255).to(torch.uint8)


def _int8_cases() -> list[tuple[tuple, str, bool]]:
    """(arguments, case, exact): a hand case with exact halves (dyadic scales, codes below the zero
    point, saturation both ways), a wide random layer, one image, and fc2 of the course model on
    the codes of its fc1 activations (int8 weights, max|w| / 127 per row; uint8 inputs)."""
    hand = (torch.tensor([[3, 7, 0, 200], [10, 1, 255, 3]], dtype=torch.uint8), 0.5, 3,
            torch.tensor([[1, -2, 3, 0], [-4, 5, -6, 1], [2, 2, 2, 2]], dtype=torch.int8),
            torch.tensor([0.25, 0.125, 0.0625]), torch.tensor([-0.25, -0.8125, 0.125]), 0.25, 11)
    g = torch.Generator().manual_seed(21)
    wide = (torch.randint(0, 256, (3, 64), generator=g, dtype=torch.uint8), 0.02, 128,
            torch.randint(-127, 128, (5, 64), generator=g, dtype=torch.int8), torch.rand(5, generator=g) * 0.01 + 0.001,
            torch.randn(5, generator=g), 0.05, 100)
    one = (torch.tensor([[0, 9, 4, 250, 17]], dtype=torch.uint8), 0.1, 0,
           torch.tensor([[5, -7, 0, 1, 127], [-127, 3, 3, -1, 0]], dtype=torch.int8), torch.tensor([0.01, 0.02]),
           torch.tensor([0.3, -0.2]), 0.04, 0)
    model, source = course_model()
    with torch.no_grad():
        hidden = model.classifier.relu1(model.classifier.fc1(model.flatten(model.features(model.normalize(_images())))))
        w = _weight("classifier.fc2")
        w_scales = w.abs().amax(1) / 127
        x_scale = float(hidden.max()) / 255
        y = model.classifier.fc2(hidden)
    layer = (torch.round(hidden / x_scale).clamp(0, 255).to(torch.uint8), x_scale, 0,
             torch.round(w / w_scales[:, None]).clamp(-127, 127).to(torch.int8), w_scales,
             model.classifier.fc2.bias.detach().clone(), float(y.abs().max()) / 255, 0)
    return [(hand, "a (2, 4) input, zero-points 3 and 11, dyadic scales", True),
            (wide, "a (3, 64) input, zero-points 128 and 100", False), (one, "one image of 5 features", False),
            (layer, f"classifier.fc2 of {source} on its fc1 activations' codes", False)]


def _int8_mistakes(x_q, x_scale, x_zero_point, w_q, w_scales, bias, out_scale, out_zero_point):
    """(what a plausible wrong answer gives, the hint naming it)."""
    def codes(acc, scales=w_scales, add_bias=True, divide=True, to_code=lambda v: torch.round(v) + out_zero_point,
              saturate=True):
        y = acc.double() * (x_scale * torch.as_tensor(scales).double()) + (bias.double() if add_bias else 0)
        q = to_code(y / out_scale if divide else y * out_scale)
        return (torch.clamp(q, 0, 255) if saturate else q.long() % 256).to(torch.uint8)

    acc = (x_q.int() - x_zero_point) @ w_q.int().T
    wrapped = (x_q - x_zero_point).int() @ w_q.int().T  # uint8 arithmetic wraps around below 0
    return [(codes(x_q.int() @ w_q.int().T), f"subtract the input zero-point x_zero_point = {x_zero_point} from "
                                             "the codes before multiplying"),
            (codes(wrapped), "x_q is uint8: x_q - x_zero_point wraps around below 0 (1 - 3 = 254 in uint8); "
                             "widen to int32 before subtracting"),
            (codes(acc, to_code=lambda v: torch.floor(v) + out_zero_point),
             "round to the NEAREST code (torch.round), not down: floor, and .to(torch.uint8) of a float (it "
             "truncates), both drop the fraction"),
            (codes(acc, to_code=lambda v: torch.floor(v + 0.5) + out_zero_point),
             "a value exactly halfway between two codes rounds to the EVEN one, as torch.round does (0.5 → 0)"),
            (codes(acc, to_code=lambda v: torch.round(v + out_zero_point)),
             "round y / out_scale first, then add the zero-point: rounding after adding an odd zero-point moves "
             "halves to the other even code"),
            (codes(acc, saturate=False), "clamp to [0, 255] before .to(torch.uint8): out of range, uint8 wraps "
                                         "around (256 → 0, -1 → 255) instead of saturating"),
            (codes(acc, to_code=torch.round), f"add the output zero-point out_zero_point = {out_zero_point} after "
                                              "rounding"),
            (codes(acc, scales=w_scales[0]), "each output channel c has its own weight scale w_scales[c]"),
            (codes(acc, add_bias=False), "add the bias (a real value) to y before requantizing"),
            (codes(acc, divide=False), "y / out_scale is the output in code units: divide by out_scale"),
            (codes(acc + torch.round(bias.double() / out_scale).int(), add_bias=False),
             "the bias is a real value: add it to y = x_scale · w_scales[c] · acc, not to the accumulator")]


@exercise("int8_linear", "06", "integer-only int8 Linear: int32 accumulation of (x_q - z_x)·w_q, requantized to uint8",
          int8_linear_reference, (qinteger.requantization_value, qinteger.int8_linear, qinteger.linear_qparams))
def _check_int8_linear(fn):
    """A hand case (exact halves, codes below the zero point, saturation), a wide layer, one image and
    fc2 of the course model: uint8 codes equal to the reference (entries within 1e-4 of a rounding tie
    skipped outside the hand case, where float32 and float64 may round apart)."""
    for args, case, exact in _int8_cases():
        ref = int8_linear_reference(*args)
        out = _call(fn, *args, case=case)
        if not isinstance(out, Tensor):
            raise Hint(f"return a torch tensor of uint8 codes, got {type(out).__name__} ({case})")
        _shape(out.detach(), ref.shape, "the codes", " (one code per image and output channel)")
        if out.is_floating_point() or out.dtype != torch.uint8:
            raise Hint(f"return the output CODES as torch.uint8 (round, clamp to [0, 255], .to(torch.uint8)), got "
                       f"{out.dtype} ({case})")
        value = qinteger.requantization_value(*args)
        ok = torch.ones_like(ref, dtype=torch.bool) if exact else (value - value.floor() - 0.5).abs() > 1e-4
        if torch.equal(out[ok], ref[ok]):
            continue
        why = next((hint for wrong, hint in _int8_mistakes(*args) if torch.equal(out[ok], wrong[ok])), "")
        i = tuple(int(v) for v in ((out != ref) & ok).nonzero()[0])
        raise Hint(f"code {i} must be {int(ref[i])} (y / out_scale = {float(value[i]):.4g}, zero-point "
                   f"{args[-1]}), got "
                   f"{int(out[i])}" + (f" — {why}" if why else "") + f" ({case})")
    return "bit for bit on a hand case (exact halves, saturation), a wide layer and fc2 of the course model"
