"""The ``.int8`` format: a real int8 model from ``quantization.int8.convert_int8`` (FX graph mode).

A file holds a plain dict (format tag, ``CNNConfig``, backend, the converted ``state_dict`` with
its quantized tensors, meta, and the SHA-256 ``content_digest`` of all that) and loads with
``torch.load(weights_only=True)``: the loader checks the digest, rebuilds the int8 graph from the
config and loads the tensors, so no code is unpickled.
"""
from __future__ import annotations

import copy

import torch

from ..inputs import check_finite
from ..quantization.int8 import BACKENDS, int8_graph, quiet
from .framing import ModelFileError, content_digest, torch_bytes, torch_payload
from .rebuild import model_from_config

FORMAT = "compression-course/int8-fx-v2"
SUFFIX = ".int8"


class Int8FileError(ModelFileError):
    """An ``.int8`` file is corrupt, of another format, or does not fit its int8 graph."""


def encode(converted: torch.fx.GraphModule, meta: dict | None = None) -> bytes:
    """The bytes of an ``.int8`` file of a model from ``convert_int8``."""
    if not hasattr(converted, "config") or not hasattr(converted, "backend"):
        raise ValueError("an .int8 file holds a model returned by convert_int8")
    state = converted.state_dict()
    check_finite(state)
    payload = {"format": FORMAT, "config": converted.config.to_dict(), "backend": converted.backend,
               "state_dict": state, "meta": dict(meta or {})}
    with quiet():
        return torch_bytes({**payload, "sha256": content_digest(payload)})


def decode(data: bytes, source: str = "int8 file") -> torch.fx.GraphModule:
    """Rebuild the int8 model of an ``.int8`` file's bytes (``weights_only`` loading; clear errors)."""
    with quiet():
        payload = torch_payload(data, FORMAT, Int8FileError, source)
    config = model_from_config(payload.get("config"), Int8FileError, source).config
    backend = payload.get("backend")
    if backend not in BACKENDS or not isinstance(payload.get("state_dict"), dict):
        raise Int8FileError(f"{source}: unknown backend {backend!r} or no state_dict")
    converted = copy.deepcopy(int8_graph(config, backend))
    try:
        converted.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise Int8FileError(f"{source} does not fit the int8 graph of its config: {err}") from err
    converted.config, converted.backend = config, backend
    return converted.eval()
