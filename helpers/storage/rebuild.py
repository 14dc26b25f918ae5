"""Rebuilding a model from what a file stores: its config (checked to be a plausible size before a
layer is built) and its tensors (checked against the model's shapes before they are loaded)."""
from __future__ import annotations

from torch import nn

from ..models import CNNConfig, FashionCNN, build_model
from .framing import MAX_ELEMENTS, ModelFileError


def config_from(config, error: type[ModelFileError], source: str) -> CNNConfig:
    """The ``CNNConfig`` of a stored config; ``error`` when it is missing, invalid, or describes a
    model larger than a file can hold (checked arithmetically: nothing is allocated)."""
    try:
        parsed = CNNConfig.from_dict(config)
        size = parsed.parameter_count
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as err:
        raise error(f"{source}: the stored model config is invalid ({err!r})") from err
    if size > MAX_ELEMENTS or parsed.image_size > 1024 or parsed.in_channels > 64:
        raise error(f"{source}: the stored config describes a model of {size:,} parameters "
                    f"({MAX_ELEMENTS:,} at most) or {parsed.image_size}-pixel images: not built")
    return parsed


def model_from_config(config, error: type[ModelFileError], source: str) -> FashionCNN:
    """``build_model`` of a stored config, checked by ``config_from`` before any layer is allocated."""
    return build_model(config_from(config, error, source))


def load_state_into(model: nn.Module, state_dict: dict, error: type[ModelFileError], source: str) -> nn.Module:
    """``model.load_state_dict`` after comparing names and shapes; ``error`` naming the misfits."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(map(str, set(state_dict) - set(own)))
    wrong = [f"{k}: {tuple(getattr(state_dict[k], 'shape', ()))} in {source}, {tuple(own[k].shape)} in the model"
             for k in own if k in state_dict and getattr(state_dict[k], "shape", None) != own[k].shape]
    if missing or unexpected or wrong:
        raise error(
            f"{source} does not fit this model: " + "; ".join(filter(None, [
                f"shapes differ ({', '.join(wrong[:4])})" if wrong else "",
                f"missing {missing[:4]}" if missing else "",
                f"unexpected {unexpected[:4]}" if unexpected else ""])))
    try:
        model.load_state_dict(state_dict)
    except (RuntimeError, TypeError) as err:
        raise error(f"{source} does not fit this model: {err}") from err
    return model
