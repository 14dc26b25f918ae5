"""Real int8 inference on the CPU with ``torch.ao.quantization`` FX graph mode (x86 backend).

``convert_int8`` traces the float ``FashionCNN``, fuses conv + BatchNorm + ReLU, inserts observers
(``get_default_qconfig_mapping("x86")``: per-channel symmetric int8 weights, per-tensor uint8
activations with a histogram observer), runs calibration images (training data, never test)
through it and converts it into a ``GraphModule`` of quantized kernels (fbgemm/oneDNN): the
integer arithmetic really happens, so it is smaller and faster than the float model.

Saved files take the suffix ``.int8`` (``weights/06_int8_x86.int8``); ``helpers.save``/``helpers.load``
(or ``save_int8``/``load_int8``) write and read them. They hold a plain dict (format tag,
``CNNConfig``, backend, the converted ``state_dict`` with its quantized tensors, meta, and the
SHA-256 ``content_digest`` of all that) and load with ``torch.load(weights_only=True)``: the loader
checks the digest, rebuilds the graph from the config and loads the tensors, so no code is unpickled.
"""
from __future__ import annotations

import copy
import functools
import os
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from ..checkpoints import model_from_config, torch_bytes, torch_payload
from ..inputs import check_finite, image_batches
from ..models import FashionCNN, build_model
from ..storage.framing import ModelFileError, content_digest, read_model_file, write_model_file

FORMAT = "compression-course/int8-fx-v2"
LEGACY_FORMAT = "compression-course/int8-fx-v1"  # before the digest: read, never written
SUFFIX = ".int8"
BACKENDS = ("x86", "fbgemm", "qnnpack", "onednn")


@contextmanager
def _quiet():
    """torch.ao.quantization warns that it is being migrated to torchao: not news in a notebook."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        yield


def _prepare(model: FashionCNN, backend: str, qat: bool = False):
    """A copy of ``model`` with observers (``qat``: fake-quantize modules, in training mode) for ``backend``."""
    from torch.ao.quantization import get_default_qat_qconfig_mapping, get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_fx, prepare_qat_fx

    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend not in torch.backends.quantized.supported_engines:
        raise ValueError(f"this PyTorch build has no {backend!r} quantized engine "
                         f"(it has {torch.backends.quantized.supported_engines})")
    torch.backends.quantized.engine = backend
    example = (torch.rand(2, model.config.in_channels, model.config.image_size, model.config.image_size),)
    if qat:
        return prepare_qat_fx(copy.deepcopy(model).cpu().train(), get_default_qat_qconfig_mapping(backend), example)
    return prepare_fx(copy.deepcopy(model).cpu().eval(), get_default_qconfig_mapping(backend), example)


@torch.no_grad()
def convert_int8(model: FashionCNN, calibration_data, backend: str = "x86") -> torch.fx.GraphModule:
    """An int8 ``GraphModule`` of ``model`` calibrated on ``calibration_data`` (a tensor or batches).

    Raises ValueError when the calibration data holds no image, or the backend is unknown.
    """
    from torch.ao.quantization.quantize_fx import convert_fx

    if not isinstance(model, FashionCNN):
        raise TypeError(f"convert_int8 expects a float FashionCNN, got {type(model).__name__}")
    check_finite(model.state_dict())
    with _quiet():
        prepared = _prepare(model, backend)
        for images in image_batches(calibration_data):
            prepared(images.cpu())
        converted = convert_fx(prepared)
    converted.config, converted.backend = model.config, backend
    return converted.eval()


def qat_int8(model: FashionCNN, train_batches, calibration_data, epochs: int = 1, lr: float = 1e-4,
             backend: str = "x86", **fit_kwargs) -> torch.fx.GraphModule:
    """Quantization-aware int8: like ``convert_int8``, but the int8 model is first trained ``epochs``
    with its rounding in the loop (``prepare_qat_fx``: fake-quantized int8 weights and activations,
    BatchNorm folded while training) by ``training.fit`` on ``train_batches`` (``teacher=`` distils).

    Observers start from ``calibration_data``; the result is the same kind of graph as
    ``convert_int8``'s, so it is saved and loaded as an ``.int8`` file alike. Runs on the CPU.
    """
    from torch.ao.quantization.quantize_fx import convert_fx

    from ..training import fit

    if not isinstance(model, FashionCNN):
        raise TypeError(f"qat_int8 expects a float FashionCNN, got {type(model).__name__}")
    check_finite(model.state_dict())
    with _quiet():
        prepared = _prepare(model, backend, qat=True)
        with torch.no_grad():
            prepared.eval()  # observers see the calibration images; BatchNorm keeps its statistics
            for images in image_batches(calibration_data):
                prepared(images.cpu())
        fit(prepared, train_batches, epochs=epochs, lr=lr, device="cpu", desc=fit_kwargs.pop("desc", "int8 QAT"),
            **fit_kwargs)
        converted = convert_fx(prepared.cpu().eval())
    converted.config, converted.backend = model.config, backend
    return converted.eval()


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
    with _quiet():
        return torch_bytes({**payload, "sha256": content_digest(payload)})


@functools.lru_cache(maxsize=8)
def _int8_graph(config, backend: str) -> torch.fx.GraphModule:
    """An int8 graph of a model of ``config`` with placeholder qparams (a file's tensors replace
    them); cached, since tracing and converting takes far longer than loading the tensors."""
    from torch.ao.quantization.quantize_fx import convert_fx

    with _quiet(), torch.no_grad():
        prepared = _prepare(build_model(config), backend)
        prepared(torch.rand(2, config.in_channels, config.image_size, config.image_size))
        return convert_fx(prepared)


def decode(data: bytes, source: str = "int8 file") -> torch.fx.GraphModule:
    """Rebuild the int8 model of an ``.int8`` file's bytes (``weights_only`` loading; clear errors)."""
    with _quiet():
        payload = torch_payload(data, FORMAT, LEGACY_FORMAT, Int8FileError, source)
    config = model_from_config(payload.get("config"), Int8FileError, source).config
    backend = payload.get("backend")
    if backend not in BACKENDS or not isinstance(payload.get("state_dict"), dict):
        raise Int8FileError(f"{source}: unknown backend {backend!r} or no state_dict")
    converted = copy.deepcopy(_int8_graph(config, backend))
    try:
        converted.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise Int8FileError(f"{source} does not fit the int8 graph of its config: {err}") from err
    converted.config, converted.backend = config, backend
    return converted.eval()


def save_int8(converted: torch.fx.GraphModule, path: str | os.PathLike, meta: dict | None = None) -> Path:
    """Write an int8 model (from ``convert_int8``) as an ``.int8`` file atomically (as ``helpers.save``)."""
    return write_model_file(path, encode(converted, meta), SUFFIX)


def load_int8(path: str | os.PathLike) -> torch.fx.GraphModule:
    """Rebuild the int8 model of an ``.int8`` file (as ``helpers.load``)."""
    return decode(read_model_file(path, "int8 model"), source=str(path))
