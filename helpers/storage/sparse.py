"""A compact sparse file format for pruned course models (``.sparse``).

Layout of a ``.sparse`` file (all integers little-endian; ``storage.framing``)::

    magic    8 bytes  b"CCSPARS1"
    version  uint32   2
    hlen     uint32   length of the JSON header
    header   hlen bytes of UTF-8 JSON: {"format", "config", "meta", "tensors": [entry, ...]}
    plen     uint64   length of the payload
    payload  the tensors' bytes, one after the other, in header order
    crc32    uint32   zlib.crc32 of everything before it

Each tensor entry holds ``name, shape, dtype, encoding, nnz, index_bytes, value_bytes`` and, for
sparse encodings, ``value_dtype``. Encodings (the smallest is chosen per float32 tensor):

* ``dense``: the raw bytes (always used for non-float32 tensors, e.g. BatchNorm's counter);
* ``bitmap``: one bit per element (``numpy.packbits``, 1 = stored) + the stored values;
* ``relative``: for each stored value the gap to the previous one as uint8 (the first counted from
  index -1); a gap over 255 is bridged by filler entries of gap 255 whose value is stored as 0
  (Han et al., Deep Compression) + the stored values.

Every non-zero value is stored; zeros (``-0.0`` included, which ``weight * mask`` produces) are
not, and read back as ``+0.0``: the tensors compare equal and the model's outputs are identical.
``value_dtype="float16"`` halves the values but is lossy (documented as such).
The size of a model in this format is the file's bytes on disk.
"""
from __future__ import annotations

import os
import struct

import numpy as np
import torch
from torch import nn

from ..inputs import check_finite
from .framing import (ModelFileError, checked_payload, frame, json_bytes, json_header, numel_of, read_model_file,
                      table_numels)
from .rebuild import load_state_into, model_from_config

MAGIC = b"CCSPARS1"
VERSION = 2
FORMAT = "compression-course/sparse-v2"
SUFFIX = ".sparse"
ENCODINGS = ("dense", "bitmap", "relative")
VALUE_DTYPES = {"float32": np.float32, "float16": np.float16}
_HEAD = struct.Struct("<8sII")
_NP_DTYPES = {"float32": np.float32, "float64": np.float64, "float16": np.float16,
              "int64": np.int64, "int32": np.int32, "uint8": np.uint8, "bool": np.bool_}


class SparseFormatError(ModelFileError):
    """A file is not a valid sparse model file (wrong magic/version, truncated, corrupt)."""


# --------------------------------------------------------------------------- encoding one tensor
def _relative_gaps(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 gaps incl. fillers, index into the stored-values array or -1 for a filler)."""
    gaps = np.diff(np.concatenate([[-1], positions]))
    fillers = (gaps - 1) // 255  # fillers needed before each real entry
    total = len(positions) + int(fillers.sum())
    out_gaps = np.full(total, 255, dtype=np.uint8)
    source = np.full(total, -1, dtype=np.int64)
    real_at = np.arange(len(positions)) + np.cumsum(fillers)
    out_gaps[real_at] = (gaps - 255 * fillers).astype(np.uint8)
    source[real_at] = np.arange(len(positions))
    return out_gaps, source


def encode_tensor(name: str, tensor: torch.Tensor, value_dtype: str = "float32") -> tuple[dict, bytes]:
    """(header entry, bytes) of one tensor, in the smallest encoding for float32 tensors."""
    array = tensor.detach().cpu().contiguous().numpy()
    dtype = str(array.dtype)
    entry = {"name": name, "shape": list(array.shape), "dtype": dtype}
    if dtype not in _NP_DTYPES:
        raise ValueError(f"cannot store tensor {name!r} of dtype {dtype}")
    dense = array.tobytes()
    candidates = [({"encoding": "dense", "nnz": int(array.size), "index_bytes": 0,
                    "value_bytes": len(dense)}, dense)]
    if dtype == "float32" and array.size:
        flat = array.reshape(-1)
        stored = flat != 0  # both +0.0 and -0.0 count as zero
        values_of = lambda x: x.astype(VALUE_DTYPES[value_dtype]).tobytes()  # noqa: E731
        bitmap = np.packbits(stored).tobytes()
        values = values_of(flat[stored])
        candidates.append(({"encoding": "bitmap", "nnz": int(stored.sum()), "index_bytes": len(bitmap),
                            "value_bytes": len(values), "value_dtype": value_dtype}, bitmap + values))
        gaps, source = _relative_gaps(np.flatnonzero(stored))
        rel_values = np.zeros(len(gaps), dtype=np.float32)  # fillers hold 0
        rel_values[source >= 0] = flat[stored]
        values = values_of(rel_values)
        candidates.append(({"encoding": "relative", "nnz": len(gaps), "index_bytes": len(gaps),
                            "value_bytes": len(values), "value_dtype": value_dtype}, gaps.tobytes() + values))
    info, data = min(candidates, key=lambda c: len(c[1]))
    entry.update(info)
    return entry, data


def decode_tensor(entry: dict, data: bytes, source: str = "sparse file") -> torch.Tensor:
    """The tensor of one header entry from its bytes (validated)."""
    try:
        name, shape, dtype, encoding = entry["name"], entry["shape"], entry["dtype"], entry["encoding"]
        nnz, index_bytes, value_bytes = int(entry["nnz"]), int(entry["index_bytes"]), int(entry["value_bytes"])
    except (KeyError, TypeError, ValueError) as err:
        raise SparseFormatError(f"{source}: malformed tensor entry {str(entry)[:200]}: {err}") from err
    numel = numel_of(shape, SparseFormatError, source, name)
    if not isinstance(dtype, str) or not isinstance(encoding, str) or dtype not in _NP_DTYPES \
            or encoding not in ENCODINGS:
        raise SparseFormatError(f"{source}: tensor {name!r}: unknown dtype {dtype!r} or encoding {encoding!r}")
    if len(data) != index_bytes + value_bytes:
        raise SparseFormatError(f"{source}: tensor {name!r}: {len(data)} bytes, header says {index_bytes + value_bytes}")
    np_dtype = _NP_DTYPES[dtype]
    if encoding == "dense":
        if value_bytes != numel * np.dtype(np_dtype).itemsize:
            raise SparseFormatError(f"{source}: tensor {name!r}: {value_bytes} bytes do not fit shape {shape} of {dtype}")
        return torch.from_numpy(np.frombuffer(data, dtype=np_dtype).reshape(shape).copy())
    value_dtype = VALUE_DTYPES.get(entry.get("value_dtype"))
    if value_dtype is None or value_bytes != nnz * np.dtype(value_dtype).itemsize:
        raise SparseFormatError(f"{source}: tensor {name!r}: values do not match nnz={nnz} of {entry.get('value_dtype')}")
    values = np.frombuffer(data[index_bytes:], dtype=value_dtype).astype(np.float32)
    flat = np.zeros(numel, dtype=np.float32)
    if encoding == "bitmap":
        if index_bytes != (numel + 7) // 8:
            raise SparseFormatError(f"{source}: tensor {name!r}: bitmap of {index_bytes} bytes for {numel} elements")
        stored = np.unpackbits(np.frombuffer(data[:index_bytes], dtype=np.uint8), count=numel).astype(bool)
        if int(stored.sum()) != nnz:
            raise SparseFormatError(f"{source}: tensor {name!r}: bitmap marks {int(stored.sum())} values, header {nnz}")
        flat[stored] = values
    else:
        if index_bytes != nnz:
            raise SparseFormatError(f"{source}: tensor {name!r}: {index_bytes} gaps for {nnz} values")
        positions = np.cumsum(np.frombuffer(data[:index_bytes], dtype=np.uint8).astype(np.int64)) - 1
        if nnz and (positions[-1] >= numel or np.any(np.frombuffer(data[:index_bytes], np.uint8) == 0)):
            raise SparseFormatError(f"{source}: tensor {name!r}: relative indices run past {numel} elements")
        flat[positions] = values
    return torch.from_numpy(flat.reshape(shape))


# --------------------------------------------------------------------------- whole models
def encode(model: nn.Module, meta: dict | None = None, value_dtype: str = "float32") -> bytes:
    """The bytes of a ``.sparse`` file of ``model`` (config + every state_dict tensor + meta).

    ``value_dtype="float32"`` (default) restores the model exactly; ``"float16"`` is smaller but
    rounds the non-zero values.
    """
    if value_dtype not in VALUE_DTYPES:
        raise ValueError(f"value_dtype must be one of {list(VALUE_DTYPES)}, got {value_dtype!r}")
    if not hasattr(model, "config"):
        raise ValueError("a .sparse file needs a course model with a .config (helpers.build_model)")
    state = model.state_dict()
    for name in state:
        if name.endswith(("_orig", "_mask")):
            raise ValueError(f"fold the pruning masks in before saving (found {name})")
    check_finite(state)
    entries, chunks = [], []
    for name, tensor in state.items():
        entry, data = encode_tensor(name, tensor, value_dtype)
        entries.append(entry)
        chunks.append(data)
    header = json_bytes({"format": FORMAT, "config": model.config.to_dict(), "meta": dict(meta or {}),
                         "tensors": entries})
    return frame(_HEAD.pack(MAGIC, VERSION, len(header)) + header, b"".join(chunks))


def read_sparse_bytes(data: bytes, source: str = "sparse file") -> tuple[dict, dict[str, torch.Tensor]]:
    """(header, state_dict) of a ``.sparse`` file's bytes, with every length and the checksum
    validated, and the values the tensor table claims bounded before any is allocated."""
    if len(data) < _HEAD.size:
        raise SparseFormatError(f"{source} is too short ({len(data)} bytes) to be a sparse model file")
    magic, version, hlen = _HEAD.unpack_from(data)
    if magic != MAGIC:
        raise SparseFormatError(f"{source} is not a sparse model file (magic {magic!r}, expected {MAGIC!r})")
    if version != VERSION:
        raise SparseFormatError(f"{source} has format version {version}; this loader reads version {VERSION}")
    end = _HEAD.size + hlen
    payload = checked_payload(data, end, SparseFormatError, source)
    header = json_header(data[_HEAD.size:end], FORMAT, SparseFormatError, source)
    entries = header.get("tensors")
    table_numels(entries, SparseFormatError, source)
    state, offset = {}, 0
    for entry in entries:
        try:
            size = int(entry.get("index_bytes", 0)) + int(entry.get("value_bytes", 0))
        except (TypeError, ValueError) as err:
            raise SparseFormatError(f"{source}: malformed tensor entry {str(entry)[:200]}") from err
        if size < 0 or offset + size > len(payload):
            raise SparseFormatError(f"{source} is truncated inside tensor {entry.get('name')!r}")
        state[entry.get("name")] = decode_tensor(entry, payload[offset:offset + size], source)
        offset += size
    if offset != len(payload):
        raise SparseFormatError(f"{source} has {len(payload) - offset} unexpected bytes after the tensors")
    return header, state


def decode(data: bytes, source: str = "sparse file") -> nn.Module:
    """The model of a ``.sparse`` file's bytes (at its saved shape), in eval mode on the CPU.

    Raises ``SparseFormatError`` (a ``ModelFileError``) for bytes that are not one, truncated or corrupt.
    """
    header, state = read_sparse_bytes(data, source)
    model = model_from_config(header.get("config"), SparseFormatError, source)
    return load_state_into(model, state, SparseFormatError, source).eval()


def encoding_summary(path: str | os.PathLike) -> list[dict]:
    """Per tensor: name, encoding, stored values and bytes (index + values)."""
    header, _ = read_sparse_bytes(read_model_file(path, SparseFormatError), str(path))
    return [{"name": e["name"], "encoding": e["encoding"], "nnz": e["nnz"],
             "bytes": e["index_bytes"] + e["value_bytes"]} for e in header["tensors"]]
