"""Live view of notebook 07: sparsity x weight bits, and the bytes of the ``.ccz`` file it makes.

Each move prunes a copy of the loaded model as 07's source model was pruned (notebook 05's LAMP
ranking, global and model-wide, first conv and last layer dense), quantizes its weights to ``bits``
(per output channel, symmetric, so pruned weights stay code 0; first conv and last layer at 8 bits)
rounds its scales and biases to float16 values as 07 does (``combined.half_precision_side_tensors``),
and encodes the Deep-Compression file **in memory** with ``helpers.storage.compressed.encode_with_stages``: the
byte count is that of the file ``helpers.save`` would write, its positions and codes written by the
``gaps_fn``/``pack_fn`` given to ``prepare`` (a learner's ``relative_gaps``/``pack_bits``; None: the
course's coders). Accuracy is measured on the fixed validation subset.

Weight-only post-training quantization, no QAT and no fine-tuning: 07 itself trains (QAT with the
masks kept) for its committed point, the reference. ``quantize_model(pruned, bits, None)`` is what
``helpers.quantization.masked.quantize_keeping_masks`` builds without QAT (with float activations its
calibration pass only repeats the weight-scale search), at half its cost.

The same model, faster: the first conv is never pruned and always 8-bit (an edge layer), so its
block's output on the subset is computed once in ``prepare`` and each move evaluates from there
(``val_accuracy_from_block1``, the same predictions); the MSE clipping search skips the pruned
zeros (``quantization.fake.clip_ratios``, bit for bit the same ratios); results are kept per
control values. The ``.ccz`` bytes are still encoded on every new move (the real format, LZMA
preset 9e).
"""
from __future__ import annotations

import copy

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

import matplotlib.pyplot as plt
import pandas as pd
from torch import Tensor, nn

from ..storage.checkpoint import encode as encode_checkpoint
from ..quantization.masked import half_precision_side_tensors
from ..counting import sparsity as model_sparsity
from ..quantization.fake import quantize_model
from ..quantization.codes import CLIP_METHODS
from ..storage.compressed import encode_with_stages
from ..pruning.ranking import GlobalRanking
from ..pruning.unstructured import apply_masks, global_ranking
from . import (VAL_IMAGES, block1_output, mark_live_point, read_records, val_accuracy, val_accuracy_from_block1,
               val_subset)

STAGE = "07_combined"
SCORE, LAYERS = "lamp", "inner"  # 05's ranking, which produced 07's pruned model
STAGE_LABELS = {"dense_float32": "dense float32 tensors", "sparse_float32": "+ positions (sparse float32)",
                "sparse_packed": "+ packed codes", "entropy_coded": "+ LZMA: the .ccz file"}

CACHED_POINTS = 256  # results kept per control values (least recently used dropped)

CONTROLS = {
    "sparsity": {"kind": "float", "min": 0.5, "max": 0.98, "step": 0.01, "value": 0.95,
                 "headless": [0.5, 0.9, 0.98]},
    "bits": {"kind": "int", "min": 2, "max": 8, "step": 1, "value": 4, "headless": [2, 4, 8]},
}


@dataclass(frozen=True)
class CombinedState:
    """The loaded (dense) model, the subset, its global ranking and the size of its dense .pt file;
    what moves reuse: the quantized first block's output on the subset, results per control values;
    the coders that write each move's file (``compressed.sparse_codes``; None: the course's)."""

    model: nn.Module
    images: Tensor
    labels: Tensor
    ranking: GlobalRanking
    dense_pt_bytes: int
    base_accuracy: float
    weight_clip: str = "mse"
    hidden: Tensor | None = None  # block1_output of any move's model (first conv: dense, 8-bit)
    results: OrderedDict = field(default_factory=OrderedDict)
    gaps_fn: Callable | None = None
    pack_fn: Callable | None = None


def dense_file_bytes(model: nn.Module) -> int:
    """Bytes of ``model`` as a dense ``.pt`` file (``helpers.save``'s bytes, encoded in memory)."""
    return len(encode_checkpoint(model))


def prepare(model: nn.Module, splits, n: int = VAL_IMAGES, weight_clip: str = "mse", gaps_fn=None,
            pack_fn=None) -> CombinedState:
    """The state of the live view: ``model`` in eval mode, its LAMP ranking, the first ``n`` validation
    images. ``weight_clip``: 07's ``"mse"`` clipping search, or ``"max"`` (no search: faster, worse at
    2-3 bits). ``gaps_fn(positions, max_gap)``, ``pack_fn(values, bits)``: the coders every move's file
    is written with (e.g. a learner's ``relative_gaps`` and ``pack_bits``; None: the course's)."""
    if weight_clip not in CLIP_METHODS:
        raise ValueError(f"weight_clip must be one of {CLIP_METHODS}, got {weight_clip!r}")
    model = model.eval()
    images, labels = val_subset(splits, n)
    ranking = global_ranking(model, SCORE, LAYERS, model_wide=True)
    if "features.block1.conv" in ranking.names:
        raise ValueError("the live view's ranking must keep the first conv dense")
    # every move's first block: the dense first conv quantized at the edge bits (8), float input
    hidden = block1_output(half_precision_side_tensors(quantize_model(model, 8, None, weight_clip=weight_clip)), images)
    return CombinedState(model, images, labels, ranking, dense_file_bytes(model), val_accuracy(model, images, labels),
                         weight_clip, hidden, gaps_fn=gaps_fn, pack_fn=pack_fn)


def point(state: CombinedState, sparsity: float, bits: int) -> dict:
    """Prune a copy, quantize its weights, encode the file in memory, measure; the model is untouched
    (a repeated move returns a copy of the stored result)."""
    key = (float(sparsity), bits)
    if key in state.results:
        state.results.move_to_end(key)
        return dict(state.results[key])
    result = compute_point(state, sparsity, bits)
    state.results[key] = result
    while len(state.results) > CACHED_POINTS:
        state.results.popitem(last=False)
    return dict(result)


def compute_point(state: CombinedState, sparsity: float, bits: int) -> dict:
    """``point`` without the stored results."""
    pruned = apply_masks(copy.deepcopy(state.model).eval(), state.ranking.masks(float(sparsity)))
    qmodel = half_precision_side_tensors(quantize_model(pruned, bits, None, weight_clip=state.weight_clip))
    data, stages = encode_with_stages(qmodel, {"bits": bits, "sparsity": float(sparsity), "live": True},
                                      state.gaps_fn, state.pack_fn)
    if state.hidden is None:
        accuracy = val_accuracy(qmodel, state.images, state.labels)
    else:
        accuracy = val_accuracy_from_block1(qmodel, state.hidden, state.labels)
    return {
        "val_accuracy": accuracy, "sparsity": model_sparsity(pruned), "target_sparsity": float(sparsity),
        "weight_bits": bits, "bytes": len(data), "stage_bytes": stages, "dense_pt_bytes": state.dense_pt_bytes,
        "smaller_than_dense": state.dense_pt_bytes / len(data), "base_val_accuracy": state.base_accuracy,
        "images": len(state.labels),
        "summary": (f"{len(data):,} bytes ({state.dense_pt_bytes / len(data):.1f}x smaller than the dense .pt) · "
                    f"sparsity {float(sparsity):.0%}, {bits}-bit weights, no QAT"),
    }


def reference(results_dir) -> pd.DataFrame:
    """07's committed records: name, sparsity, weight bits, bytes on disk, test accuracy (and the
    ``.ccz`` record's stage bytes); empty when the results are missing."""
    table = read_records(results_dir, STAGE)
    if table.empty:
        return table
    keep = ["name", "method", "sparsity", "weight_bits", "size_bytes", "test_accuracy", "stage_bytes", "qat_epochs"]
    return table[[c for c in keep if c in table]].reset_index(drop=True)


def draw(result: dict, reference: pd.DataFrame | None = None, fig=None):
    """The bytes of each stage beside the dense .pt (and 07's file), and accuracy vs bytes."""
    if fig is None:
        fig = plt.figure(figsize=(14, 4.4))
    fig.clear()
    ax_b, ax_a = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.3, 1.0]})
    bars = {"dense .pt file (loaded model)": result["dense_pt_bytes"]}
    bars.update({STAGE_LABELS.get(k, k): v for k, v in result["stage_bytes"].items()})
    ref = reference if reference is not None else pd.DataFrame()
    ccz = ref[ref["name"].str.contains(".ccz", regex=False)] if not ref.empty else ref
    if not ccz.empty:
        bars["07's .ccz (pruned, QAT)"] = int(ccz["size_bytes"].iloc[0])
    colors = ["0.6"] + ["C0"] * (len(result["stage_bytes"]) - 1) + ["C3"] + ["C1"] * (not ccz.empty)
    ax_b.barh(list(bars), list(bars.values()), color=colors)
    for i, v in enumerate(bars.values()):
        ax_b.text(v, i, f" {v:,}", va="center", fontsize=8)
    ax_b.invert_yaxis()
    ax_b.set(xscale="log", xlabel="bytes (log)", xlim=(min(bars.values()) / 2, max(bars.values()) * 8),
             title=f"{result['bytes']:,} bytes: {result['smaller_than_dense']:.1f}x smaller than the dense .pt")
    if not ref.empty:
        for _, row in ref.iterrows():
            ax_a.plot(row["size_bytes"], row["test_accuracy"], "D", ms=8, label=f"07: {row['name']} (test)")
    mark_live_point(ax_a, result, "bytes", "dense (val subset)", "live: no QAT")
    ax_a.set(xscale="log", xlabel="bytes of the file", ylabel="accuracy (%)", ylim=(0, 100),
             title=f"live: {result['val_accuracy']:.2f}% · {result['sparsity']:.1%} zeros · W{result['weight_bits']}")
    ax_a.legend(fontsize=7, loc="lower left")
    # fixed margins: tight_layout would cost about a second per move
    fig.subplots_adjust(left=0.2, right=0.98, bottom=0.14, top=0.9, wspace=0.3)
    return fig
