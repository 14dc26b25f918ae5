"""What every model file format shares: the error family, reading/writing the bytes, a content
digest, and the framing of the course's own binary formats
(``.sparse``, ``.packed``, ``.ccz``)::

    <prefix with the header length> <JSON header> <payload length: u64> <payload> <CRC-32 of all before: u32>

The prefix (magic bytes, version) belongs to each format; ``frame``/``checked_payload`` write and
check the rest. The ``.pt`` and ``.int8`` files are ``torch.save`` zips instead; they carry a
SHA-256 ``content_digest`` of their content, since torch checks no checksum when it loads a zip.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import zlib
from pathlib import Path

import torch

from ..io_utils import atomic_path

PAYLOAD_LENGTH, CHECKSUM = struct.Struct("<Q"), struct.Struct("<I")


class ModelFileError(ValueError):
    """A model file is corrupt, truncated, of another format, or does not fit its model.

    Each format's error subclasses it; a missing file is a ``FileNotFoundError`` instead."""


# --------------------------------------------------------------------------- bytes on disk
def read_model_file(path: str | os.PathLike, what: str = "model file") -> bytes:
    """The bytes of ``path``; ``FileNotFoundError`` naming it when there is no such file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {path}")
    return path.read_bytes()


def write_model_file(path: str | os.PathLike, data: bytes, suffix: str) -> Path:
    """Write ``data`` to ``path`` (which must end in ``suffix``) atomically; returns the path."""
    path = Path(path)
    if path.suffix != suffix:
        raise ValueError(f"this format takes the suffix {suffix!r}, got {path.name!r} "
                         "(helpers.save picks the format by the suffix)")
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


# --------------------------------------------------------------------------- content digest
def _feed(h, value) -> None:
    """Hash ``value`` (nested dicts, lists, tensors, numbers, strings, dtypes) unambiguously."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        if t.is_quantized:
            h.update(str(t.qscheme()).encode())
            if t.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
                _feed(h, [t.q_per_channel_scales(), t.q_per_channel_zero_points(), t.q_per_channel_axis()])
            else:
                _feed(h, [t.q_scale(), t.q_zero_point()])
            t = t.int_repr()
        data = t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        h.update(PAYLOAD_LENGTH.pack(len(data)) + data)
    elif isinstance(value, dict):
        h.update(f"D{len(value)}".encode())
        for key, item in value.items():
            _feed(h, key)
            _feed(h, item)
    elif isinstance(value, (list, tuple)):
        h.update(f"{'L' if isinstance(value, list) else 'U'}{len(value)}".encode())
        for item in value:
            _feed(h, item)
    else:  # str, int, float, bool, None, torch.dtype ...: repr is exact for each
        text = f"{type(value).__name__}:{value!r}".encode()
        h.update(PAYLOAD_LENGTH.pack(len(text)) + text)


def content_digest(content: dict) -> str:
    """SHA-256 (hex) of ``content`` (config, tensors with name, dtype, shape and bytes, meta ...)."""
    h = hashlib.sha256()
    _feed(h, content)
    return h.hexdigest()


# --------------------------------------------------------------------------- the binary framing
def frame(prefix_and_header: bytes, payload: bytes) -> bytes:
    """``prefix_and_header`` + payload length + payload + CRC-32 of everything before it."""
    body = prefix_and_header + PAYLOAD_LENGTH.pack(len(payload)) + payload
    return body + CHECKSUM.pack(zlib.crc32(body))


def checked_payload(data: bytes, header_end: int, error: type[Exception], source: str) -> bytes:
    """The payload after the header ending at ``header_end``: its announced length and the checksum
    checked, ``error`` (with ``source`` in its message) raised for a truncated, padded or corrupt file."""
    if len(data) < header_end + PAYLOAD_LENGTH.size + CHECKSUM.size:
        raise error(f"{source} is truncated")
    (length,) = PAYLOAD_LENGTH.unpack_from(data, header_end)
    end = header_end + PAYLOAD_LENGTH.size + length
    if len(data) != end + CHECKSUM.size:
        raise error(f"{source} is truncated or has trailing bytes ({len(data)} bytes, "
                    f"the header announces {end + CHECKSUM.size})")
    if zlib.crc32(data[:end]) != CHECKSUM.unpack_from(data, end)[0]:
        raise error(f"{source} is corrupt (checksum mismatch)")
    return data[header_end + PAYLOAD_LENGTH.size:end]


def json_header(raw: bytes, fmt: str, error: type[Exception], source: str) -> dict:
    """The JSON header ``raw`` of a file of format ``fmt``; ``error`` when unreadable or of another format."""
    try:
        header = json.loads(raw.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise error(f"{source} is corrupt: unreadable header ({err})") from err
    if not isinstance(header, dict) or header.get("format") != fmt:
        raise error(f"{source} is not a {fmt} file")
    return header


def json_bytes(header: dict) -> bytes:
    """``header`` as compact JSON with sorted keys: the same content gives the same bytes."""
    return json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
