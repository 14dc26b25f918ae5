"""One front door for saved models: ``save(model, path)`` and ``load(path)`` pick the format by suffix.

=========  ============================================  ==================================
suffix     holds                                          format module
=========  ============================================  ==================================
``.pt``     a float ``FashionCNN`` (any shape)             ``storage.checkpoint``
``.sparse`` a pruned float model, zeros not stored         ``storage.sparse``
``.packed`` a fake-quantized model, weights bit-packed     ``storage.packed``
``.ccz``    a pruned + quantized model, entropy coded      ``storage.compressed``
``.int8``   a real int8 model (PT2E program or FX graph)   ``storage.int8``
=========  ============================================  ==================================

Every format detects corruption (a CRC-32 or a SHA-256 over the content), checks every size a file
claims before allocating it, and raises a subclass of ``ModelFileError`` (a ValueError) naming the
file for a corrupt, truncated, crafted or foreign file; a missing path is a ``FileNotFoundError``.
The same model and meta always give the same bytes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from . import checkpoint, compressed, int8, packed, sparse
from .framing import ModelFileError, read_model_file, write_model_file


@dataclass(frozen=True)
class ModelFormat:
    """A file format: its suffix, what it holds, its error, and its bytes <-> model codec."""

    suffix: str
    holds: str
    error: type[ModelFileError]
    encode: Callable[..., bytes]
    decode: Callable[[bytes, str], nn.Module]
    cpu_only: bool = False


FORMATS = {f.suffix: f for f in (
    ModelFormat(".pt", "a float FashionCNN", checkpoint.CheckpointError, checkpoint.encode, checkpoint.decode),
    ModelFormat(".sparse", "a pruned float model, zeros not stored", sparse.SparseFormatError,
                sparse.encode, sparse.decode),
    ModelFormat(".packed", "a fake-quantized model, weights bit-packed", packed.PackedFileError,
                packed.encode, packed.decode),
    ModelFormat(".ccz", "a pruned + quantized model, entropy coded", compressed.CompressedFileError,
                compressed.encode, compressed.decode),
    ModelFormat(".int8", "a real int8 model (PT2E program or FX graph)", int8.Int8FileError, int8.encode, int8.decode,
                cpu_only=True),
)}


def format_of(path: str | os.PathLike) -> ModelFormat:
    """The format of files with ``path``'s suffix; ``ModelFileError`` for other suffixes."""
    suffix = Path(path).suffix
    if suffix not in FORMATS:
        raise ModelFileError(f"{Path(path).name!r}: unknown model file suffix {suffix!r}; "
                             f"known suffixes: {', '.join(FORMATS)}")
    return FORMATS[suffix]


def save(model: nn.Module, path: str | os.PathLike, meta: dict | None = None, **options) -> Path:
    """Write ``model`` (and the JSON-able ``meta``) to ``path`` atomically, in the format of its
    suffix; returns the path. ``options`` go to the format (``.sparse``: ``value_dtype``).
    Refuses NaN/inf weights and models the format cannot hold."""
    fmt = format_of(path)
    return write_model_file(path, fmt.encode(model, meta, **options), fmt.suffix)


def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """The model saved at ``path`` (in eval mode, on ``device``), in the format of its suffix.

    ``.int8`` models run on the CPU only. Raises FileNotFoundError for a missing path and a
    ``ModelFileError`` subclass for a corrupt, truncated, crafted or foreign file.
    """
    fmt = format_of(path)
    model = fmt.decode(read_model_file(path, fmt.error), str(path))
    if torch.device(device).type != "cpu":
        if fmt.cpu_only:
            raise ValueError(f"{path}: an {fmt.suffix} model runs on the CPU only, not on {device}")
        model = model.to(device)
    return model
