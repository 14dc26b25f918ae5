"""The exercises of notebooks 06 and 07: every reference passes, at least three plausible wrong answers
per exercise fail with the hint that names their mistake, the notebooks pose each exercise before its
answer (stub first, ``show`` only after a pass), and a subtly wrong answer, had it passed, would change
the result it drives (the live view, a PTQ cell, the .ccz file, the int8 program's codes)."""
import json

import numpy as np
import pytest
import torch

from helpers import exercises as ex
from helpers.paths import REPO_ROOT
from helpers.quantization import integer
from helpers.storage import compressed, packed

NAMES = ("symmetric_scales", "fake_quantize", "ste_round", "int8_linear", "pack_bits", "relative_gaps")


# --------------------------------------------------------------------------- wrong answers
def _scales_floor_rows(w, bits):  # one scale per row, but a zero row gets a tiny guard instead of 0
    return w.reshape(len(w), -1).abs().amax(1).clamp(min=1e-3) / (2 ** (bits - 1) - 1)


def _fq_round_half_away(w, s, bits):
    q = 2 ** (bits - 1) - 1
    s = s.reshape(-1, *[1] * (w.ndim - 1))
    r = w / s
    return torch.clamp(torch.sign(r) * torch.floor(r.abs() + 0.5), -q, q) * s  # halves away from zero


def _fq_floor(w, s, bits):
    q = 2 ** (bits - 1) - 1
    s = s.reshape(-1, *[1] * (w.ndim - 1))
    return torch.clamp(torch.floor(w / s), -q, q) * s


def _fq_in_place(w, s, bits):
    q = 2 ** (bits - 1) - 1
    return w.div_(s.reshape(-1, *[1] * (w.ndim - 1))).round_().clamp_(-q, q).mul_(s.reshape(-1, *[1] * (w.ndim - 1)))


def _ste_half_up(x):
    return x + (torch.floor(x + 0.5) - x).detach()


def _ste_in_place(x):
    x.data.round_()  # rounds the caller's tensor, behind autograd's back
    return x


def _ste_scaled(x):
    return 0.5 * x + (torch.round(x) - 0.5 * x).detach()  # the gradient is 0.5, not 1


def _int8(acc_of, rounding=torch.round, saturate=True, out_zero=True):
    """An int8_linear built from one mistake: how the accumulator is formed, the rounding, the clamp."""
    def fn(x_q, x_scale, x_zero_point, w_q, w_scales, bias, out_scale, out_zero_point):
        y = acc_of(x_q, x_zero_point, w_q).double() * (x_scale * w_scales.double()) + bias.double()
        q = rounding(y / out_scale) + (out_zero_point if out_zero else 0)
        return (torch.clamp(q, 0, 255) if saturate else q.long() % 256).to(torch.uint8)
    return fn


_ACC = lambda x_q, z, w_q: (x_q.int() - z) @ w_q.int().T  # noqa: E731 -- the right accumulator


def _int8_in_place(x_q, x_scale, x_zero_point, w_q, w_scales, bias, out_scale, out_zero_point):
    bias /= out_scale  # into code units, in the caller's tensor
    acc = (x_q.int() - x_zero_point) @ w_q.int().T
    y = acc.double() * (x_scale * w_scales.double()) / out_scale + bias.double()
    return torch.clamp(torch.round(y) + out_zero_point, 0, 255).to(torch.uint8)


def _pack_lsb(values, bits):
    bits_of = np.unpackbits(np.asarray(values, np.uint8)[:, None], axis=1, bitorder="little")[:, :bits]
    return np.packbits(bits_of.ravel(), bitorder="little").tobytes()


def _pack_always_pads(values, bits):
    return packed.pack_bits(values, bits) + (b"\x00" if len(values) * bits % 8 == 0 else b"")


def _pack_in_place(values, bits):
    values.sort()  # sorts the caller's array (and packs the values in the wrong order)
    return packed.pack_bits(values, bits)


def _gaps_divmod(positions, max_gap=255):  # a gap of exactly k·max_gap gets k fillers and a 0
    out, previous = [], -1
    for p in positions:
        fillers, rest = divmod(int(p) - previous, max_gap)
        out += [max_gap] * fillers + [rest]
        previous = int(p)
    return np.array(out, dtype=np.int64)


def _gaps_from_zero(positions, max_gap=255):
    gaps = ex.relative_gaps_reference(positions, max_gap)
    gaps[:1] -= 1  # the first gap counted from index 0, not -1
    return gaps


def _gaps_no_fillers(positions, max_gap=255):
    return np.diff(np.concatenate([[-1], positions])).astype(np.int64)


def _gaps_in_place(positions, max_gap=255):
    positions += 1  # count from -1 by shifting the caller's array
    return ex.relative_gaps_reference(positions - 1, max_gap)


WRONG = [
    ("symmetric_scales", "unsigned", lambda w, b: w.reshape(len(w), -1).abs().amax(1) / (2 ** b - 1), "unsigned levels"),
    ("symmetric_scales", "2^(b-1)", lambda w, b: w.reshape(len(w), -1).abs().amax(1) / 2 ** (b - 1), "not 2^(b-1)"),
    ("symmetric_scales", "zero-scale-guard", _scales_floor_rows, "an all-zero row has max|w| = 0, so its scale is 0"),
    ("symmetric_scales", "signed-max", lambda w, b: w.reshape(len(w), -1).amax(1) / (2 ** (b - 1) - 1), "MAGNITUDE"),
    ("symmetric_scales", "in-place", lambda w, b: w.abs_().reshape(len(w), -1).amax(1) / (2 ** (b - 1) - 1),
     "your function changed its input w"),
    ("fake_quantize", "floor", _fq_floor, "NEAREST"),
    ("fake_quantize", "ties", _fq_round_half_away, "torch.round rounds halves to the EVEN"),
    ("fake_quantize", "codes", lambda w, s, b: torch.clamp(torch.round(w / s.reshape(-1, *[1] * (w.ndim - 1))),
                                                           -(2 ** (b - 1) - 1), 2 ** (b - 1) - 1), "integer codes"),
    ("fake_quantize", "in-place", _fq_in_place, "your function changed its input w"),
    ("ste_round", "ties", _ste_half_up, "torch.round rounds halves to the EVEN integer"),
    ("ste_round", "scaled", _ste_scaled, "got 0.5 at x = 0.2 (entry 0)"),
    ("ste_round", "round", torch.round, "got 0 for every x"),
    ("ste_round", "detached", lambda x: torch.round(x).detach(), "no gradient flows"),
    ("ste_round", "in-place", _ste_in_place, "your function changed its input x"),
    ("int8_linear", "no-zero-point", _int8(lambda x, z, w: x.int() @ w.int().T), "subtract the input zero-point"),
    ("int8_linear", "uint8-wrap", _int8(lambda x, z, w: (x - z).int() @ w.int().T), "wraps around below 0"),
    ("int8_linear", "floor", _int8(_ACC, rounding=torch.floor), "not down: floor"),
    ("int8_linear", "truncated", lambda *a: torch.clamp(integer.requantization_value(*a) + a[-1], 0, 255).to(torch.uint8),
     "not down: floor, and .to(torch.uint8) of a float (it truncates)"),
    ("int8_linear", "ties", _int8(_ACC, rounding=lambda v: torch.floor(v + 0.5)), "rounds to the EVEN one"),
    ("int8_linear", "no-clamp", _int8(_ACC, saturate=False), "clamp to [0, 255]"),
    ("int8_linear", "no-output-zero-point", _int8(_ACC, out_zero=False), "add the output zero-point"),
    ("int8_linear", "float-codes", lambda *a: ex.REGISTRY["int8_linear"].reference(*a).float(), "as torch.uint8"),
    ("int8_linear", "in-place", _int8_in_place, "your function changed its input bias"),
    ("pack_bits", "lsb", _pack_lsb, "least-significant bit first"),
    ("pack_bits", "pad-at-multiple", _pack_always_pads, "n·bits is a multiple of 8, so no padding byte"),
    ("pack_bits", "byte-each", lambda values, bits: np.asarray(values, np.uint8).tobytes(), "need ceil"),
    ("pack_bits", "in-place", _pack_in_place, "your function changed its input values"),
    ("relative_gaps", "exact-multiple", _gaps_divmod, "a gap of exactly 255 = 1·max_gap is 1 entry of 255"),
    ("relative_gaps", "from-0", _gaps_from_zero, "counts from index -1"),
    ("relative_gaps", "no-fillers", _gaps_no_fillers, "bridge it with filler entries"),
    ("relative_gaps", "in-place", _gaps_in_place, "your function changed its input pos"),
]


def test_each_exercise_of_06_and_07_has_at_least_three_wrong_answers():
    names = {name for name, *_ in WRONG}
    assert names == set(NAMES) == {n for n, e in ex.REGISTRY.items() if e.notebook in ("06", "07")}
    assert all(sum(name == n for n, *_ in WRONG) >= 3 for name in NAMES)
    assert {name for name, category, *_ in WRONG if category == "in-place"} == set(NAMES)

