"""The framing both of the project's own file formats share (``.packed`` and ``.ccz``):

    <prefix with the header length> <JSON header> <payload length: u64> <payload> <CRC-32 of all before: u32>

The prefix (magic bytes, version) belongs to each format; this module writes and checks the rest.
"""
from __future__ import annotations

import json
import struct
import zlib

PAYLOAD_LENGTH, CHECKSUM = struct.Struct("<Q"), struct.Struct("<I")


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
