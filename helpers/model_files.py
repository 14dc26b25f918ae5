"""One front door for saved models: ``save(model, path)`` and ``load(path)`` pick the format by suffix.

=========  ============================================  ==================================
suffix     holds                                          codec
=========  ============================================  ==================================
``.pt``     a float ``FashionCNN`` (any shape)             ``helpers.checkpoints``
``.sparse`` a pruned float model, zeros not stored         ``helpers.storage.sparse``
``.packed`` a fake-quantized model, weights bit-packed     ``helpers.storage.packed``
``.ccz``    a pruned + quantized model, entropy coded      ``helpers.storage.compressed``
``.int8``   a real int8 model from ``convert_int8``         ``helpers.quantization.int8``
=========  ============================================  ==================================

Every format detects corruption (a CRC-32 or a SHA-256 over the content) and raises a subclass of
``ModelFileError`` (a ValueError) for a corrupt, truncated or foreign file; a missing path is a
``FileNotFoundError``. The same model and meta always give the same bytes.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path

import torch
from torch import nn

from .storage.framing import ModelFileError, read_model_file, write_model_file

CODECS = {".pt": "helpers.checkpoints", ".sparse": "helpers.storage.sparse",
          ".packed": "helpers.storage.packed", ".ccz": "helpers.storage.compressed",
          ".int8": "helpers.quantization.int8"}


def codec_of(path: str | os.PathLike):
    """The module that encodes and decodes files with ``path``'s suffix; ModelFileError for others."""
    suffix = Path(path).suffix
    if suffix not in CODECS:
        raise ModelFileError(f"{Path(path).name!r}: unknown model file suffix {suffix!r}; "
                             f"known suffixes: {', '.join(CODECS)}")
    return importlib.import_module(CODECS[suffix])


def save(model: nn.Module, path: str | os.PathLike, meta: dict | None = None) -> Path:
    """Write ``model`` (and the JSON-able ``meta``) to ``path`` atomically, in the format of its
    suffix; returns the path. Refuses NaN/inf weights and models the format cannot hold."""
    codec = codec_of(path)
    return write_model_file(path, codec.encode(model, meta), codec.SUFFIX)


def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """The model saved at ``path`` (in eval mode, on ``device``), in the format of its suffix.

    ``.int8`` models run on the CPU only. Raises FileNotFoundError for a missing path and a
    ``ModelFileError`` subclass for a corrupt, truncated or foreign file.
    """
    codec = codec_of(path)
    model = codec.decode(read_model_file(path), source=str(path))
    if torch.device(device).type != "cpu":
        if Path(path).suffix == ".int8":
            raise ValueError(f"{path}: an int8 model runs on the CPU only, not on {device}")
        model = model.to(device)
    return model
