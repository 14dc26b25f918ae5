"""The ``.int8`` format: a real int8 model, from torchao's PT2E flow (``quantization.pt2e``) or
from ``torch.ao``'s FX graph mode (``quantization.int8.convert_int8``).

A file holds a plain dict and loads with ``torch.load(weights_only=True)``, its SHA-256
``content_digest`` checked before anything is rebuilt:

* ``int8-pt2e-v1``: format tag, ``CNNConfig``, the ``torch.export.save`` archive of the converted
  program (as a uint8 tensor), meta; loaded by ``torch.export.load`` (a serialised graph of ATen
  ops and its tensors: no Python code);
* ``int8-fx-v2``: format tag, ``CNNConfig``, backend, the converted ``state_dict`` with its quantized
  tensors, meta; the loader rebuilds the FX int8 graph from the config and loads the tensors.
"""
from __future__ import annotations

import copy

import torch

from ..inputs import check_finite
from ..quantization.int8 import BACKENDS, int8_graph, is_fx_int8, quiet
from ..quantization.pt2e import program_bytes, program_from_bytes
from .framing import ModelFileError, content_digest, torch_bytes, torch_payload
from .rebuild import config_from

FORMAT = "compression-course/int8-fx-v2"
PT2E_FORMAT = "compression-course/int8-pt2e-v1"
SUFFIX = ".int8"


class Int8FileError(ModelFileError):
    """An ``.int8`` file is corrupt, of another format, or does not fit its int8 graph."""


def encode(converted: torch.fx.GraphModule, meta: dict | None = None) -> bytes:
    """The bytes of an ``.int8`` file of a model from ``convert_int8_pt2e`` or ``convert_int8``."""
    if isinstance(converted, torch.fx.GraphModule) and hasattr(converted, "config") and not is_fx_int8(converted):
        program = torch.frombuffer(bytearray(program_bytes(converted)), dtype=torch.uint8)
        payload = {"format": PT2E_FORMAT, "config": converted.config.to_dict(), "program": program,
                   "meta": dict(meta or {})}
        return torch_bytes({**payload, "sha256": content_digest(payload)})
    if not hasattr(converted, "config") or not is_fx_int8(converted):
        raise ValueError("an .int8 file holds a model returned by convert_int8_pt2e or convert_int8")
    state = converted.state_dict()
    check_finite(state)
    payload = {"format": FORMAT, "config": converted.config.to_dict(), "backend": converted.backend,
               "state_dict": state, "meta": dict(meta or {})}
    with quiet():
        return torch_bytes({**payload, "sha256": content_digest(payload)})


def decode(data: bytes, source: str = "int8 file") -> torch.fx.GraphModule:
    """Rebuild the int8 model of an ``.int8`` file's bytes (``weights_only`` loading; clear errors)."""
    with quiet():
        payload = torch_payload(data, (PT2E_FORMAT, FORMAT), Int8FileError, source)
    config = config_from(payload.get("config"), Int8FileError, source)
    if payload["format"] == PT2E_FORMAT:
        return _pt2e_program(payload, config, source)
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


def _pt2e_program(payload: dict, config, source: str) -> torch.fx.GraphModule:
    """The runnable int8 program of a checked ``int8-pt2e`` payload; ``Int8FileError`` when the archive
    does not load or does not take the config's images."""
    program = payload.get("program")
    if not isinstance(program, torch.Tensor) or program.dtype != torch.uint8 or program.dim() != 1:
        raise Int8FileError(f"{source}: no exported program in the file")
    try:
        module = program_from_bytes(program.numpy().tobytes())
        with torch.no_grad():
            logits = module(torch.zeros(1, config.in_channels, config.image_size, config.image_size))
    except Exception as err:  # a damaged archive, a graph of other shapes ...
        raise Int8FileError(f"{source}: its exported program does not load or run "
                            f"({type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''})") from None
    if tuple(logits.shape) != (1, config.num_classes):
        raise Int8FileError(f"{source}: its program gives {tuple(logits.shape)} outputs, the config {config.num_classes}")
    module.config = config
    return module
