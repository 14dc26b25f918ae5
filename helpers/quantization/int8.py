"""Real int8 inference on the CPU with ``torch.ao.quantization`` FX graph mode (x86 backend).

``convert_int8`` traces the float ``FashionCNN``, fuses conv + BatchNorm + ReLU, inserts observers
(``get_default_qconfig_mapping("x86")``: per-channel symmetric int8 weights, per-tensor uint8
activations with a histogram observer), runs calibration images (training data, never test)
through it and converts it into a ``GraphModule`` of quantized kernels (fbgemm/oneDNN): the
integer arithmetic really happens, so it is smaller and faster than the float model.

Deprecated upstream in favour of torchao's PT2E flow (``quantization.pt2e``, the course's int8 path);
kept for notebook 06's side-by-side and for reading older ``.int8`` files (``helpers.storage.int8``).
"""
from __future__ import annotations

import copy
import functools
import warnings
from contextlib import contextmanager

import torch
from torch import nn

from ..inputs import check_finite, image_batches
from ..models import FashionCNN, build_model

BACKENDS = ("x86", "fbgemm", "qnnpack", "onednn")


@contextmanager
def quiet():
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
    with quiet():
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
    with quiet():
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


def is_fx_int8(model) -> bool:
    """Whether ``model`` is an FX int8 graph (``convert_int8``/``qat_int8``, or an FX ``.int8`` file):
    it carries its ``backend``; ``torch.compile`` of such a graph crashes the process."""
    return isinstance(model, torch.fx.GraphModule) and hasattr(model, "backend")


@functools.lru_cache(maxsize=8)
def int8_graph(config, backend: str) -> torch.fx.GraphModule:
    """An int8 graph of a model of ``config`` with placeholder qparams (a file's tensors replace
    them); cached, since tracing and converting takes far longer than loading the tensors."""
    from torch.ao.quantization.quantize_fx import convert_fx

    with quiet(), torch.no_grad():
        prepared = _prepare(build_model(config), backend)
        prepared(torch.rand(2, config.in_channels, config.image_size, config.image_size))
        return convert_fx(prepared)
