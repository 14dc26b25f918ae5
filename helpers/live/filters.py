"""Live view of notebook 02: L1-norm filter pruning with one ratio per conv block, no fine-tuning.

Each move removes the given share of lowest-Σ|W| filters from every conv block (and, fixed, the share
of hidden FC units of 02's chosen model) with ``helpers.pruning.structured``: a genuinely smaller
model, whose parameters, MACs (``count_macs``) and accuracy on the fixed validation subset are
measured. The reference is 02's committed curve: the same kind of models after fine-tuning. The
filters are ranked by ``prepare``'s ``scorer`` (the learner's ``filter_l1_scores`` once it passes its
check, see ``helpers.exercises.use``), Σ|W| when it is None.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import matplotlib.pyplot as plt
import pandas as pd
from torch import Tensor

from ..counting import count_macs, count_parameters
from ..models import FashionCNN
from ..plots import draw_layer_filters
from ..pruning import structured as st
from . import VAL_IMAGES, read_records, val_accuracy, val_subset

STAGE = "02_l1_filter_pruning"
CHOSEN_FC_RATIOS = (0.7, 0.7)  # hidden FC units the live view removes (1000 -> 300, 120 -> 36): fc1 as in 02's
                               # chosen model; fc2's share there is set by 02's safe-ratio scan (0.7-0.8)
BLOCKS = ("block1", "block2", "block3")
_DEFAULTS = (0.3, 0.15, 0.15)  # 02's chosen model: r = 0.3 with CONV_SCALE [1, .5, .5]

CONTROLS = {block: {"kind": "float", "min": 0.0, "max": 0.9, "step": 0.05, "value": value,
                    "headless": [0.0, 0.5, 0.9]}
            for block, value in zip(BLOCKS, _DEFAULTS)}


@dataclass(frozen=True)
class FiltersState:
    """The loaded model, the subset, the FC ratios kept fixed, and the unpruned model's numbers."""

    model: FashionCNN
    images: Tensor
    labels: Tensor
    fc_ratios: tuple[float, ...]
    scores: dict[str, Tensor]  # Σ|W| (or the scorer's score) of every filter/unit of the model (st.l1_scores)
    base_params: int
    base_macs: int
    base_accuracy: float


def prepare(model: FashionCNN, splits, fc_ratios: Sequence[float] = CHOSEN_FC_RATIOS,
            n: int = VAL_IMAGES, scorer: Callable[[Tensor], Tensor] | None = None) -> FiltersState:
    """The state of the live view: ``model`` in eval mode, the first ``n`` validation images, every
    filter's score by ``scorer(weight)`` (Σ|W| when None)."""
    if len(model.config.conv_channels) != len(BLOCKS):
        raise ValueError(f"the live view has one control per conv block ({len(BLOCKS)}); "
                         f"the model has {len(model.config.conv_channels)}")
    model = model.eval()
    fc = tuple(st.expand_ratios(fc_ratios, len(model.config.fc_features), "FC"))
    images, labels = val_subset(splits, n)
    return FiltersState(model, images, labels, fc, st.l1_scores(model, scorer), count_parameters(model),
                        count_macs(model), val_accuracy(model, images, labels))


def point(state: FiltersState, block1: float, block2: float, block3: float) -> dict:
    """Prune a copy at the per-block ratios (L1, real removal), measure it; the state is untouched."""
    ratios = [float(r) for r in (block1, block2, block3)]
    counts = st.counts_for_ratios(state.model, ratios, state.fc_ratios)
    plan = st.plan_from_counts(state.model, *counts, scores=state.scores)  # = st.plan_l1, scores cached
    pruned = st.remove_channels(state.model, plan).eval()
    params, macs = count_parameters(pruned), count_macs(pruned)
    norms = [state.scores[name] for name in st.conv_layer_names(state.model)]
    return {
        "val_accuracy": val_accuracy(pruned, state.images, state.labels),
        "conv_ratios": ratios, "fc_ratios": list(state.fc_ratios),
        "conv_channels": list(plan.conv_channels), "fc_features": list(plan.fc_features),
        "widths": list(state.model.config.conv_channels),
        "removed_filters": {b: st.removed_indices(len(s), keep).tolist()
                            for b, s, keep in zip(BLOCKS, norms, plan.conv)},
        "filter_l1": {b: s.tolist() for b, s in zip(BLOCKS, norms)},
        "params": params, "macs": macs,
        "base_params": state.base_params, "base_macs": state.base_macs,
        "base_val_accuracy": state.base_accuracy, "images": len(state.labels),
        "summary": (f"{params:,} params ({params / state.base_params:.0%}) · {macs:,} MACs "
                    f"({macs / state.base_macs:.0%}) · channels {list(plan.conv_channels)}"),
    }


def reference(results_dir) -> pd.DataFrame:
    """02's committed curve (``l1_rXX``): ratio, params, MACs, accuracy right after pruning and
    after fine-tuning; empty when the results are missing."""
    table = read_records(results_dir, STAGE)
    if table.empty or "name" not in table:
        return pd.DataFrame()
    curve = table[table["name"].str.match(r"l1_r\d+$")]
    keep = [c for c in ("name", "ratio", "params", "macs", "val_accuracy_pruned", "val_accuracy",
                        "test_accuracy", "conv_channels", "fc_features", "fine_tune_epochs") if c in curve]
    return curve[keep].sort_values("params").reset_index(drop=True)


def draw(result: dict, reference: pd.DataFrame | None = None, fig=None):
    """Accuracy vs parameters beside 02's curve, and every block's filters by Σ|W| (red: removed)."""
    if fig is None:
        fig = plt.figure(figsize=(13, 7))
    fig.clear()
    grid = fig.add_gridspec(2, 3, height_ratios=[1.2, 1.0])
    ax_acc = fig.add_subplot(grid[0, :2])
    ax_size = fig.add_subplot(grid[0, 2])
    ref = reference if reference is not None else pd.DataFrame()
    if not ref.empty:
        ax_acc.plot(ref["params"], ref["test_accuracy"], "o-", color="C0",
                    label=f"02: after fine-tuning (test, {int(ref['fine_tune_epochs'].iloc[0])} epochs)"
                    if "fine_tune_epochs" in ref else "02: after fine-tuning (test)")
        if "val_accuracy_pruned" in ref:
            ax_acc.plot(ref["params"], ref["val_accuracy_pruned"], "s:", color="C1",
                        label="02: right after pruning (val)")
    ax_acc.plot(result["base_params"], result["base_val_accuracy"], "k*", ms=12, label="unpruned (val subset)")
    ax_acc.plot(result["params"], result["val_accuracy"], "o", ms=13, mfc="none", mec="C3", mew=2.5,
                label=f"live: no fine-tuning (val, {result['images']} imgs)")
    ax_acc.set(xscale="log", xlabel="parameters", ylabel="accuracy (%)", ylim=(0, 100),
               title=f"live: {result['val_accuracy']:.2f}% at {result['params']:,} parameters")
    ax_acc.legend(fontsize=8, loc="lower right")
    names = ["params", "MACs"]
    values = [result["params"] / result["base_params"], result["macs"] / result["base_macs"]]
    ax_size.bar(names, values, color=["C1", "C2"])
    for i, v in enumerate(values):
        ax_size.text(i, v, f"{v:.0%}", ha="center", va="bottom", fontsize=9)
    ax_size.set(ylim=(0, 1.1), ylabel="share of the unpruned model", title=f"{result['macs']:,} MACs")
    for i, block in enumerate(BLOCKS):
        ax = fig.add_subplot(grid[1, i])
        norms = Tensor(result["filter_l1"][block])
        removed = set(result["removed_filters"][block])
        keep = [j for j in range(len(norms)) if j not in removed]
        # draw_layer_filters takes a weight: the norms as an (n, 1) weight have these Σ|W|
        draw_layer_filters(ax, None, norms[:, None], keep, block)
        ax.set_title(f"{block}: {len(keep)}/{len(norms)} kept (red: removed)", fontsize=10)
    fig.suptitle(f"L1 filter pruning, ratios {result['conv_ratios']} (FC {result['fc_ratios']})", fontsize=11)
    # fixed margins: tight_layout would cost about a second per move
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.08, top=0.9, hspace=0.45, wspace=0.3)
    return fig
