"""The ``.pt`` format: config + state_dict, loadable with plain ``torch.load(weights_only=True)``.

A checkpoint is a plain dict ``{"format", "config", "state_dict", "meta", "sha256"}``: no pickled
classes, so it opens safely anywhere, and the config rebuilds the model at its (possibly pruned)
shape. ``sha256`` is the ``content_digest`` of everything else: torch checks no checksum when it
loads a zip, so without it a flipped byte would load as silently changed weights. The bytes are
written through an in-memory buffer, so the same model and meta always give the same file.
Open any model file with ``helpers.load(path)``; ``save_model``/``load_model`` are this format's.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import torch
from torch import nn

from .models import FashionCNN, build_model
from .inputs import check_finite
from .storage.framing import (ModelFileError, content_digest, read_model_file,
                              write_model_file)

FORMAT = "compression-course/cnn-v2"
LEGACY_FORMAT = "compression-course/cnn-v1"  # before the digest: read, never written
SUFFIX = ".pt"


class CheckpointError(ModelFileError):
    """A checkpoint is corrupt, of another format, or of another shape."""


def torch_bytes(payload: dict) -> bytes:
    """``torch.save(payload)`` into memory: the zip's records are named ``archive/``, not after a
    temporary file, so equal payloads give equal bytes."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def torch_payload(data: bytes, fmt: str, legacy_fmt: str, error: type[ModelFileError], source: str) -> dict:
    """The dict ``torch_bytes`` wrote, loaded with ``weights_only=True``, its format and digest checked."""
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, random bytes, pickled classes ...
        raise error(f"{source} is not a readable {fmt} file (corrupt or truncated?): {err}") from err
    if not isinstance(payload, dict) or payload.get("format") not in (fmt, legacy_fmt):
        raise error(f"{source} is not a {fmt} file")
    stored = payload.pop("sha256", None)
    if stored is not None or payload["format"] == fmt:
        if stored != content_digest(payload):
            raise error(f"{source} is corrupt: its content does not match its sha256 digest "
                        "(a changed or damaged file; save it again from the model)")
    return payload


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
    if not isinstance(model, FashionCNN):
        raise TypeError(f"a .pt checkpoint holds a float FashionCNN, got {type(model).__name__}")
    payload = {"format": FORMAT, "config": model.config.to_dict(), "state_dict": state_of(model),
               "meta": dict(meta or {})}
    return torch_bytes({**payload, "sha256": content_digest(payload)})


def read_payload(data: bytes, source: str = "checkpoint") -> dict:
    """The checked checkpoint dict of a ``.pt`` file's bytes."""
    payload = torch_payload(data, FORMAT, LEGACY_FORMAT, CheckpointError, source)
    if not isinstance(payload.get("state_dict"), dict) or not isinstance(payload.get("meta"), dict):
        raise CheckpointError(f"{source}: the checkpoint lacks its state_dict or meta")
    return payload


def model_from_config(config, error: type[ModelFileError], source: str) -> FashionCNN:
    """``build_model(config)``, with ``error`` for a stored config that is missing or invalid."""
    try:
        return build_model(config)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise error(f"{source}: the stored model config is invalid ({err!r})") from err


def decode(data: bytes, source: str = "checkpoint") -> FashionCNN:
    """The model of a ``.pt`` file's bytes, at its saved shape, in eval mode on the CPU."""
    payload = read_payload(data, source)
    model = model_from_config(payload.get("config"), CheckpointError, source)
    return load_state_into(model, payload["state_dict"], source=source).eval()


def load_state_into(model: nn.Module, state_dict: dict, source: str = "checkpoint") -> nn.Module:
    """``model.load_state_dict`` with an error that names the mismatching shapes."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    wrong = [f"{k}: {tuple(getattr(state_dict[k], 'shape', ()))} in {source}, {tuple(own[k].shape)} in the model"
             for k in own if k in state_dict and getattr(state_dict[k], "shape", None) != own[k].shape]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{source} does not fit this model: " + "; ".join(filter(None, [
                f"shapes differ ({', '.join(wrong[:4])})" if wrong else "",
                f"missing {missing[:4]}" if missing else "",
                f"unexpected {unexpected[:4]}" if unexpected else ""])))
    model.load_state_dict(state_dict)
    return model


def save_model(model: FashionCNN, path: str | os.PathLike, meta: dict | None = None) -> Path:
    """Write ``model`` as a ``.pt`` checkpoint atomically; returns the path (as ``helpers.save``)."""
    return write_model_file(path, encode(model, meta), SUFFIX)


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> FashionCNN:
    """Rebuild the model of a ``.pt`` checkpoint at its saved shape, in eval mode."""
    return decode(read_model_file(path, "checkpoint"), source=str(path)).to(device)


def load_meta(path: str | os.PathLike) -> dict:
    """The ``meta`` dict saved with a ``.pt`` checkpoint (e.g. notebook 01's training history), checked."""
    return read_payload(read_model_file(path, "checkpoint"), source=str(path))["meta"]
