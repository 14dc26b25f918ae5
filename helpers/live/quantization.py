"""Live view of notebook 06: post-training quantization at any weight and activation bit width.

Every move runs ``helpers.quantization.fake.ptq`` on the loaded float model (BatchNorm folded,
clipping by MSE, activation ranges calibrated on training images prepared once; first conv and last
Linear at 8 bits as in the notebook) and evaluates it on the fixed validation subset. Weight scales
per output channel or one per layer; either side can stay float.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.patches import Rectangle
from torch import Tensor, nn

from ..data import calibration_batch
from ..quantization.fake import levels, ptq, quant_layers
from . import check_choice, figure_axes, read_records, val_accuracy, val_subset

HIST_LAYER = "classifier.fc1"  # 84% of the weights; its output channel 0 is drawn
GRANULARITY = {"per-channel": "channel", "per-tensor": "tensor"}
KEEP_FLOAT = ("none", "weights", "activations")
BITS = list(range(2, 9))

CONTROLS = {
    "weight_bits": {"kind": "int", "min": 2, "max": 8, "step": 1, "value": 4, "headless": [2, 8]},
    "act_bits": {"kind": "int", "min": 2, "max": 8, "step": 1, "value": 4, "headless": [2, 8]},
    "granularity": {"kind": "choice", "options": list(GRANULARITY), "value": "per-channel",
                    "headless": ["per-channel", "per-tensor"]},
    "keep_float": {"kind": "choice", "options": list(KEEP_FLOAT), "value": "none",
                   "headless": list(KEEP_FLOAT)},
}


@dataclass
class State:
    """The float model, its calibration images (training split) and the validation subset."""

    model: nn.Module
    calibration: Tensor
    images: Tensor
    labels: Tensor
    float_accuracy: float
    edge_bits: int | None


def prepare(model: nn.Module, splits, calibration_images: int = 256, val_images: int = 1000,
            edge_bits: int | None = 8, seed: int = 0) -> State:
    """Calibration images, the validation subset and the float model's accuracy on it."""
    model = model.eval()
    images, labels = val_subset(splits, val_images)
    return State(model, calibration_batch(splits.train, calibration_images, seed=seed), images, labels,
                 val_accuracy(model, images, labels), edge_bits)


def bits_of(weight_bits: int, act_bits: int, keep_float: str) -> tuple[int | None, int | None]:
    """(weight bits, activation bits), None for the side kept float."""
    check_choice("keep_float", keep_float, KEEP_FLOAT)
    return (None if keep_float == "weights" else weight_bits, None if keep_float == "activations" else act_bits)


def point(state: State, weight_bits: int = 4, act_bits: int = 4, granularity: str = "per-channel",
          keep_float: str = "none") -> dict:
    """PTQ of the float model at these bits, measured; fc1's channel 0 and its levels for the plot."""
    check_choice("granularity", granularity, GRANULARITY)
    w_bits, a_bits = bits_of(weight_bits, act_bits, keep_float)
    qmodel = ptq(state.model, state.calibration, w_bits, a_bits, edge_bits=state.edge_bits,
                 weight_granularity=GRANULARITY[granularity])
    fc1 = quant_layers(qmodel)[HIST_LAYER]
    step = None if w_bits is None else float(fc1.weight_scale[0])
    return {"val_accuracy": val_accuracy(qmodel, state.images, state.labels),
            "float_val_accuracy": state.float_accuracy, "label": qmodel.quant_spec.label,
            "weight_bits": w_bits, "act_bits": a_bits, "granularity": granularity, "fc1_step": step,
            "fc1_weights": fc1.weight.detach()[0].cpu().numpy(),
            "fc1_levels": None if step is None else levels(step, w_bits).numpy()}


def reference(results_dir) -> pd.DataFrame:
    """Notebook 06's grid (test accuracy): columns ``kind`` (PTQ/QAT), ``weight_bits``,
    ``activation_bits`` (NaN = float), ``test_accuracy``."""
    records = read_records(results_dir, "06_quantization_grid")
    columns = ["kind", "weight_bits", "activation_bits", "test_accuracy"]
    if records.empty:
        return pd.DataFrame(columns=columns)
    records["kind"] = records["name"].str.split().str[-1]
    return records[columns].reset_index(drop=True)


def _grid(reference: pd.DataFrame, kind: str = "PTQ") -> np.ndarray:
    """Test accuracy by (weight bits 2..8, float) x (activation bits 2..8, float); NaN where not run."""
    grid = np.full((len(BITS) + 1, len(BITS) + 1), np.nan)
    index = {b: i for i, b in enumerate(BITS)}
    for row in reference[reference["kind"] == kind].itertuples() if not reference.empty else []:
        w = index.get(row.weight_bits, len(BITS))
        a = len(BITS) if pd.isna(row.activation_bits) else index[int(row.activation_bits)]
        grid[w, a] = row.test_accuracy
    return grid


def draw(result: dict, reference: pd.DataFrame, fig=None):
    """Left: fc1's output channel 0 (float weights) and the levels its code can take; right: the
    committed run's PTQ grid (test accuracy) with the live cell outlined (validation subset)."""
    fig, (ax_hist, ax_grid) = figure_axes(fig, 2, figsize=(14, 4.4), width_ratios=[1, 1.1])
    ax_hist.hist(result["fc1_weights"], bins=80, color="C0", alpha=0.7)
    if result["fc1_levels"] is not None:
        bits = result["weight_bits"]
        for level in result["fc1_levels"]:
            ax_hist.axvline(level, color="C3", lw=0.8 if bits < 6 else 0.3)
        title = f"fc1 channel 0: {2 ** bits - 1} levels, step {result['fc1_step']:.4f} ({result['granularity']})"
    else:
        title = "fc1 channel 0: float weights (not quantized)"
    ax_hist.set(title=title, xlabel="weight", ylabel="count")
    grid = _grid(reference)
    labels = [str(b) for b in BITS] + ["float"]
    ax_grid.imshow(np.ma.masked_invalid(grid), cmap="RdYlGn", vmin=np.nanmin(grid) if np.isfinite(grid).any() else 0,
                   vmax=100, aspect="auto")
    for (i, j), value in np.ndenumerate(grid):
        if np.isfinite(value):
            ax_grid.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=8)
    w = len(BITS) if result["weight_bits"] is None else BITS.index(result["weight_bits"])
    a = len(BITS) if result["act_bits"] is None else BITS.index(result["act_bits"])
    ax_grid.add_patch(Rectangle((a - 0.5, w - 0.5), 1, 1, fill=False, edgecolor="black", lw=3))
    ax_grid.set(xticks=range(len(labels)), xticklabels=labels, yticks=range(len(labels)), yticklabels=labels,
                xlabel="activation bits", ylabel="weight bits",
                title=f"run's PTQ grid (test %); live {result['label']}: {result['val_accuracy']:.1f}% "
                      f"(validation subset; float {result['float_val_accuracy']:.1f}%)")
    ax_grid.title.set_fontsize(9)
    ax_grid.grid(False)
    fig.tight_layout()
    return fig
