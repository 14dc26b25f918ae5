"""What every model file format shares: the error family, the size limits every loader checks
before it allocates, reading/writing the bytes, a content digest, bounded JSON, the framing of the
course's own binary formats (``.sparse``, ``.packed``, ``.ccz``)::

    <prefix with the header length> <JSON header> <payload length: u64> <payload> <CRC-32 of all before: u32>

and the ``torch.save`` zips of the ``.pt`` and ``.int8`` files, which carry a SHA-256
``content_digest`` of their content, since torch checks no checksum when it loads a zip.

A file is untrusted input: nothing is allocated on the strength of a size a file claims before
that size is checked against the limits below (the course's largest file is 5.5 MB with 1.4M
values; the limits leave room for models ten times wider).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from ..io_utils import atomic_path

PAYLOAD_LENGTH, CHECKSUM = struct.Struct("<Q"), struct.Struct("<I")
MAX_FILE_BYTES = 256 << 20       # no model file of this course comes near: refused before reading
MAX_HEADER_BYTES = 4 << 20       # a JSON header or meta of more is not a course file
MAX_NESTING = 64                 # JSON / meta nesting; the course's files nest 4 deep
MAX_ELEMENTS = 64_000_000        # tensor values in one file (256 MB as float32)


class ModelFileError(ValueError):
    """A model file is corrupt, truncated, of another format, or does not fit its model.

    Each format's error subclasses it; a missing file is a ``FileNotFoundError`` instead."""


# --------------------------------------------------------------------------- bytes on disk
def read_model_file(path: str | os.PathLike, error: type[ModelFileError] = ModelFileError,
                    max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of ``path``: ``FileNotFoundError`` naming it when there is no such file, ``error``
    when it is larger than any model file of the course (checked before a byte is read)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    size = path.stat().st_size
    if size > max_bytes:
        raise error(f"{path} is {size:,} bytes, more than any model file of this course "
                    f"({max_bytes:,} at most): not read")
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


def check_elements(count: int, error: type[ModelFileError], source: str, what: str = "its tensors") -> int:
    """``count`` when it is a plausible number of values for ``what``; ``error`` before any allocation."""
    if not isinstance(count, (int, np.integer)) or count < 0 or count > MAX_ELEMENTS:
        raise error(f"{source} claims {count:,} values for {what}, more than a course model holds "
                    f"({MAX_ELEMENTS:,} at most): not allocated")
    return int(count)


def numel_of(shape, error: type[ModelFileError], source: str, name: str) -> int:
    """The element count of a stored ``shape`` (a list of non-negative ints), bounded by ``MAX_ELEMENTS``."""
    if not isinstance(shape, list) or not all(type(d) is int and 0 <= d <= MAX_ELEMENTS for d in shape):
        raise error(f"{source}: tensor {name!r} has an invalid shape {shape!r}")
    count = 1
    for d in shape:
        count = check_elements(count * d, error, source, f"tensor {name!r}")
    return count


def table_numels(entries, error: type[ModelFileError], source: str) -> list[int]:
    """The element count of each entry of a stored tensor table (a list of dicts with ``name`` and
    ``shape``), each and their sum bounded by ``MAX_ELEMENTS`` before anything is allocated."""
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise error(f"{source} has no valid tensor table in its header")
    counts = [numel_of(e.get("shape"), error, source, e.get("name")) for e in entries]
    check_elements(sum(counts), error, source)
    return counts


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


# --------------------------------------------------------------------------- bounded JSON
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


def json_depth(raw: bytes) -> int:
    """How deeply ``raw`` (JSON text) nests arrays and objects, counted without recursion."""
    brackets = np.frombuffer(_JSON_STRING.sub(b'""', raw), dtype=np.uint8)
    steps = np.isin(brackets, (ord("["), ord("{"))).astype(np.int64) - np.isin(brackets, (ord("]"), ord("}")))
    return int(np.cumsum(steps).max(initial=0))


def parse_json(raw: bytes, error: type[ModelFileError], source: str) -> object:
    """``json.loads(raw)`` for a header of bounded size and nesting (no RecursionError reachable)."""
    if len(raw) > MAX_HEADER_BYTES:
        raise error(f"{source} has a {len(raw):,}-byte header ({MAX_HEADER_BYTES:,} at most): not read")
    if json_depth(raw) > MAX_NESTING:
        raise error(f"{source} has a header nested more than {MAX_NESTING} levels deep: not read")
    try:
        return json.loads(raw.decode())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise error(f"{source} is corrupt: unreadable header ({err})") from err


def json_header(raw: bytes, fmt: str, error: type[ModelFileError], source: str) -> dict:
    """The JSON header ``raw`` of a file of format ``fmt``; ``error`` when unreadable or of another format."""
    header = parse_json(raw, error, source)
    if not isinstance(header, dict) or header.get("format") != fmt:
        raise error(f"{source} is not a {fmt} file")
    return header


def json_bytes(header: dict) -> bytes:
    """``header`` as compact JSON with sorted keys: the same content gives the same bytes."""
    return json.dumps(header, separators=(",", ":"), sort_keys=True).encode()


# --------------------------------------------------------------------------- the binary framing
def frame(prefix_and_header: bytes, payload: bytes) -> bytes:
    """``prefix_and_header`` + payload length + payload + CRC-32 of everything before it."""
    body = prefix_and_header + PAYLOAD_LENGTH.pack(len(payload)) + payload
    return body + CHECKSUM.pack(zlib.crc32(body))


def checked_payload(data: bytes, header_end: int, error: type[ModelFileError], source: str) -> bytes:
    """The payload after the header ending at ``header_end``: its announced length and the checksum
    checked, ``error`` (with ``source`` in its message) raised for a truncated, padded or corrupt file."""
    if len(data) < header_end + PAYLOAD_LENGTH.size + CHECKSUM.size:
        raise error(f"{source} is truncated: {len(data):,} bytes, but its header alone "
                    f"announces {header_end:,}")
    (length,) = PAYLOAD_LENGTH.unpack_from(data, header_end)
    end = header_end + PAYLOAD_LENGTH.size + length
    if len(data) != end + CHECKSUM.size:
        raise error(f"{source} is truncated or has trailing bytes ({len(data)} bytes, "
                    f"the header announces {end + CHECKSUM.size})")
    if zlib.crc32(data[:end]) != CHECKSUM.unpack_from(data, end)[0]:
        raise error(f"{source} is corrupt (checksum mismatch)")
    return data[header_end + PAYLOAD_LENGTH.size:end]


# --------------------------------------------------------------------------- torch.save zips
def torch_bytes(payload: dict) -> bytes:
    """``torch.save(payload)`` into memory: the zip's records are named ``archive/``, not after a
    temporary file, so equal payloads give equal bytes."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def _check_tree(payload, error: type[ModelFileError], source: str) -> None:
    """Walk ``payload`` without recursion: bounded nesting, and every tensor a plain one that owns
    its bytes (no view that claims more values than its storage holds), within ``MAX_ELEMENTS``."""
    total, stack = 0, [(payload, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_NESTING:
            raise error(f"{source} nests its content more than {MAX_NESTING} levels deep: not read")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend((v, depth + 1) for v in value)
        elif isinstance(value, torch.Tensor):
            total = check_elements(total + value.numel(), error, source)
            if not value.is_quantized and (not value.is_contiguous() or value.untyped_storage().nbytes()
                                           < value.numel() * value.element_size()):
                raise error(f"{source} holds a tensor of shape {tuple(value.shape)} that its "
                            f"{value.untyped_storage().nbytes()} stored bytes do not fill: not read")


def _load_failure(err: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` failed, without torch's advice to retry with
    ``weights_only`` off: for a file that needs it, that advice would run the file's code."""
    text = str(err)
    refused = re.search(r"(?:unsupported|Unsupported global:) GLOBAL [\w.]+|Unsupported operand \d+", text)
    if refused or "Weights only load failed" in text:
        what = refused.group(0) if refused else "objects other than tensors, numbers, strings and containers"
        return f"it holds pickled code or classes, refused without running them ({what})"
    return f"corrupt or truncated ({type(err).__name__}: {text.split('. ')[0][:200]})"


def torch_payload(data: bytes, fmt: str | tuple[str, ...], error: type[ModelFileError], source: str) -> dict:
    """The dict ``torch_bytes`` wrote, loaded with ``weights_only=True`` (no code is unpickled), its
    shape checked before the content is touched, then its format (``fmt``, or one of them) and digest."""
    formats = (fmt,) if isinstance(fmt, str) else tuple(fmt)
    named = " or ".join(formats)
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, random bytes, pickled code or classes, bad storages ...
        raise error(f"{source} is not a readable {named} file: {_load_failure(err)}") from None
    if not isinstance(payload, dict) or payload.get("format") not in formats:
        raise error(f"{source} is not a {named} file")
    _check_tree(payload, error, source)
    stored = payload.pop("sha256", None)
    if stored != content_digest(payload):
        raise error(f"{source} is corrupt: its content does not match its sha256 digest "
                    "(a changed or damaged file; save it again from the model)")
    return payload
