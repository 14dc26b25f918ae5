"""Live view of notebook 04: Network Slimming at any channel share, no fine-tuning.

Each move ranks the |γ| of all BatchNorm channels together, removes the lowest share (every layer
keeps at least ``min_channels``, 04's ``MIN_CHANNELS``) with ``helpers.pruning.slimming`` and
measures the genuinely smaller model on the fixed validation subset. ``prepare`` takes any
``FashionCNN``; the notebook passes its sparsity-trained model, on which small |γ| mark channels
that carry little. The reference is 04's committed curve (``slim_rXX``), fine-tuned after removal.
The threshold comes from ``threshold_fn`` (04 passes ``use("global_threshold", ...)``: the learner's
function once it passes its check), so the learner's threshold picks the channels each move removes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from torch import Tensor

from ..counting import count_macs, count_parameters
from ..models import FashionCNN
from ..pruning import slimming as sl
from ..pruning import structured as st
from . import VAL_IMAGES, mark_live_point, read_records, val_accuracy, val_subset

STAGE = "04_network_slimming"
MIN_CHANNELS = 4  # notebook 04's floor per conv layer

CONTROLS = {"ratio": {"kind": "float", "min": 0.0, "max": 0.9, "step": 0.05, "value": 0.5,
                      "headless": [0.0, 0.5, 0.9]}}


@dataclass(frozen=True)
class SlimmingState:
    """The (sparsity-trained) model, the subset, the removal options and the model's own numbers."""

    model: FashionCNN
    images: Tensor
    labels: Tensor
    min_channels: int
    absorb: bool
    gammas: tuple[Tensor, ...]  # |γ| per conv block
    base_params: int
    base_accuracy: float
    threshold_fn: Callable = sl.global_threshold  # (|γ| per block, ratio) -> the global threshold


def prepare(model: FashionCNN, splits, min_channels: int = MIN_CHANNELS, absorb: bool = False,
            n: int = VAL_IMAGES, threshold_fn: Callable = sl.global_threshold) -> SlimmingState:
    """The state of the live view: ``model`` in eval mode, its |γ|, the first ``n`` validation images,
    and the threshold function every move uses (``global_threshold`` or a learner's)."""
    model = model.eval()
    sl.slimming_plan(model, 0.0, min_channels)  # checks min_channels against the model
    images, labels = val_subset(splits, n)
    return SlimmingState(model, images, labels, int(min_channels), bool(absorb), tuple(st.bn_gamma_abs(model)),
                         count_parameters(model), val_accuracy(model, images, labels), threshold_fn)


def point(state: SlimmingState, ratio: float) -> dict:
    """Slim a copy at the global channel share ``ratio`` and measure it; the state is untouched."""
    plan = sl.slimming_plan(state.model, float(ratio), state.min_channels, state.threshold_fn)
    source = sl.absorb_removed_channels(state.model, plan.keep) if state.absorb else state.model
    slimmed = st.remove_channels(source, plan.keep).eval()  # = sl.slim(model, ratio, ...), plan reused
    params = count_parameters(slimmed)
    widths = [len(g) for g in state.gammas]
    return {
        "val_accuracy": val_accuracy(slimmed, state.images, state.labels),
        "ratio": float(ratio), "threshold": plan.threshold, "removed_fraction": plan.removed_fraction,
        "kept_channels": list(plan.conv_channels), "widths": widths,
        "removed_channels": {name: st.removed_indices(w, keep).tolist()
                             for name, w, keep in zip(st.conv_layer_names(state.model), widths, plan.keep.conv)},
        "gammas": [g.tolist() for g in state.gammas],
        "params": params, "macs": count_macs(slimmed), "base_params": state.base_params,
        "base_val_accuracy": state.base_accuracy, "images": len(state.labels),
        "summary": (f"|γ| threshold {plan.threshold:.3g} · channels {list(plan.conv_channels)} of {widths} · "
                    f"{params:,} params ({params / state.base_params:.0%})"),
    }


def reference(results_dir) -> pd.DataFrame:
    """04's committed curve (``slim_rXX``): ratio, threshold, channels, params, accuracy right after
    removal and after fine-tuning; empty when the results are missing."""
    table = read_records(results_dir, STAGE)
    if table.empty or "name" not in table:
        return pd.DataFrame()
    curve = table[table["name"].str.match(r"slim_r\d+$")]
    keep = [c for c in ("name", "ratio", "threshold", "conv_channels", "params", "val_accuracy_pruned",
                        "val_accuracy", "test_accuracy", "fine_tune_epochs") if c in curve]
    return curve[keep].sort_values("ratio").reset_index(drop=True)


def draw(result: dict, reference: pd.DataFrame | None = None, fig=None):
    """The |γ| histogram with the threshold, the channels kept per block, and accuracy vs ratio
    beside 04's curve."""
    if fig is None:
        fig = plt.figure(figsize=(15, 4.4))
    fig.clear()
    ax_h, ax_c, ax_a = fig.subplots(1, 3)
    values = np.concatenate([np.asarray(g) for g in result["gammas"]])
    ax_h.hist(values, bins=np.linspace(0, max(values.max(), 1e-6), 60), color="C0")
    ax_h.axvline(result["threshold"], color="C3", lw=2, label=f"threshold {result['threshold']:.3g}")
    ax_h.set(yscale="log", xlabel="|γ| (all conv blocks)", ylabel="channels",
             title=f"global threshold: lowest {result['ratio']:.0%} of |γ|")
    ax_h.legend(fontsize=8)
    names = [f"block{i + 1}" for i in range(len(result["widths"]))]
    ax_c.bar(names, result["widths"], color="0.85", label="before")
    ax_c.bar(names, result["kept_channels"], color="C2", label="kept")
    for i, (k, w) in enumerate(zip(result["kept_channels"], result["widths"])):
        ax_c.text(i, k, f"{k}/{w}", ha="center", va="bottom", fontsize=9)
    ax_c.set(ylabel="channels", title=f"channels kept ({result['removed_fraction']:.0%} removed)")
    ax_c.legend(fontsize=8)
    ref = reference if reference is not None else pd.DataFrame()
    if not ref.empty:
        ax_a.plot(ref["ratio"], ref["test_accuracy"], "o-", color="C0", label="04: after fine-tuning (test)")
        if "val_accuracy_pruned" in ref:
            ax_a.plot(ref["ratio"], ref["val_accuracy_pruned"], "s:", color="C1", label="04: right after removal (val)")
    mark_live_point(ax_a, result, "ratio", "not slimmed (val subset)", "live: no fine-tuning")
    ax_a.set(xlabel="share of channels removed", ylabel="accuracy (%)", ylim=(0, 100), xlim=(-0.03, 0.93),
             title=f"live: {result['val_accuracy']:.2f}% · {result['params']:,} params")
    ax_a.legend(fontsize=8, loc="lower left")
    # fixed margins: tight_layout would cost about a second per move
    fig.subplots_adjust(left=0.05, right=0.98, bottom=0.14, top=0.9, wspace=0.28)
    return fig
