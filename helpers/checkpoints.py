"""Save and load models as config + state_dict, loadable with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict ``{"format", "config", "state_dict", "meta"}``: no pickled classes, so
it opens safely anywhere, and the config rebuilds the model at its (possibly pruned) shape.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from .io_utils import atomic_path
from .models import FashionCNN, build_model

FORMAT = "compression-course/cnn-v1"


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, of another format, or of another shape."""


def save_model(model: FashionCNN, path: str | os.PathLike, meta: dict | None = None) -> Path:
    """Write ``model`` (config + float state_dict) to ``path`` atomically; returns the path.

    Pruning masks must be folded in first: a ``weight_orig``/``weight_mask`` pair would double the
    file and could not be rebuilt.
    """
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    leftover = [k for k in state if k.endswith(("_orig", "_mask"))]
    if leftover:
        raise CheckpointError(f"fold the pruning masks in before saving (found {leftover[:3]}); "
                              "see torch.nn.utils.prune.remove")
    payload = {"format": FORMAT, "config": model.config.to_dict(), "state_dict": state,
               "meta": dict(meta or {})}
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The checkpoint dict, loaded with ``weights_only=True``; clear errors when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, random bytes, pickled classes ...
        raise CheckpointError(f"{path} is not a readable checkpoint (corrupt or truncated?): {err}") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} checkpoint (saved by helpers.save_model)")
    return payload


def load_state_into(model: nn.Module, state_dict: dict, source: str = "checkpoint") -> nn.Module:
    """``model.load_state_dict`` with an error that names the mismatching shapes."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    wrong = [f"{k}: {tuple(state_dict[k].shape)} in {source}, {tuple(own[k].shape)} in the model"
             for k in own if k in state_dict and own[k].shape != state_dict[k].shape]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{source} does not fit this model: " + "; ".join(filter(None, [
                f"shapes differ ({', '.join(wrong[:4])})" if wrong else "",
                f"missing {missing[:4]}" if missing else "",
                f"unexpected {unexpected[:4]}" if unexpected else ""])))
    model.load_state_dict(state_dict)
    return model


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> FashionCNN:
    """Rebuild the saved model at its saved shape, in eval mode."""
    payload = read_checkpoint(path)
    model = build_model(payload["config"])
    load_state_into(model, payload["state_dict"], source=str(path))
    return model.to(device).eval()


def load_meta(path: str | os.PathLike) -> dict:
    """The ``meta`` dict saved with a checkpoint (e.g. training history, epochs)."""
    return read_checkpoint(path)["meta"]
