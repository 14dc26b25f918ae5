"""Deep-Compression-style files (``.ccz``): pruned, quantized, position-coded, entropy-coded.

Input: a pruned model quantized with ``quantization.fake.quantize_model`` (weights per output
channel, symmetric, zero-point 0, so a pruned weight is exactly code 0). Each quantized weight is
stored as

* **positions** of its non-zero codes: the gap to the previous one as a uint8, a gap over 255 bridged
  by filler entries (code 0), as in Han et al.'s Deep Compression (``storage.sparse``);
* **values**: the non-zero codes (and fillers), shifted to be non-negative and bit-packed at the
  layer's bit width (``storage.packed.pack_bits``);

every other tensor (per-channel scales, folded biases, activation qparams, buffers) raw — as float16
when every value of a float32 tensor is exactly a float16 (``combined.half_precision_side_tensors``
rounds a model's scales and biases so; the file stays lossless either way) — except the
weight clipping ratios (a training-time choice already folded into the scales: a reloaded model gets
ratio 1, which only matters if it is trained further). The JSON header and the payload are then
**entropy coded together with LZMA** (Python's ``lzma``, a standard coder: LZ77 + range coding),
which squeezes the skewed gap and code distributions. Layout (v2)::

    magic b"CCDCOMP2" | uint64 length | LZMA(uint32 header length | JSON header | payload) | crc32

The decompressor stops at ``MAX_PLAIN_BYTES`` (a decompression bomb is refused, not inflated).
``helpers.load(path)`` restores the model from the file alone; a truncated or corrupt file raises
``CompressedFileError``. ``stage_sizes`` reports each stage's size (dense, sparse, packed,
entropy-coded) so the notebook can show where the savings come from.
"""
from __future__ import annotations

import lzma
import struct

import numpy as np
import torch
from torch import nn

from ..quantization.fake import quant_layers
from ..quantization.codes import symmetric_range
from ..inputs import check_finite
from .framing import (MAX_HEADER_BYTES, ModelFileError, checked_payload, frame, json_bytes, json_header,
                      table_numels)
from .packed import decode_model, pack_bits, unpack_bits
from .sparse import _relative_gaps

MAGIC = b"CCDCOMP2"
FORMAT = "compression-course/deep-compressed-v2"
NOT_STORED = ".weight_clip_ratio"  # a training-time choice, already folded into weight_scale
SUFFIX = ".ccz"
_HLEN = struct.Struct("<I")
MAX_PLAIN_BYTES = 64 << 20  # the decompressed header + payload; the course's .ccz files inflate to < 1 MB


class CompressedFileError(ModelFileError):
    """A compressed file is truncated, corrupt, or of another format."""


def sparse_codes(codes: np.ndarray, bits: int, gaps_fn=None, pack_fn=None) -> tuple[bytes, bytes, int]:
    """(gap bytes, packed code bytes, entries incl. fillers) of one layer's integer codes.

    ``gaps_fn(positions, max_gap)`` (the gaps with fillers, e.g. a learner's ``relative_gaps``) and
    ``pack_fn(values, bits)`` (e.g. a learner's ``pack_bits``) replace the course's own coders; a
    ValueError when their output does not encode the positions."""
    flat = codes.reshape(-1).astype(np.int16)
    positions = np.flatnonzero(flat)
    gaps, source = _relative_gaps(positions) if gaps_fn is None else _gaps_from(gaps_fn, positions)
    values = np.zeros(len(gaps), dtype=np.int16)  # fillers hold code 0
    values[source >= 0] = flat[positions]
    qmin, _ = symmetric_range(bits)
    packed = pack_bits(values - qmin, bits) if pack_fn is None else bytes(pack_fn((values - qmin).astype(np.int64), bits))
    return gaps.tobytes(), packed, len(gaps)


def _gaps_from(gaps_fn, positions: np.ndarray, max_gap: int = 255) -> tuple[np.ndarray, np.ndarray]:
    """``_relative_gaps``' (uint8 gaps, source index or -1 for a filler) from ``gaps_fn``'s gaps."""
    gaps = np.asarray(gaps_fn(positions.copy(), max_gap)).astype(np.int64).ravel()
    ends = np.cumsum(gaps) - 1  # the index each entry lands on
    source = np.searchsorted(positions, ends)
    real = source < len(positions)
    real[real] = positions[source[real]] == ends[real]
    if ((gaps < 1) | (gaps > max_gap)).any() or int(real.sum()) != len(positions):
        raise ValueError(f"{getattr(gaps_fn, '__name__', 'gaps_fn')} does not encode the positions as gaps "
                         f"of 1..{max_gap}")
    return gaps.astype(np.uint8), np.where(real, source, -1)


def _codes_from_sparse(gaps: bytes, packed: bytes, entries: int, bits: int, numel: int) -> np.ndarray:
    if entries != len(gaps):
        raise CompressedFileError(f"{len(gaps)} gaps for {entries} entries")
    qmin, _ = symmetric_range(bits)
    values = unpack_bits(packed, bits, entries).astype(np.int16) + qmin
    positions = np.cumsum(np.frombuffer(gaps, dtype=np.uint8).astype(np.int64)) - 1
    if entries and (positions[-1] >= numel or positions.min() < 0):
        raise CompressedFileError("relative indices run past the layer's size")
    flat = np.zeros(numel, dtype=np.int16)
    flat[positions] = values
    return flat


def _exact_in_half(tensor: torch.Tensor) -> bool:
    """A float32 tensor (more than one value) whose every value float16 holds exactly."""
    return (tensor.dtype == torch.float32 and tensor.numel() > 1
            and bool(torch.equal(tensor.half().float(), tensor)))


def encode_with_stages(qmodel: nn.Module, meta: dict | None = None, gaps_fn=None, pack_fn=None) -> tuple[bytes, dict]:
    """(file bytes, stage sizes in bytes) of a pruned, quantized model (``gaps_fn``, ``pack_fn``: see
    ``sparse_codes``; the bytes are those of the course's coders when they compute the same)."""
    layers = quant_layers(qmodel)
    if not layers or not hasattr(qmodel, "quant_spec"):
        raise ValueError("compress a model from quantize_model (pruned first, then quantized)")
    check_finite(qmodel.state_dict())
    coded = {f"{name}.weight": layer for name, layer in layers.items() if layer.weight_bits is not None}
    table, chunks, offset = [], [], 0
    stages = {"dense_float32": 0, "sparse_float32": 0, "sparse_packed": 0}
    for key, tensor in qmodel.state_dict().items():
        if key.endswith(NOT_STORED):
            continue
        tensor = tensor.detach().cpu().contiguous()
        if key in coded:
            bits = coded[key].weight_bits
            gaps, packed, entries = sparse_codes(coded[key].weight_codes().cpu().numpy(), bits, gaps_fn, pack_fn)
            parts = [gaps, packed]
            entry = {"kind": "sparse_codes", "bits": bits, "entries": entries, "gap_bytes": len(gaps)}
            stages["sparse_float32"] += len(gaps) + 4 * entries
        else:
            full = tensor.numpy().tobytes()
            if _exact_in_half(tensor):  # stored in half the bytes, read back bit-for-bit
                parts, entry = [tensor.half().numpy().tobytes()], {"kind": "raw", "dtype": "float16", "as": "float32"}
            else:
                parts, entry = [full], {"kind": "raw", "dtype": str(tensor.dtype).removeprefix("torch.")}
            stages["sparse_float32"] += len(full)
        data = b"".join(parts)
        stages["dense_float32"] += 4 * tensor.numel() if key in coded else len(full)
        stages["sparse_packed"] += len(data)
        table.append({"name": key, "shape": list(tensor.shape), "offset": offset, "nbytes": len(data), **entry})
        chunks.append(data)
        offset += len(data)
    header = json_bytes({"format": FORMAT, "config": qmodel.config.to_dict(), "spec": qmodel.quant_spec.to_dict(),
                         "tensors": table, "meta": dict(meta or {})})
    stages["sparse_packed"] += len(header)
    payload = lzma.compress(_HLEN.pack(len(header)) + header + b"".join(chunks), preset=9 | lzma.PRESET_EXTREME)
    data = frame(MAGIC, payload)
    stages["entropy_coded"] = len(data)
    return data, stages


def _decompress(compressed: bytes, source: str) -> bytes:
    """LZMA-decompress at most ``MAX_PLAIN_BYTES``; a stream that would inflate further is refused."""
    decompressor = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    try:
        plain = decompressor.decompress(compressed, max_length=MAX_PLAIN_BYTES)
    except lzma.LZMAError as err:
        raise CompressedFileError(f"{source} is corrupt: {err}") from err
    if not decompressor.eof and not decompressor.needs_input:
        raise CompressedFileError(f"{source}: its LZMA stream inflates past {MAX_PLAIN_BYTES:,} bytes "
                                  "(a course file inflates to less than 1 MB): refused")
    if not decompressor.eof or decompressor.unused_data:
        raise CompressedFileError(f"{source} is corrupt: its LZMA stream is cut short or followed by other bytes")
    return plain


def read_compressed_bytes(data: bytes, source: str = "compressed file") -> tuple[dict, bytes]:
    """(header, decompressed payload), with every length, the checksum and the inflated size checked."""
    if data[:len(MAGIC)] != MAGIC:
        raise CompressedFileError(f"{source} is not a {FORMAT} file (bad magic bytes)")
    plain = _decompress(checked_payload(data, len(MAGIC), CompressedFileError, source), source)
    if len(plain) < _HLEN.size or len(plain) < _HLEN.size + _HLEN.unpack_from(plain)[0]:
        raise CompressedFileError(f"{source} is corrupt: the header runs past the payload")
    pos = _HLEN.size + _HLEN.unpack_from(plain)[0]
    if pos > MAX_HEADER_BYTES:
        raise CompressedFileError(f"{source} has a header of {pos:,} bytes: not read")
    return json_header(plain[_HLEN.size:pos], FORMAT, CompressedFileError, source), plain[pos:]


def encode(qmodel: nn.Module, meta: dict | None = None, gaps_fn=None, pack_fn=None) -> bytes:
    """The bytes of a ``.ccz`` file of a pruned, quantized model (``gaps_fn``, ``pack_fn``: the coders
    that write it, see ``sparse_codes``; ``helpers.save(model, path, gaps_fn=..., pack_fn=...)``)."""
    return encode_with_stages(qmodel, meta, gaps_fn, pack_fn)[0]


def _tensor(entry: dict, payload: bytes, numel: int) -> torch.Tensor:
    """One table entry's tensor of ``numel`` values (checked by ``table_numels``) from the payload."""
    chunk = payload[entry["offset"]:entry["offset"] + entry["nbytes"]]
    if len(chunk) != entry["nbytes"]:
        raise CompressedFileError(f"tensor {entry['name']} runs past the payload")
    if entry["offset"] < 0:
        raise CompressedFileError(f"tensor {entry['name']} has a negative offset")
    if entry["kind"] == "sparse_codes":
        gaps, packed = chunk[:entry["gap_bytes"]], chunk[entry["gap_bytes"]:]
        codes = _codes_from_sparse(gaps, packed, entry["entries"], entry["bits"], numel)
        return torch.from_numpy(codes.astype(np.int8)).reshape(entry["shape"])
    values = np.frombuffer(chunk, dtype=entry["dtype"]).astype(entry.get("as", entry["dtype"]))
    return torch.from_numpy(values).reshape(entry["shape"])


def decode(data: bytes, source: str = "compressed file") -> nn.Module:
    """The model of a ``.ccz`` file's bytes, in eval mode, from those bytes alone."""
    header, payload = read_compressed_bytes(data, source)
    try:
        entries = header["tensors"]
        counts = table_numels(entries, CompressedFileError, source)
        tensors = {e["name"]: _tensor(e, payload, n) for e, n in zip(entries, counts)}
        for name in [n for n in tensors if n.endswith(".weight_scale")]:  # v2 stores no clipping ratios
            tensors.setdefault(name[: -len(".weight_scale")] + NOT_STORED, torch.ones_like(tensors[name]))
        return decode_model(header, tensors, CompressedFileError, source)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
        if isinstance(err, ModelFileError):
            raise
        raise CompressedFileError(f"{source} is corrupt or has an invalid tensor table ({err!r})") from err


def stage_sizes(qmodel: nn.Module, meta: dict | None = None, gaps_fn=None, pack_fn=None) -> dict:
    """Bytes of each stage of a ``.ccz`` file of ``qmodel`` (dense float32, sparse float32, sparse
    packed codes, entropy coded = the file that ``helpers.save`` writes with the same meta)."""
    return encode_with_stages(qmodel, meta, gaps_fn, pack_fn)[1]


# --------------------------------------------------------------------------- where the bytes go
def entropy_bytes(symbols) -> float:
    """Order-0 Shannon bound of a symbol sequence, in bytes: what an ideal symbol-by-symbol coder
    (Huffman within 1 bit per symbol, an ANS or arithmetic coder within a few bytes) would need."""
    values = torch.as_tensor(symbols).reshape(-1)
    if values.numel() == 0:
        return 0.0
    counts = torch.unique(values, return_counts=True)[1].double()
    p = counts / counts.sum()
    return float(-(counts * p.log2()).sum() / 8)


def byte_breakdown(qmodel: nn.Module):
    """Where the bytes of a ``.ccz`` file go, per coded layer: non-zero weights, bits, the positions
    (one-byte gaps) and the codes, each LZMA-coded on its own and as its order-0 entropy bound
    (a pandas DataFrame; the last row sums the columns)."""
    import lzma

    import pandas as pd

    rows = []
    for name, layer in quant_layers(qmodel).items():
        if layer.weight_bits is None:
            continue
        codes = layer.weight_codes().cpu().numpy()
        gaps, packed, entries = sparse_codes(codes, layer.weight_bits)
        flat = codes.reshape(-1)
        rows.append({"layer": name, "weights": flat.size, "nonzero": int((flat != 0).sum()),
                     "bits": layer.weight_bits, "gap_entries": entries,
                     "positions_lzma": len(lzma.compress(gaps, preset=9 | lzma.PRESET_EXTREME)),
                     "positions_entropy": round(entropy_bytes(list(gaps))),
                     "codes_lzma": len(lzma.compress(packed, preset=9 | lzma.PRESET_EXTREME)),
                     "codes_entropy": round(entropy_bytes(flat[flat != 0]))})
    table = pd.DataFrame(rows)
    total = table.drop(columns=["layer", "bits"]).sum().to_dict()
    return pd.concat([table, pd.DataFrame([{"layer": "total", "bits": None, **total}])], ignore_index=True)
