"""A file format of the course's own for bit-packed 2..8-bit weights (``.packed``).

Layout (all integers little-endian)::

    magic    8 bytes   b"CCQPACK\\x00"
    version  uint16    1
    hlen     uint32    length of the header
    header   hlen bytes of UTF-8 JSON: format, CNNConfig, QuantSpec, the tensor table, meta
    plen     uint64    length of the payload
    payload  plen bytes: the tensors one after another, as the table says
    crc32    uint32    CRC-32 of everything before it

Each quantized weight is stored as its integer codes ``q`` (``-(2^(b-1)-1) .. 2^(b-1)-1``), shifted
to ``u = q + 2^(b-1) - 1 >= 0`` and packed tightly, ``b`` bits per weight, into bytes
(``pack_bits``); its per-channel scales and every other tensor (folded biases, activation scales and
zero-points, the normalisation buffers) are stored raw. ``helpers.load(path)`` rebuilds the
fake-quantized model: weights ``s_c * q`` are exactly what the in-memory model used, so the outputs
are identical. The file's size is its bytes on disk.
"""
from __future__ import annotations

import os
import struct

import numpy as np
import torch
from torch import nn

from ..quantization.fake import quant_layers, quantized_model_from
from ..quantization.codes import dequantize_weight, symmetric_range
from ..inputs import check_finite
from .framing import (ModelFileError, checked_payload, frame, json_bytes, json_header, read_model_file,
                      table_numels)
from .rebuild import config_from, load_state_into

MAGIC = b"CCQPACK\x00"
VERSION = 1
FORMAT = "compression-course/packed-v1"
SUFFIX = ".packed"
_PREFIX = struct.Struct("<8sHI")
_DTYPES = {"float32": torch.float32, "int32": torch.int32, "int64": torch.int64, "int8": torch.int8,
           "uint8": torch.uint8, "float64": torch.float64}


class PackedFileError(ModelFileError):
    """A packed file is truncated, corrupt, or of another format/version."""


def _check_bits(bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 8:
        raise ValueError(f"bits must be an integer from 1 to 8, got {bits!r}")
    return bits


def pack_bits(values: np.ndarray, bits: int) -> bytes:
    """Pack non-negative integers ``< 2^bits`` tightly, ``bits`` per value (MSB first)."""
    _check_bits(bits)
    values = np.asarray(values).ravel()
    if values.size and (values.min() < 0 or values.max() >= 2 ** bits):
        raise ValueError(f"values must lie in [0, {2 ** bits - 1}] to pack into {bits} bits")
    as_bits = np.unpackbits(values.astype(np.uint8)[:, None], axis=1)[:, 8 - bits:]
    return np.packbits(as_bits.ravel()).tobytes()


def unpack_bits(data: bytes, bits: int, count: int) -> np.ndarray:
    """The ``count`` values (uint8) packed by ``pack_bits``."""
    _check_bits(bits)
    needed = (count * bits + 7) // 8
    if len(data) != needed:
        raise ValueError(f"{count} values of {bits} bits need {needed} bytes, got {len(data)}")
    as_bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[: count * bits].reshape(count, bits)
    padded = np.zeros((count, 8), dtype=np.uint8)
    padded[:, 8 - bits:] = as_bits
    return np.packbits(padded, axis=1).ravel()


def _dtype_name(tensor: torch.Tensor) -> str:
    for name, dtype in _DTYPES.items():
        if tensor.dtype == dtype:
            return name
    raise ValueError(f"cannot store a tensor of dtype {tensor.dtype}")


def encode(qmodel: nn.Module, meta: dict | None = None) -> bytes:
    """The bytes of a packed file for a calibrated model from ``quantize_model``."""
    layers = quant_layers(qmodel)
    if not layers or not hasattr(qmodel, "quant_spec"):
        raise ValueError("a .packed file holds a quantized model (quantize_model + calibrate)")
    check_finite(qmodel.state_dict())
    packed_weights = {f"{name}.weight": layer for name, layer in layers.items() if layer.weight_bits is not None}
    table, chunks, offset = [], [], 0
    for key, tensor in qmodel.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        if key in packed_weights:
            layer = packed_weights[key]
            qmin, _ = symmetric_range(layer.weight_bits)
            codes = layer.weight_codes().cpu().numpy().astype(np.int16) - qmin
            data = pack_bits(codes, layer.weight_bits)
            entry = {"kind": "codes", "bits": layer.weight_bits}
        else:
            data = tensor.numpy().tobytes()
            entry = {"kind": "raw", "dtype": _dtype_name(tensor)}
        table.append({"name": key, "shape": list(tensor.shape), "offset": offset, "nbytes": len(data), **entry})
        chunks.append(data)
        offset += len(data)
    header = json_bytes({"format": FORMAT, "config": qmodel.config.to_dict(),
                         "spec": qmodel.quant_spec.to_dict(), "tensors": table, "meta": dict(meta or {})})
    payload = b"".join(chunks)
    return frame(_PREFIX.pack(MAGIC, VERSION, len(header)) + header, payload)


def read_packed_bytes(data: bytes, source: str = "packed file") -> tuple[dict, bytes]:
    """(header dict, payload) of a packed file's bytes, every length and the checksum checked."""
    if len(data) < _PREFIX.size or data[:8] != MAGIC:
        raise PackedFileError(f"{source} is not a packed model (bad magic bytes)")
    _, version, hlen = _PREFIX.unpack_from(data)
    if version != VERSION:
        raise PackedFileError(f"{source} has format version {version}; this loader reads version {VERSION}")
    pos = _PREFIX.size + hlen
    payload = checked_payload(data, pos, PackedFileError, source)
    return json_header(data[_PREFIX.size:pos], FORMAT, PackedFileError, source), payload


def _tensor(entry: dict, payload: bytes, count: int) -> torch.Tensor:
    """One table entry's tensor of ``count`` values (checked by ``table_numels``) from the payload."""
    chunk = payload[entry["offset"]:entry["offset"] + entry["nbytes"]]
    if len(chunk) != entry["nbytes"] or entry["offset"] < 0:
        raise ValueError(f"tensor {entry['name']} runs past the payload")
    if entry["kind"] == "codes":
        qmin, _ = symmetric_range(entry["bits"])
        codes = unpack_bits(chunk, entry["bits"], count).astype(np.int16) + qmin
        return torch.from_numpy(codes.astype(np.int8)).reshape(entry["shape"])
    if entry["kind"] != "raw" or entry["dtype"] not in _DTYPES:
        raise ValueError(f"tensor {entry['name']}: unknown kind {entry['kind']!r} or dtype {entry.get('dtype')!r}")
    array = np.frombuffer(chunk, dtype=entry["dtype"]).copy()
    return torch.from_numpy(array).reshape(entry["shape"])


def decode_model(header: dict, tensors: dict, error: type[ModelFileError], source: str) -> nn.Module:
    """The fake-quantized model of a ``.packed``/``.ccz`` header and its decoded tensors (weights as
    integer codes, turned into ``scale * code`` here), in eval mode; ``error`` for a misfit."""
    try:
        qmodel = quantized_model_from(config_from(header["config"], error, source), header["spec"])
    except (KeyError, TypeError, ValueError) as err:
        if isinstance(err, ModelFileError):
            raise
        raise error(f"{source}: the stored config or quantization spec is invalid ({err!r})") from err
    codes = {e["name"] for e in header["tensors"] if e["kind"] in ("codes", "sparse_codes")}
    for name in codes:
        scale = tensors.get(name[: -len("weight")] + "weight_scale")
        if scale is None:
            raise error(f"{source}: {name} has codes but no weight_scale")
        tensors[name] = dequantize_weight(tensors[name], scale)
    load_state_into(qmodel, tensors, error, source)
    for layer in quant_layers(qmodel).values():
        layer.input_quant.calibrated = layer.input_quant.bits is not None
    return qmodel.eval()


def decode(data: bytes, source: str = "packed file") -> nn.Module:
    """The fake-quantized model of a ``.packed`` file's bytes, in eval mode (an ``nn.Module`` that
    takes [0, 1] images); weights are ``scale * code``, exactly what the saved model computed with.

    Raises ``PackedFileError`` (a ``ModelFileError``) on truncated or corrupt bytes.
    """
    header, payload = read_packed_bytes(data, source)
    try:
        entries = header["tensors"]
        counts = table_numels(entries, PackedFileError, source)
        tensors = {e["name"]: _tensor(e, payload, n) for e, n in zip(entries, counts)}
        return decode_model(header, tensors, PackedFileError, source)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
        if isinstance(err, ModelFileError):
            raise
        raise PackedFileError(f"{source} has an invalid tensor table ({err!r})") from err


def read_header(path: str | os.PathLike) -> dict:
    """The JSON header of a packed file (config, spec, tensor table, meta)."""
    return read_packed_bytes(read_model_file(path, PackedFileError), source=str(path))[0]
