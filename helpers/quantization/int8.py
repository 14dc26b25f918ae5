"""Real int8 inference on the CPU with ``torch.ao.quantization`` FX graph mode (x86 backend).

``convert_int8`` traces the float ``FashionCNN``, fuses conv + BatchNorm + ReLU, inserts observers
(``get_default_qconfig_mapping("x86")``: per-channel symmetric int8 weights, per-tensor uint8
activations with a histogram observer), runs calibration images (training data, never test)
through it and converts it into a ``GraphModule`` of quantized kernels (fbgemm/oneDNN): the
integer arithmetic really happens, so it is smaller and faster than the float model.

Saved files (``save_int8``) are *not* ``helpers.load_model`` checkpoints; give them the suffix
``.int8`` (``weights/06_int8_x86.int8``) and open them with ``load_int8(path)``. They hold a plain
dict (format tag, ``CNNConfig``, backend, the converted ``state_dict`` with its quantized tensors)
and load with ``torch.load(weights_only=True)``: ``load_int8`` rebuilds the graph from the config
and loads the tensors, so no code is unpickled.
"""
from __future__ import annotations

import copy
import os
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from ..checkpoints import CheckpointError
from ..io_utils import atomic_path
from ..models import FashionCNN, build_model
from .fake import _as_batches

FORMAT = "compression-course/int8-fx-v1"
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


def _prepare(model: FashionCNN, backend: str):
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_fx

    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend not in torch.backends.quantized.supported_engines:
        raise ValueError(f"this PyTorch build has no {backend!r} quantized engine "
                         f"(it has {torch.backends.quantized.supported_engines})")
    torch.backends.quantized.engine = backend
    example = (torch.rand(2, model.config.in_channels, model.config.image_size, model.config.image_size),)
    return prepare_fx(copy.deepcopy(model).cpu().eval(), get_default_qconfig_mapping(backend), example)


@torch.no_grad()
def convert_int8(model: FashionCNN, calibration_data, backend: str = "x86") -> torch.fx.GraphModule:
    """An int8 ``GraphModule`` of ``model`` calibrated on ``calibration_data`` (a tensor or batches).

    Raises ValueError when the calibration data holds no image, or the backend is unknown.
    """
    from torch.ao.quantization.quantize_fx import convert_fx

    if not isinstance(model, FashionCNN):
        raise TypeError(f"convert_int8 expects a float FashionCNN, got {type(model).__name__}")
    with _quiet():
        prepared = _prepare(model, backend)
        seen = 0
        for images in _as_batches(calibration_data):
            if len(images):
                prepared(images.cpu())
                seen += len(images)
        if seen == 0:
            raise ValueError("calibration needs at least one image: the calibration data is empty")
        converted = convert_fx(prepared)
    converted.config, converted.backend = model.config, backend
    return converted.eval()


def save_int8(converted: torch.fx.GraphModule, path: str | os.PathLike, meta: dict | None = None) -> Path:
    """Write an int8 model (from ``convert_int8``) to ``path`` (suffix ``.int8``) atomically."""
    path = Path(path)
    if path.suffix != SUFFIX:
        raise ValueError(f"int8 files take the suffix {SUFFIX!r} (they are not helpers.load_model "
                         f"checkpoints), got {path.name!r}")
    if not hasattr(converted, "config"):
        raise ValueError("save_int8 expects a model returned by convert_int8")
    payload = {"format": FORMAT, "config": converted.config.to_dict(), "backend": converted.backend,
               "state_dict": converted.state_dict(), "meta": dict(meta or {})}
    with atomic_path(path) as tmp, _quiet():
        torch.save(payload, tmp)
    return path


def load_int8(path: str | os.PathLike) -> torch.fx.GraphModule:
    """Rebuild an int8 model saved by ``save_int8`` (``weights_only`` loading; clear errors)."""
    from torch.ao.quantization.quantize_fx import convert_fx

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no int8 model at {path}")
    try:
        with _quiet():
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path} is not a readable int8 model (corrupt or truncated?): {err}") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} file (saved by save_int8)")
    with _quiet(), torch.no_grad():
        prepared = _prepare(build_model(payload["config"]), payload["backend"])
        prepared(torch.rand(2, 1, 28, 28))  # observers need a range; the saved qparams replace it
        converted = convert_fx(prepared)
    try:
        converted.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path} does not fit the int8 graph of its config: {err}") from err
    converted.config, converted.backend = build_model(payload["config"]).config, payload["backend"]
    return converted.eval()
