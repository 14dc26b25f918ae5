"""Live views: apply a method at a slider's value to the loaded model and measure it in about a second.

One module per notebook topic (``wanda`` 03, ``quantization`` 06, ``comparison`` 08, ...), each with
``prepare(model, splits, **kw) -> state``, ``point(state, **controls) -> dict`` (with ``"val_accuracy"``),
``draw(result, reference, fig=None) -> Figure``, ``reference(results_dir) -> DataFrame`` and
``CONTROLS``; ``helpers.widgets.live_view`` turns such a module into a slider. The bits shared by the
topics live here: the fixed validation subset, its accuracy, the committed run's records, one figure
that follows the slider.
"""
from __future__ import annotations


import matplotlib.pyplot as plt
import pandas as pd
import torch
from torch import Tensor, nn

from ..artifacts import stage_records
from ..training import accuracy_from_logits

VAL_IMAGES = 1000  # the fixed validation subset every live point is measured on
EVAL_BATCH = 500


def val_subset(splits, n: int = VAL_IMAGES) -> tuple[Tensor, Tensor]:
    """The first ``n`` images (float in [0, 1], N x 1 x 28 x 28) and labels of the validation split."""
    if int(n) != n or n < 1:
        raise ValueError(f"the validation subset needs at least one image, got n={n!r}")
    if len(splits.val) == 0:
        raise ValueError("the validation split is empty: nothing to measure a live view on")
    return splits.val.head(int(n)).as_float()


@torch.inference_mode()
def val_accuracy(model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = EVAL_BATCH) -> float:
    """Top-1 accuracy (percent) of ``model`` (put in eval mode) on ``images``/``labels``."""
    if len(labels) == 0:
        raise ValueError("no images to evaluate")
    model.eval()
    device = next(model.parameters()).device
    logits = torch.cat([model(images[i:i + batch_size].to(device)).cpu() for i in range(0, len(labels), batch_size)])
    return accuracy_from_logits(logits, labels)


@torch.inference_mode()
def block1_output(model: nn.Module, images: Tensor, batch_size: int = EVAL_BATCH) -> Tensor:
    """What a FashionCNN's first conv block makes of ``images`` (normalised, conv, BN, ReLU, pool).

    A move that leaves the first block unchanged (pruning keeps the first conv dense) evaluates
    from here: on 28 x 28 inputs that block is about 45% of the forward pass's time.
    """
    model.eval()
    first = model.features[0]
    return torch.cat([first(model.normalize(images[i:i + batch_size])) for i in range(0, len(images), batch_size)])


@torch.inference_mode()
def val_accuracy_from_block1(model: nn.Module, hidden: Tensor, labels: Tensor, batch_size: int = EVAL_BATCH) -> float:
    """``val_accuracy`` of a FashionCNN given ``block1_output`` of the images (same result)."""
    model.eval()
    rest = lambda x: model.classifier(model.flatten(model.features[1:](x)))  # noqa: E731
    logits = torch.cat([rest(hidden[i:i + batch_size]).cpu() for i in range(0, len(labels), batch_size)])
    return accuracy_from_logits(logits, labels)


def read_records(results_dir, stage: str) -> pd.DataFrame:
    """The records of ``<results_dir>/<stage>.json`` as a table (empty when the file is missing)."""
    return pd.DataFrame(stage_records(results_dir, stage))


def figure_axes(fig=None, ncols: int = 2, figsize=(13, 4.2), **gridspec):
    """``(fig, axes)``: a new figure, or ``fig`` cleared, with ``ncols`` axes side by side."""
    if fig is None:
        fig = plt.figure(figsize=figsize)
    else:
        fig.clear()
    axes = fig.subplots(1, ncols, gridspec_kw=gridspec or None)
    return fig, list(axes) if ncols > 1 else [axes]


def check_choice(name: str, value, options) -> None:
    """A ValueError unless ``value`` is one of ``options``."""
    if value not in options:
        raise ValueError(f"{name} must be one of {list(options)}, got {value!r}")


def check_controls(controls: dict) -> None:
    """A ValueError unless a topic's CONTROLS follow the contract (kind, range/options, value, headless)."""
    for name, spec in controls.items():
        kind = spec.get("kind")
        if kind in ("float", "int"):
            lo, hi = spec["min"], spec["max"]
            allowed = lambda v: lo <= v <= hi  # noqa: E731
            if not lo < hi or spec.get("step", 0) <= 0:
                raise ValueError(f"control {name!r}: needs min < max and a positive step")
        elif kind == "choice":
            options = spec.get("options") or []
            allowed = options.__contains__
            if not options:
                raise ValueError(f"control {name!r}: a choice needs options")
        else:
            raise ValueError(f"control {name!r}: kind must be float, int or choice, got {kind!r}")
        values = [spec["value"], *spec.get("headless", [])]
        if not spec.get("headless") or not all(allowed(v) for v in values):
            raise ValueError(f"control {name!r}: value and headless values must lie in its range/options")


def mark_live_point(ax, result: dict, x_key: str, base_label: str, live_label: str) -> None:
    """The unpruned model's validation accuracy as a line and the slider's point as a ring on ``ax``
    (``result``: a live view's point, with ``base_val_accuracy``, ``val_accuracy`` and ``images``)."""
    ax.axhline(result["base_val_accuracy"], color="k", lw=1, label=base_label)
    ax.plot(result[x_key], result["val_accuracy"], "o", ms=13, mfc="none", mec="C3", mew=2.5,
            label=f"{live_label} (val, {result['images']} imgs)")
