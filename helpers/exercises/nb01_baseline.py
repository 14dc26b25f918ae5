"""Notebook 01 (baseline training): the pixel statistics, the input normalisation, the accuracy from logits.

The ``*_reference`` functions carry no docstring: ``solution(name)`` prints their source as it is.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .. import models, training
from ..models import FASHION_MNIST_MEAN, FASHION_MNIST_STD
from .core import Hint, _call, _close, _first_diff, _images, _shape, _tensor, course_model, exercise


def pixel_statistics_reference(images: Tensor) -> tuple[float, float]:
    pixels = images.double() / 255.0
    return pixels.mean().item(), pixels.std(correction=0).item()


def normalize_reference(images: Tensor) -> Tensor:
    return (images - FASHION_MNIST_MEAN) / FASHION_MNIST_STD


def _two_numbers(out, case: str) -> tuple[float, float]:
    """The learner's (mean, std) as two floats; a Hint when it is anything else."""
    try:
        mean, std = (float(_tensor(v).reshape(()).item()) for v in out)
    except Exception:
        raise Hint(f"return two numbers, (mean, std), got {type(out).__name__} {str(out)[:60]} on {case}") from None
    return mean, std


@exercise("pixel_statistics", "01", "mean and standard deviation of every pixel of a uint8 image set, in [0, 1] units",
          pixel_statistics_reference, (models.Normalize.__init__,),  # where the model keeps the two numbers,
          # not its forward: that is the answer to `normalize`, the next exercise
          hints=("images: uint8 (N, H, W), values 0..255; return (mean, std) as two Python floats",
                 "pixels scaled to [0, 1] (÷ 255); std over all N·H·W pixels, dividing by their count"))
def _check_pixel_statistics(fn):
    """Tiny uint8 sets (a 2x2 image, a single pixel, images of one grey each, all zeros) and 64 random
    images; no ÷255, ÷256, the sample std, per-image statistics and swapped outputs are named."""
    g = torch.Generator().manual_seed(11)
    cases = [(torch.tensor([[[0, 255], [51, 102]]], dtype=torch.uint8), "one 2x2 image [[0, 255], [51, 102]]"),
             (torch.tensor([[[200]]], dtype=torch.uint8), "a single pixel of value 200"),
             (torch.tensor([0, 128, 255], dtype=torch.uint8)[:, None, None].expand(3, 2, 3).contiguous(),
              "three 2x3 images, each of one grey (0, 128, 255)"),
             (torch.zeros(2, 4, 4, dtype=torch.uint8), "two all-black 4x4 images"),
             (torch.randint(0, 256, (64, 28, 28), generator=g, dtype=torch.uint8), "64 random 28x28 images")]
    for images, case in cases:
        mean, std = _two_numbers(_call(fn, images, case=case), case)
        ref_mean, ref_std = pixel_statistics_reference(images)
        pixels = images.double()
        if math.isclose(mean, ref_mean, abs_tol=1e-5) and math.isclose(std, ref_std, abs_tol=1e-5):
            continue
        if math.isclose(mean, ref_std, abs_tol=1e-5) and math.isclose(std, ref_mean, abs_tol=1e-5):
            raise Hint(f"mean and std are swapped: return (mean, std) on {case}")
        if math.isclose(mean, ref_mean * 255, abs_tol=1e-3):
            raise Hint(f"got mean {mean:.4g}: scale the pixels to [0, 1] first (÷ 255, as ToTensor does) on {case}")
        if math.isclose(mean, pixels.mean().item() / 256, abs_tol=1e-5) and ref_mean:
            raise Hint(f"got mean {mean:.6f}, expected {ref_mean:.6f}: the largest pixel value is 255, so divide "
                       f"by 255, not 256 ({case})")
        if not math.isclose(mean, ref_mean, abs_tol=1e-5):
            raise Hint(f"mean: expected {ref_mean:.6f} (of all pixels, ÷ 255), got {mean:.6g} on {case}")
        per_image = (pixels / 255).flatten(1).std(1, correction=0).mean().item()
        if math.isclose(std, per_image, abs_tol=1e-5):
            raise Hint(f"std: expected {ref_std:.6f}, got {std:.6g}, the mean of each image's own std, on {case}: the "
                       "differences BETWEEN images count too; take one std over all pixels of all images")
        wrapped = (images * images).double().mean().item() / 255 ** 2 - ref_mean ** 2  # squares taken in uint8
        if (wrapped > 0 and math.isclose(std, math.sqrt(wrapped), abs_tol=1e-5)) or \
                (wrapped < 0 and (math.isnan(std) or std == 0)):
            raise Hint(f"std: expected {ref_std:.6f}, got {std:.6g} on {case}: a square of a uint8 pixel wraps "
                       "around at 256 (200 · 200 is not 40,000 in uint8); turn the pixels into floats before any arithmetic")
        sample = (pixels / 255).std().item() if pixels.numel() > 1 else math.nan
        if math.isnan(std) or math.isclose(std, sample, abs_tol=1e-6):
            raise Hint(f"std: expected {ref_std:.6f}, got {std:.6g} on {case}: that is the sample std (÷ (n − 1); a "
                       "single pixel gives nan); take the spread of these very pixels, dividing by their count n "
                       "(std(correction=0))")
        raise Hint(f"std: expected {ref_std:.6f} (over all N·H·W pixels, ÷ 255, dividing by their count), "
                   f"got {std:.6g} on {case}")
    return "matches on five uint8 sets (a single pixel, images of one grey each, all zeros, 64 random images)"


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
             (third, torch.tensor([1, 2, 1]), "3 rows, 2 right (66.67%: rounding and floor differ)"),
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
        if abs(value - ref) < 0.051:
            raise Hint(f"expected {ref:.4f}%, got {value:.6g}: return the exact value 100 · right / N, not rounded "
                       f"(printing rounds; the function must not) on {case}")
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
    return f"matches on small cases (ties for the max, 1 and 2 of 3 right, one wrong row) and on {source}"


@exercise("normalize", "01", "the model's first step: each pixel shifted and scaled by Fashion-MNIST's mean, std",
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
        for name, (mean, std) in (("MNIST's", (0.1307, 0.3081)), ("the generic", (0.5, 0.5)),
                                  ("ImageNet's (red channel)", (0.485, 0.229))):
            if _close(out, (x - mean) / std, atol=1e-4):
                raise Hint(f"those are {name} constants ({mean}, {std}); this model normalises with Fashion-MNIST's "
                           "0.2860 and 0.3530 (the statistics of its training images)")
        if _close(out, (x - x.mean()) / x.std(), atol=1e-4) or _close(out, (x - x.mean()) / x.std(unbiased=False)):
            raise Hint("you used the batch's own mean and std; use Fashion-MNIST's fixed 0.2860 and 0.3530, the "
                       "same for every batch (as the model's first layer does)")
        raise Hint(f"pixel 1.0 must become (1 - 0.2860) / 0.3530 = {ref[0, 0, 1, 0]:.4f}, got {out[0, 0, 1, 0]:.4f}")
    x64 = x.double()
    out = _tensor(_call(fn, x64, case="the 2x2 image in float64"))
    if out.dtype != torch.float64:
        raise Hint(f"on a float64 image: return the input's dtype, float64 (got {out.dtype}): no .float() inside, "
                   "the model's layer keeps the dtype it gets")
    if not _close(out, normalize_reference(x64), atol=1e-6):
        raise Hint(f"on the 2x2 image in float64: {_first_diff(out, normalize_reference(x64), atol=1e-6)}")
    model, source = course_model()
    x = _images()
    out = _tensor(_call(fn, x, case="16 images"))
    with torch.no_grad():
        if not _close(out, model.normalize(x), atol=1e-5):
            raise Hint(f"differs from {source}'s normalize layer: {_first_diff(out, model.normalize(x), atol=1e-5)}")
    return f"matches on a 2x2 image (float32 and float64) and the normalize layer of {source}"
