"""The ``.pt`` format: config + state_dict, loadable with plain ``torch.load(weights_only=True)``.

A checkpoint is a plain dict ``{"format", "config", "state_dict", "meta", "sha256"}``: no pickled
classes, so it opens safely anywhere, and the config rebuilds the model at its (possibly pruned)
shape. ``sha256`` is the ``content_digest`` of everything else: torch checks no checksum when it
loads a zip, so without it a flipped byte would load as silently changed weights. The bytes are
written through an in-memory buffer, so the same model and meta always give the same file.
Write and read it with ``helpers.save``/``helpers.load``; ``read_meta`` gives the saved meta.
"""
from __future__ import annotations

import os

from torch import nn

from ..inputs import check_finite
from ..models import FashionCNN
from .framing import ModelFileError, content_digest, read_model_file, torch_bytes, torch_payload
from .rebuild import load_state_into, model_from_config

FORMAT = "compression-course/cnn-v2"
SUFFIX = ".pt"


class CheckpointError(ModelFileError):
    """A checkpoint is corrupt, of another format, or of another shape."""


def state_of(model: nn.Module) -> dict:
    """The model's state_dict on the CPU, with finite values and no pruning masks left unfolded."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    leftover = [k for k in state if k.endswith(("_orig", "_mask"))]
    if leftover:
        raise ValueError(f"fold the pruning masks in before saving (found {leftover[:3]}); "
                         "see torch.nn.utils.prune.remove")
    check_finite(state)
    return state


def encode(model: FashionCNN, meta: dict | None = None) -> bytes:
    """The bytes of a ``.pt`` checkpoint of ``model`` (config + float state_dict + meta + sha256)."""
    if not isinstance(model, FashionCNN) or hasattr(model, "quant_spec"):
        kind = "a fake-quantized model (save it as .packed or .ccz)" if hasattr(model, "quant_spec") \
            else type(model).__name__
        raise TypeError(f"a .pt checkpoint holds a float FashionCNN, got {kind}")
    payload = {"format": FORMAT, "config": model.config.to_dict(), "state_dict": state_of(model),
               "meta": dict(meta or {})}
    return torch_bytes({**payload, "sha256": content_digest(payload)})


def read_payload(data: bytes, source: str = "checkpoint") -> dict:
    """The checked checkpoint dict of a ``.pt`` file's bytes."""
    payload = torch_payload(data, FORMAT, CheckpointError, source)
    if not isinstance(payload.get("state_dict"), dict) or not isinstance(payload.get("meta"), dict):
        raise CheckpointError(f"{source}: the checkpoint lacks its state_dict or meta")
    return payload


def decode(data: bytes, source: str = "checkpoint") -> FashionCNN:
    """The model of a ``.pt`` file's bytes, at its saved shape, in eval mode on the CPU."""
    payload = read_payload(data, source)
    model = model_from_config(payload.get("config"), CheckpointError, source)
    return load_state_into(model, payload["state_dict"], CheckpointError, source).eval()


def read_meta(path: str | os.PathLike) -> dict:
    """The ``meta`` dict saved with a ``.pt`` checkpoint (e.g. notebook 01's training history), checked."""
    return read_payload(read_model_file(path, CheckpointError), source=str(path))["meta"]
