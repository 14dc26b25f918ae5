"""Checks of user inputs shared by pruning, quantization and the model files: fractions, finite
tensors, and calibration images given as a tensor or as batches."""
from __future__ import annotations

import math
from typing import Iterator

import torch
from torch import Tensor


def check_fraction(value, what: str = "fraction", meaning: str = "") -> float:
    """``value`` as a float when it is a real number in [0, 1); a ValueError naming ``what`` otherwise
    (strings, booleans, NaN and infinities included). ``meaning`` says what the fraction counts."""
    hint = f" ({meaning})" if meaning else ""
    if isinstance(value, (bool, str, bytes)) or not isinstance(value, (int, float)) and not (
            isinstance(value, Tensor) and value.numel() == 1 and not value.dtype == torch.bool):
        raise ValueError(f"{what} must be a number in [0, 1){hint}, got {value!r}")
    number = float(value)
    if math.isnan(number) or not 0.0 <= number < 1.0:
        raise ValueError(f"{what} must lie in [0, 1){hint}, got {value!r}")
    return number


def check_finite(state: dict, what: str = "model") -> None:
    """A ValueError naming the tensors of ``state`` that hold NaN or infinite values."""
    bad = [f"{name} ({int((~torch.isfinite(t)).sum())} of {t.numel()})" for name, t in state.items()
           if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise ValueError(f"{what} holds NaN or infinite values in {', '.join(bad[:4])}"
                         f"{' ...' if len(bad) > 4 else ''}: training diverged or the input was "
                         "broken; such a model is refused rather than saved or calibrated")


def image_batches(data, batch_size: int = 512, what: str = "calibration") -> Iterator[Tensor]:
    """Image batches from a tensor (N x C x H x W, split into ``batch_size``) or an iterable of
    tensors or (images, labels) pairs, each checked to be finite. A ValueError when ``data`` is
    None or an empty tensor (at once), or when the batches hold no image (once they are used up)."""
    if data is None:
        raise ValueError(f"{what} needs images (a tensor N x 1 x 28 x 28 from the training split)")
    if isinstance(data, Tensor) and len(data) == 0:
        raise ValueError(f"{what} needs at least one image: the {what} data is empty")
    return _checked_batches(data.split(batch_size) if isinstance(data, Tensor) else data, what)


def _checked_batches(batches, what: str) -> Iterator[Tensor]:
    seen = 0
    for item in batches:
        images = item[0] if isinstance(item, (tuple, list)) else item
        if not isinstance(images, Tensor):
            raise ValueError(f"{what} images must be tensors, got {type(images).__name__}")
        if images.is_floating_point() and not bool(torch.isfinite(images).all()):
            raise ValueError(f"{what} images hold NaN or infinite values: check the input data")
        if len(images):
            seen += len(images)
            yield images
    if seen == 0:
        raise ValueError(f"{what} needs at least one image: the {what} data is empty")
