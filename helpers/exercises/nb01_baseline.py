"""Notebook 01 (baseline training): the accuracy from logits, and the input normalisation.

The ``*_reference`` functions carry no docstring: ``solution(name)`` prints their source as it is.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .. import models, training
from ..models import FASHION_MNIST_MEAN, FASHION_MNIST_STD
from .core import Hint, _call, _close, _first_diff, _images, _shape, _tensor, course_model, exercise


def normalize_reference(images: Tensor) -> Tensor:
    return (images - FASHION_MNIST_MEAN) / FASHION_MNIST_STD


@exercise("accuracy_from_logits", "01", "percent of rows whose argmax over the classes is the label",
          training.accuracy_from_logits, (training.accuracy_from_logits, training.evaluate),
          hints=("logits: (N, 10) float, labels: (N,) int64; return a Python float in [0, 100]",))
def _check_accuracy(fn):
    """Small cases (ties for the max, 1 of 3 right, a single wrong row) and the course model's logits;
    a fraction, ties counted as right and a rounded percentage are named."""
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.5, 0.2, 0.9], [1.0, 0.0, 4.0]])
    ties = torch.tensor([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0], [3.0, 3.0, 3.0], [0.5, 0.1, 0.5]])
    third = torch.tensor([[0.1, 0.9, 0.0, 0.2], [0.3, 0.2, 0.8, 0.1], [0.5, 0.4, 0.3, 0.2]])
    cases = [(logits, torch.tensor([0, 2, 2, 1]), "4 rows, 3 classes"),
             (ties, torch.tensor([1, 1, 0, 0]), "4 rows whose logits tie for the max"),
             (third, torch.tensor([1, 0, 1]), "3 rows, 1 right"),
             (torch.tensor([[0.2, 0.7]]), torch.tensor([0]), "a single row, wrong")]
    model, source = course_model()
    with torch.no_grad():
        model_logits = model(_images())
    cases.append((model_logits, torch.arange(16) % 10, f"logits of {source} on 16 images"))
    for lg, lb, case in cases:
        ref = training.accuracy_from_logits(lg, lb)
        out = _call(fn, lg, lb, case=case)
        try:
            value = float(_tensor(out).reshape(()).item())
        except Exception:
            raise Hint(f"return one number (the accuracy in percent), got {out!r} on {case}") from None
        if math.isclose(value, ref, abs_tol=1e-4):
            continue
        if math.isclose(value, ref / 100, abs_tol=1e-6) and ref:
            raise Hint(f"return a percentage in [0, 100]: expected {ref:.2f}, got the fraction {value:.4f} on {case}")
        if value == int(value) and abs(value - ref) < 1:
            raise Hint(f"expected {ref:.4f}%, got the whole number {value:g}: divide exactly, 100 · correct / N "
                       f"(not // nor round) on {case}")
        tied = (lg.gather(1, lb[:, None]).squeeze(1) == lg.amax(1)) & (lg.argmax(1) != lb)
        last = lg.shape[1] - 1 - lg.flip(1).argmax(1)  # argmax taking the last of tied classes
        if tied.any() and any(math.isclose(value, 100 * float(right.double().mean()), abs_tol=1e-4)
                              for right in (tied | (lg.argmax(1) == lb), last == lb)):
            r = int(tied.nonzero()[0])
            classes = lg[r].eq(lg[r].max()).nonzero().flatten().tolist()
            raise Hint(f"expected {ref:.2f}%, got {value:.4g} on {case}: row {r}'s logits tie for the max at classes "
                       f"{classes}; argmax takes the FIRST (class {classes[0]}), so label {int(lb[r])} counts as wrong")
        raise Hint(f"expected {ref:.2f}% (rows whose argmax over the classes, dim 1, equals the label), "
                   f"got {value:.4g} on {case}")
    return f"matches on small cases (ties for the max, 1 of 3 right, one wrong row) and on {source}"


@exercise("normalize", "01", "(x - 0.2860) / 0.3530: what the model does first to every image",
          normalize_reference, (models.Normalize,),
          hints=("images: (N, 1, 28, 28) in [0, 1]; mean 0.2860 and std 0.3530 of Fashion-MNIST",))
def _check_normalize(fn):
    """A 2x2 image (mean only, the inverse, swapped constants, batch statistics named), then the
    course model's normalize layer on 16 images."""
    x = torch.tensor([[[[0.0, 0.2860], [1.0, 0.5]]]])
    out = _tensor(_call(fn, x, case="a 2x2 image"))
    _shape(out, x.shape, why=" (the image's shape)")
    ref = normalize_reference(x)
    if not _close(out, ref, atol=1e-4):
        if _close(out, x - FASHION_MNIST_MEAN, atol=1e-4):
            raise Hint("you subtracted the mean; also divide by the std 0.3530")
        if _close(out, x * FASHION_MNIST_STD + FASHION_MNIST_MEAN, atol=1e-4):
            raise Hint("that is the inverse (x·std + mean); normalising is (x - mean) / std")
        if _close(out, (x - FASHION_MNIST_STD) / FASHION_MNIST_MEAN, atol=1e-4):
            raise Hint("mean and std are swapped: subtract the mean 0.2860, divide by the std 0.3530")
        if _close(out, (x - x.mean()) / x.std(), atol=1e-4) or _close(out, (x - x.mean()) / x.std(unbiased=False)):
            raise Hint("you used the batch's own mean and std; use Fashion-MNIST's fixed 0.2860 and 0.3530, the "
                       "same for every batch (as the model's first layer does)")
        raise Hint(f"pixel 1.0 must become (1 - 0.2860) / 0.3530 = {ref[0, 0, 1, 0]:.4f}, got {out[0, 0, 1, 0]:.4f}")
    model, source = course_model()
    x = _images()
    out = _tensor(_call(fn, x, case="16 images"))
    with torch.no_grad():
        if not _close(out, model.normalize(x), atol=1e-5):
            raise Hint(f"differs from {source}'s normalize layer: {_first_diff(out, model.normalize(x), atol=1e-5)}")
    return f"matches the normalize layer of {source}"
