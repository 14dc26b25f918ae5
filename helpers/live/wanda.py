"""Live view of notebook 03: prune the loaded model at any sparsity with Wanda, magnitude or LAMP.

``prepare`` measures Wanda's input norms once (on calibration images of the training split, one pass
through the dense model); every move then scores, masks and evaluates a copy on the fixed
validation subset. The rules are those of notebook 03's curves: per output row for Wanda and
magnitude, one global ranking for LAMP, the inner layers pruned (first conv and classifier output
dense); N:M (2:4, 4:8) on every layer but the first conv, whatever the sparsity slider says.

The ``batchnorm`` control re-estimates the BatchNorm statistics of the pruned copy on the calibration
images (no weight changes, as the "BN re-estimated" curves of notebook 03, which keep far more accuracy
without fine-tuning than the dense model's stale statistics), or keeps them as trained.

Two choices of notebook 03 reach the view through ``prepare``: ``impl``, the learner's functions
(Wanda's scores, the im2col norms, the row and N:M masks) once they passed their checks, and
``sequential``, the calibration order 03 picked on validation (layer by layer through the pruned
earlier layers, or one pass through the dense model).
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass, field

import pandas as pd
import torch
from torch import Tensor, nn

from ..data import calibration_batch
from ..counting import sparsity as model_sparsity
from ..pruning.unstructured import (COURSE, Implementation, apply_masks, check_sparsity, input_norms,
                                    masks_from_scores, prune_model, recalibrate_batchnorm, scores_of, select_layers)
from . import (block1_output, check_choice, figure_axes, read_records, val_accuracy, val_accuracy_from_block1,
               val_subset)

FIRST_CONV = "features.block1.conv"  # dense in every pattern (as in notebook 03)
MASK_LAYER = "features.block2.conv"  # the mask drawn, as in notebook 03's section 7
PATTERNS = {"unstructured": None, "2:4": (2, 4), "4:8": (4, 8)}
GROUP_OF = {"wanda": "row", "magnitude": "row", "lamp": "global"}
VARIANT_OF = {"wanda": "Wanda · row · inner", "magnitude": "magnitude · row · inner", "lamp": "LAMP · global · inner"}
BATCHNORM = ("re-estimated", "as trained")  # the pruned copy's BatchNorm statistics
RE_ESTIMATED = " · BN re-estimated"         # notebook 03's curve of a variant with BN re-estimated

CONTROLS = {
    "sparsity": {"kind": "float", "min": 0.0, "max": 0.99, "step": 0.01, "value": 0.7,
                 "headless": [0.0, 0.5, 0.9, 0.99]},
    "method": {"kind": "choice", "options": ["wanda", "magnitude", "lamp"], "value": "wanda",
               "headless": ["wanda", "magnitude", "lamp"]},
    "pattern": {"kind": "choice", "options": list(PATTERNS), "value": "unstructured",
                "headless": ["unstructured", "2:4", "4:8"]},
    "batchnorm": {"kind": "choice", "options": list(BATCHNORM), "value": "re-estimated", "headless": list(BATCHNORM)},
}
CACHED_POINTS = 256  # results kept per control values (least recently used dropped)


@dataclass
class State:
    """What every move reuses: the dense model, Wanda's input norms, the validation subset, and the
    learner's functions and calibration order it prunes with."""

    model: nn.Module
    norms: dict[str, Tensor]
    images: Tensor
    labels: Tensor
    hidden: Tensor  # block1_output of the images: every pattern keeps the first conv dense
    dense_accuracy: float
    calibration: Tensor | None = None  # the images of the norms (also: sequential Wanda, BN re-estimation)
    impl: Implementation = COURSE
    sequential: bool = False
    scores: dict = field(default_factory=dict)  # (method, pattern) -> scores: they ignore the sparsity
    results: OrderedDict = field(default_factory=OrderedDict)  # control values -> result


def prepare(model: nn.Module, splits, calibration_images: int = 256, val_images: int = 1000,
            seed: int = 0, impl: Implementation = COURSE, sequential: bool = False) -> State:
    """Input norms of every prunable layer on ``calibration_images`` training images, the validation
    subset and the dense model's accuracy on it. ``impl``: the functions every move prunes with;
    ``sequential``: Wanda's norms measured layer by layer through the pruned earlier layers."""
    model = model.eval()
    calibration = calibration_batch(splits.train, calibration_images, seed=seed)
    norms = input_norms(model, select_layers(model, "all"), calibration, conv_norms=impl.im2col_input_norms)
    images, labels = val_subset(splits, val_images)
    return State(model, norms, images, labels, block1_output(model, images), val_accuracy(model, images, labels),
                 calibration, impl, bool(sequential))


def pruned_layers(model: nn.Module, pattern: str) -> dict[str, nn.Module]:
    """The layers a pattern prunes: the inner ones (unstructured), all but the first conv (N:M)."""
    if PATTERNS[pattern] is None:
        return select_layers(model, "inner")
    return dict(list(select_layers(model, "all").items())[1:])


def _scores(state: State, method: str, pattern: str) -> dict[str, Tensor]:
    """The scores of (method, pattern) on the dense model, computed once."""
    if (method, pattern) not in state.scores:
        state.scores[method, pattern] = scores_of(pruned_layers(state.model, pattern), method, state.norms,
                                                  state.impl)
    return state.scores[method, pattern]


def _pruned(state: State, sparsity: float, method: str, pattern: str) -> tuple[nn.Module, dict]:
    """A pruned copy and its masks: sequential Wanda re-measures the norms layer by layer (``prune_model``);
    everything else masks the scores of the dense model."""
    if state.sequential and method == "wanda":
        return prune_model(state.model, "wanda", None if PATTERNS[pattern] else sparsity, group=GROUP_OF[method],
                           nm=PATTERNS[pattern], layers=list(pruned_layers(state.model, pattern)),
                           calibration=state.calibration, sequential=True, impl=state.impl)
    masks = masks_from_scores(_scores(state, method, pattern), sparsity, GROUP_OF[method], nm=PATTERNS[pattern],
                              impl=state.impl)
    return apply_masks(copy.deepcopy(state.model), masks), masks


@torch.no_grad()
def point(state: State, sparsity: float = 0.7, method: str = "wanda", pattern: str = "unstructured",
          batchnorm: str = "re-estimated") -> dict:
    """Prune a copy of the model and measure it; ``sparsity`` is ignored by the N:M patterns;
    ``batchnorm``: re-estimate the copy's BatchNorm statistics on the calibration images, or not."""
    check_choice("method", method, GROUP_OF)
    check_choice("pattern", pattern, PATTERNS)
    check_choice("batchnorm", batchnorm, BATCHNORM)
    check_sparsity(sparsity)
    key = (method, pattern, None if PATTERNS[pattern] else float(sparsity), batchnorm)
    if key in state.results:
        state.results.move_to_end(key)
        return dict(state.results[key])
    pruned, masks = _pruned(state, sparsity, method, pattern)
    if FIRST_CONV in masks:
        raise AssertionError("the first conv is pruned: the cached block1 output would be stale")
    if batchnorm == "re-estimated":  # every BatchNorm, block 1's too: the cached block-1 output no longer holds
        accuracy = val_accuracy(recalibrate_batchnorm(pruned, state.calibration), state.images, state.labels)
    else:
        accuracy = val_accuracy_from_block1(pruned, state.hidden, state.labels)
    result = {"val_accuracy": accuracy, "batchnorm": batchnorm,
              "dense_val_accuracy": state.dense_accuracy, "method": method, "pattern": pattern,
              "target_sparsity": None if PATTERNS[pattern] else float(sparsity),
              "sparsity": model_sparsity(pruned),
              "mask_sparsity": float((~masks[MASK_LAYER]).float().mean()), "mask": masks[MASK_LAYER].cpu(),
              "wanda_order": ("sequential" if state.sequential else "one pass") if method == "wanda" else "n/a"}
    state.results[key] = result
    while len(state.results) > CACHED_POINTS:
        state.results.popitem(last=False)
    return dict(result)


def reference(results_dir) -> pd.DataFrame:
    """Notebook 03's one-shot and 1-epoch fine-tuned curves and N:M points (test accuracy):
    columns ``variant``, ``fine_tune_epochs``, ``target_sparsity``, ``sparsity``, ``test_accuracy``."""
    records = read_records(results_dir, "03_wanda")
    columns = ["variant", "fine_tune_epochs", "target_sparsity", "sparsity", "test_accuracy"]
    if records.empty:
        return pd.DataFrame(columns=columns)
    curves = records[records["method"].str.contains(r", (?:no fine-tuning|short fine-tune)$")].copy()
    curves["variant"] = curves["method"].str.split(",").str[0]
    return curves[columns].sort_values(["variant", "fine_tune_epochs", "target_sparsity"]).reset_index(drop=True)


def reference_variant(method: str, pattern: str) -> str:
    """The reference curve of a (method, pattern); N:M by LAMP ranks as magnitude within each group."""
    if PATTERNS[pattern] is None:
        return VARIANT_OF[method]
    return f"{'wanda' if method == 'wanda' else 'magnitude'} {pattern}"


def draw(result: dict, reference: pd.DataFrame, fig=None):
    """Left: the committed run's curves for this method (test accuracy) and the live point
    (validation subset); right: the mask of block2.conv as a 64 x 288 matrix (white = kept)."""
    fig, (ax_curve, ax_mask) = figure_axes(fig, 2, figsize=(14, 4.2), width_ratios=[1, 1.3])
    variants = {VARIANT_OF[result["method"]], VARIANT_OF[result["method"]] + RE_ESTIMATED} | {
        reference_variant(result["method"], p) for p in ("2:4", "4:8")}
    part = reference[reference["variant"].isin(variants)] if not reference.empty else reference
    for (variant, epochs), curve in part.groupby(["variant", "fine_tune_epochs"]) if not part.empty else []:
        label = "no fine-tuning" if epochs == 0 else f"{epochs}-epoch fine-tune"
        ax_curve.plot(curve["sparsity"], curve["test_accuracy"], "o-" if len(curve) > 1 else "s", alpha=0.6,
                      label=f"run: {variant}, {label} (test)")
    ax_curve.axhline(result["dense_val_accuracy"], color="k", ls=":", lw=1, label="dense (validation subset)")
    ax_curve.plot([result["sparsity"]], [result["val_accuracy"]], "*", color="C3", ms=16,
                  label=f"live: {result['val_accuracy']:.1f}% (validation subset)")
    ax_curve.set(xlabel="sparsity (all Conv2d/Linear weights)", ylabel="accuracy (%)", ylim=(0, 100), xlim=(-0.02, 1.0),
                 title=f"{result['method']} · {result['pattern']}"
                       f"{' · ' + result['wanda_order'] if result.get('wanda_order', 'n/a') != 'n/a' else ''}: "
                       f"{result['sparsity']:.1%} zeros, BN {result.get('batchnorm', 'as trained')}, no fine-tuning")
    ax_curve.legend(fontsize=8, loc="lower left")
    ax_mask.imshow(result["mask"].reshape(result["mask"].shape[0], -1).numpy(), cmap="gray", aspect="auto",
                   vmin=0, vmax=1, interpolation="nearest")
    ax_mask.set(title=f"mask of block2.conv (64 × 288): {result['mask_sparsity']:.1%} pruned",
                xlabel="input channel × kernel position", ylabel="output channel")
    ax_mask.grid(False)
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.12, top=0.92, wspace=0.15)  # tight_layout: ~0.5 s a move
    return fig
