"""Notebook 07 (combined compression): bit packing, and the relative gaps of the sparse format.

The ``*_reference`` functions carry no docstring: ``solution(name)`` prints their source as it is.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..pruning import unstructured
from ..quantization import codes as qcodes
from ..storage import packed, sparse
from .core import Hint, _call, _tensor, _weight, course_model, exercise


def relative_gaps_reference(positions, max_gap: int = 255) -> np.ndarray:
    gaps, previous = [], -1                              # the first gap counts from index -1
    for p in positions:
        gap = int(p) - previous
        while gap > max_gap:                             # a filler entry (stored value 0) per max_gap
            gaps.append(max_gap)
            gap -= max_gap
        gaps.append(gap)
        previous = int(p)
    return np.array(gaps, dtype=np.int64)


@exercise("pack_bits", "07", "pack integers in [0, 2^b) tightly, b bits each, most significant bit first",
          packed.pack_bits, (packed.pack_bits, packed.unpack_bits),
          hints=("values: 1-D ints in [0, 2^bits); return bytes of length ceil(n·bits / 8)",
                 "[1, 2, 3] at 2 bits: 01 10 11 00 = 0x6c (the last byte padded with zeros)"))
def _check_pack_bits(fn):
    """Small cases (n·bits a multiple of 8, 8 and 1 bits, 0 and 2^b - 1, 5 bits, one value) and fc2's
    4-bit codes, byte for byte; LSB-first order, a needless padding byte and 1-padding are named."""
    model, source = course_model()
    fc2 = _weight("classifier.fc2")
    codes = qcodes.quantize_weight(fc2, qcodes.weight_scales(fc2, 4), 4).numpy().ravel() + 7
    cases = [(np.array([1, 2, 3]), 2, "[1, 2, 3] at 2 bits"), (np.array([5, 0, 7, 1, 6]), 3, "5 values at 3 bits"),
             (np.arange(16) % 16, 4, "0..15 at 4 bits (64 bits: no padding)"),
             (np.array([0, 255, 1, 128]), 8, "[0, 255, 1, 128] at 8 bits"),
             (np.array([1, 0, 1, 1, 0, 0, 1, 0, 1]), 1, "9 values at 1 bit"),
             (np.array([31, 0, 17]), 5, "[31, 0, 17] at 5 bits"), (np.array([6]), 3, "one value, 6 at 3 bits"),
             (codes.astype(np.int64), 4, f"4-bit codes (+7) of classifier.fc2 of {source}")]
    for values, bits, case in cases:
        ref = packed.pack_bits(values, bits)
        out = _call(fn, values, bits, case=case)
        try:
            data = bytes(out) if isinstance(out, (bytes, bytearray)) else np.asarray(
                out.detach().cpu() if isinstance(out, Tensor) else out).astype(np.uint8).tobytes()
        except Exception:
            raise Hint(f"return bytes, got {type(out).__name__} ({case})") from None
        n_bits = len(values) * bits
        if len(data) != len(ref):
            padded = n_bits % 8 == 0 and len(data) > len(ref)
            exact = " — n·bits is a multiple of 8, so no padding byte" if padded else ""
            raise Hint(f"{len(values)} values of {bits} bits need ceil({n_bits}/8) = {len(ref)} bytes, "
                       f"got {len(data)}{exact} ({case})")
        if data != ref:
            lsb = np.packbits(np.unpackbits(np.asarray(values, np.uint8)[:, None], axis=1, bitorder="little")
                              [:, :bits].ravel(), bitorder="little").tobytes()
            ones = np.packbits(np.concatenate([np.unpackbits(np.asarray(values, np.uint8)[:, None], axis=1)
                                               [:, 8 - bits:].ravel(), np.ones(-n_bits % 8, np.uint8)])).tobytes()
            why = " — that is least-significant bit first; pack MSB first" if data == lsb else \
                " — pad the last byte with 0 bits, not 1" if data == ones else ""
            raise Hint(f"{case} must give {ref[:4].hex(' ')}…, got {data[:4].hex(' ')}…{why}")
    return f"byte for byte as the course's packed files, on small cases (1, 5 and 8 bits, no padding) and the fc2 " \
           f"codes of {source}"


@exercise("relative_gaps", "07", "gaps between non-zero positions (first from -1), fillers of max_gap for long gaps",
          relative_gaps_reference, (sparse._relative_gaps,),
          hints=("positions: sorted 1-D ints; return one int per entry (fillers included)",
                 "a gap g > max_gap becomes entries max_gap, max_gap, …, then the rest (a filler stores value 0)"))
def _check_relative_gaps(fn):
    """Small cases (gaps of exactly max_gap, 2·max_gap and 510, no positions, position 0) and fc1's
    non-zeros at 99% per row; the first gap, missing fillers and a filler at an exact multiple are named."""
    model, source = course_model()
    fc1 = _weight("classifier.fc1")
    positions = np.flatnonzero(unstructured.row_mask(fc1.abs(), 0.99).numpy().ravel())
    cases = [(np.array([0, 3, 4]), 255, "positions [0, 3, 4]"),
             (np.array([254]), 255, "position 254: a first gap of exactly 255"),
             (np.array([254, 764]), 255, "positions [254, 764]: gaps of exactly 255 and 510"),
             (np.array([2, 20]), 7, "positions [2, 20], max_gap 7"),
             (np.array([6, 13, 30]), 7, "positions [6, 13, 30], max_gap 7"),
             (np.array([13]), 7, "position 13, max_gap 7: a first gap of exactly 14 = 2·7"),
             (np.array([], dtype=np.int64), 255, "no positions (an all-zero weight)"), (np.array([0]), 255, "position 0"),
             (positions, 255, f"the non-zeros of classifier.fc1 of {source} pruned to 99% per row")]
    for pos, max_gap, case in cases:
        ref = relative_gaps_reference(pos, max_gap)
        note = "no non-zeros give no gaps: return an empty array" if not len(pos) else ""
        out = _tensor(_call(fn, pos, max_gap, case=case, note=note)).flatten()
        if torch.is_floating_point(out) and not torch.equal(out, out.round()):
            raise Hint(f"gaps are whole numbers, got {out[:6].tolist()} ({case})")
        got = out.long().numpy()
        if np.array_equal(got, ref):
            continue
        gaps = np.diff(np.concatenate([[-1], pos]))
        if len(got) and len(pos) and got[0] == pos[0] and ref[0] == pos[0] + 1:
            raise Hint(f"the first gap counts from index -1: position {pos[0]} gives gap {pos[0] + 1} ({case})")
        if len(got) and got.max() > max_gap:
            raise Hint(f"gap {got.max()} exceeds max_gap={max_gap}: bridge it with filler entries of {max_gap} ({case})")
        if (got == 0).any() and (gaps % max_gap == 0).any():
            g = int(gaps[gaps % max_gap == 0][0])
            entries = "1 entry" if g == max_gap else f"{g // max_gap} entries"
            raise Hint(f"a gap of exactly {g} = {g // max_gap}·max_gap is {entries} "
                       f"of {max_gap} and no 0: add fillers only while the rest EXCEEDS max_gap (gap > max_gap) — "
                       f"expected {ref[:10].tolist()}, got {got[:10].tolist()} ({case})")
        raise Hint(f"{case}: expected {ref[:10].tolist()}, got {got[:10].tolist()} — fillers are entries of max_gap")
    return f"matches on small cases (gaps of exactly max_gap and 510, no positions) and on the course's .sparse " \
           f"coding of fc1 of {source}"
