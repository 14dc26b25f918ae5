"""Live view of notebook 06: post-training quantization at any weight and activation bit width.

Every move builds what ``helpers.quantization.fake.ptq`` builds from the loaded float model
(BatchNorm folded, clipping by MSE, activation ranges calibrated on training images prepared once;
first conv and last Linear at 8 bits as in the notebook) and evaluates it on the fixed validation
subset. Weight scales per output channel or one per layer; either side can stay float.

The same model, faster: the weight side (the MSE clipping search, the slow part) and what
calibration observes depend only on (weight bits, granularity), so they are built once per pair
(the per-channel ones in ``prepare``) and each move only fixes the activation ranges for its bits
from the stored observations; the first block's output (8-bit edge layer, the same for every bit
width) is stored per (granularity, which side is float); and results are kept per control values.

``prepare(..., quantize_fn=...)`` runs every move's weights through another quantize-dequantize
(a learner's ``fake_quantize(weight, scales, bits)``, through ``fake.requantize_weights``) at the
scales the course chooses: the view then shows what that function makes of the model.
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
from matplotlib.patches import Rectangle
from torch import Tensor, nn

from ..data import calibration_batch
from ..quantization.fake import (ActQuant, QuantSpec, calibrate_from, observe_activations, quant_layers,
                                  quantize_model, requantize_weights)
from ..quantization.codes import levels
from . import block1_output, check_choice, figure_axes, read_records, val_accuracy, val_accuracy_from_block1, val_subset

HIST_LAYER = "classifier.fc1"  # 84% of the weights; its output channel 0 is drawn
GRANULARITY = {"per-channel": "channel", "per-tensor": "tensor"}
KEEP_FLOAT = ("none", "weights", "activations")
BITS = list(range(2, 9))
CACHED_POINTS = 256  # results kept per control values (least recently used dropped)
HIST_BINS = 80

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
    """The float model, its calibration images (training split), the validation subset, and what
    moves reuse: weight-quantized models with their calibration observations per (weight bits,
    granularity), first-block outputs, results per control values."""

    model: nn.Module
    calibration: Tensor
    images: Tensor
    labels: Tensor
    float_accuracy: float
    edge_bits: int | None
    fc1_histogram: tuple[np.ndarray, np.ndarray]  # counts, edges of fc1's output channel 0
    quantize_fn: Callable | None = None  # the weights' quantize-dequantize (None: the course's own)
    weight_side: dict = field(default_factory=dict)
    hidden: dict = field(default_factory=dict)
    results: OrderedDict = field(default_factory=OrderedDict)


def prepare(model: nn.Module, splits, calibration_images: int = 256, val_images: int = 1000,
            edge_bits: int | None = 8, seed: int = 0, precompute: tuple[str, ...] = ("per-channel",),
            quantize_fn: Callable | None = None) -> State:
    """Calibration images, the validation subset, the float model's accuracy on it, and the weight
    side of every weight bit width for the granularities in ``precompute`` (others on first use);
    ``quantize_fn(weight, scales, bits)`` quantizes the weights (None: the course's kernel)."""
    model = model.eval()
    images, labels = val_subset(splits, val_images)
    fc1 = dict(model.named_modules())[HIST_LAYER].weight.detach()[0].cpu().numpy()
    state = State(model, calibration_batch(splits.train, calibration_images, seed=seed), images, labels,
                  val_accuracy(model, images, labels), edge_bits, np.histogram(fc1, bins=HIST_BINS), quantize_fn)
    for granularity in precompute:
        check_choice("granularity", granularity, GRANULARITY)
        for bits in BITS:
            _weight_side(state, bits, GRANULARITY[granularity])
    return state


def bits_of(weight_bits: int, act_bits: int, keep_float: str) -> tuple[int | None, int | None]:
    """(weight bits, activation bits), None for the side kept float."""
    check_choice("keep_float", keep_float, KEEP_FLOAT)
    return (None if keep_float == "weights" else weight_bits, None if keep_float == "activations" else act_bits)


def _weight_side(state: State, w_bits: int | None, granularity: str):
    """(model quantized at ``w_bits`` with 8-bit activation placeholders, its calibration
    observations), built once per (weight bits, granularity)."""
    key = (w_bits, granularity)
    if key not in state.weight_side:
        qmodel = quantize_model(state.model, w_bits, 8, edge_bits=state.edge_bits, weight_granularity=granularity)
        if state.quantize_fn is not None and w_bits is not None:
            qmodel = requantize_weights(qmodel, state.quantize_fn)
        state.weight_side[key] = (qmodel, observe_activations(qmodel, state.calibration))
    return state.weight_side[key]


def quantized(state: State, w_bits: int | None, a_bits: int | None, granularity: str) -> nn.Module:
    """The model ``ptq(state.model, state.calibration, w_bits, a_bits, edge_bits, granularity)``
    returns, from the stored weight side: fresh activation quantizers at ``a_bits`` calibrated on
    the stored observations."""
    spec = QuantSpec(w_bits, a_bits, state.edge_bits, weight_granularity=granularity)
    weights, observations = _weight_side(state, w_bits, granularity)
    qmodel = copy.deepcopy(weights)
    layers = list(quant_layers(qmodel).values())
    for i, layer in enumerate(layers):
        old = layer.input_quant
        layer.input_quant = ActQuant(spec.layer_bits(i, len(layers))[1], old.clip, old.non_negative, old.max_samples)
    qmodel.quant_spec = spec
    return calibrate_from(qmodel, observations).eval()


def point(state: State, weight_bits: int = 4, act_bits: int = 4, granularity: str = "per-channel",
          keep_float: str = "none") -> dict:
    """PTQ of the float model at these bits, measured; fc1's channel 0 and its levels for the plot."""
    check_choice("granularity", granularity, GRANULARITY)
    w_bits, a_bits = bits_of(weight_bits, act_bits, keep_float)
    key = (w_bits, a_bits, granularity)
    if key in state.results:
        state.results.move_to_end(key)
        return dict(state.results[key])
    qmodel = quantized(state, w_bits, a_bits, GRANULARITY[granularity])
    # the first conv is an edge layer (8 bits whatever the sliders say): its output is shared
    hidden_key = (w_bits is None, a_bits is None, granularity)
    if state.edge_bits is None:
        accuracy = val_accuracy(qmodel, state.images, state.labels)
    else:
        if hidden_key not in state.hidden:
            state.hidden[hidden_key] = block1_output(qmodel, state.images)
        accuracy = val_accuracy_from_block1(qmodel, state.hidden[hidden_key], state.labels)
    fc1 = quant_layers(qmodel)[HIST_LAYER]
    step = None if w_bits is None else float(fc1.weight_scale[0])
    result = {"val_accuracy": accuracy,
              "float_val_accuracy": state.float_accuracy, "label": qmodel.quant_spec.label,
              "weight_bits": w_bits, "act_bits": a_bits, "granularity": granularity, "fc1_step": step,
              "fc1_histogram": state.fc1_histogram,
              "fc1_levels": None if step is None else levels(step, w_bits).numpy()}
    state.results[key] = result
    while len(state.results) > CACHED_POINTS:
        state.results.popitem(last=False)
    return dict(result)


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
    counts, edges = result["fc1_histogram"]
    ax_hist.stairs(counts, edges, fill=True, color="C0", alpha=0.7)  # one artist, not 80 bars
    if result["fc1_levels"] is not None:
        bits = result["weight_bits"]
        ax_hist.vlines(result["fc1_levels"], 0, 1, transform=ax_hist.get_xaxis_transform(), color="C3",
                       lw=0.8 if bits < 6 else 0.3)
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
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.12, top=0.91, wspace=0.18)  # tight_layout: 0.7 s a move
    return fig
