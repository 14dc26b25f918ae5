"""Live view of notebook 05: where an AGP schedule is at pruning step k, and what that mask does.

The AGP (cubic) trajectory ``s_k = s_f (1 - (1 - k/T)^3)`` comes from
``helpers.pruning.schedules.PruningSchedule`` (``T`` = 05's ``PRUNE_STEPS`` pruning events after the
one at step 0). At the chosen step, the model-wide global mask of 05's ranking (LAMP, which 05 chose
on validation; magnitude as the alternative; first conv and last layer dense) at sparsity ``s_k`` is
applied **one-shot to the loaded model**, and its per-layer sparsities and accuracy on the fixed
validation subset are measured. In the real run the weights also train between events, so the
reference curves (05's committed runs, fine-tuned) lie above the live point. ``prepare(..., agp=fn)``
draws the trajectory with a learner's ``agp_sparsity`` once it passed its check.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import matplotlib.pyplot as plt
import pandas as pd
import torch
from torch import Tensor, nn

from ..counting import layer_sparsity, sparsity as model_sparsity
from ..pruning.schedules import PruningSchedule
from ..pruning.ranking import GlobalRanking
from ..pruning.unstructured import apply_masks, global_ranking, is_learners
from . import VAL_IMAGES, mark_live_point, read_records, val_accuracy, val_subset

STAGE = "05_schedules"
PRUNE_STEPS = 12            # notebook 05's PRUNE_STEPS: pruning events after the one at step 0
SCORES = ("lamp", "magnitude")
LAYERS = "inner"            # 05 keeps the first conv and the last layer dense

CONTROLS = {
    "target": {"kind": "float", "min": 0.5, "max": 0.98, "step": 0.01, "value": 0.95,
               "headless": [0.5, 0.9, 0.98]},
    "step": {"kind": "int", "min": 0, "max": PRUNE_STEPS, "step": 1, "value": PRUNE_STEPS,
             "headless": [0, PRUNE_STEPS // 2, PRUNE_STEPS]},
    "score": {"kind": "choice", "options": list(SCORES), "value": "lamp", "headless": list(SCORES)},
}


@dataclass(frozen=True)
class SchedulesState:
    """The loaded model, the subset, and each score's global ranking of the model's weights."""

    model: nn.Module
    images: Tensor
    labels: Tensor
    rankings: dict[str, GlobalRanking]
    base_accuracy: float
    agp: Callable | None = None  # the AGP curve (t, T, final, initial) -> sparsity; None: cubic_sparsity


def prepare(model: nn.Module, splits, n: int = VAL_IMAGES, agp: Callable | None = None) -> SchedulesState:
    """The state of the live view: ``model`` in eval mode, its rankings, the first ``n`` validation
    images; ``agp``: the AGP curve the trajectory follows (a learner's ``agp_sparsity``; None: the course's)."""
    model = model.eval()
    images, labels = val_subset(splits, n)
    rankings = {score: global_ranking(model, score, LAYERS, model_wide=True) for score in SCORES}
    return SchedulesState(model, images, labels, rankings, val_accuracy(model, images, labels), agp)


def agp_schedule(target: float, steps: int = PRUNE_STEPS, agp: Callable | None = None) -> PruningSchedule:
    """AGP to ``target`` in ``steps`` events, one per time unit (event k at time k), on the curve ``agp``."""
    return PruningSchedule("agp", float(target), epochs=steps, prune_steps=steps, prune_epochs=steps, agp=agp)


def trajectory(target: float, steps: int = PRUNE_STEPS, agp: Callable | None = None) -> list[float]:
    """The sparsity after each pruning event 0..steps of the AGP schedule (on the curve ``agp``)."""
    return [s for _, s in agp_schedule(target, steps, agp).events(steps_per_epoch=1)]


def point(state: SchedulesState, target: float, step: int, score: str = "lamp") -> dict:
    """The schedule's sparsity at ``step``, that mask applied one-shot to a copy, measured."""
    if score not in state.rankings:
        raise ValueError(f"score must be one of {list(state.rankings)}, got {score!r}")
    if isinstance(step, bool) or int(step) != step or not 0 <= step <= PRUNE_STEPS:
        raise ValueError(f"step must be an integer from 0 to {PRUNE_STEPS}, got {step!r}")
    schedule = agp_schedule(target, agp=state.agp)
    path = [s for _, s in schedule.events(steps_per_epoch=1)]
    reached = path[int(step)]
    pruned = apply_masks(copy.deepcopy(state.model).eval(), state.rankings[score].masks(reached))
    per_layer = layer_sparsity(pruned)
    accuracy = val_accuracy(pruned, state.images, state.labels)
    return {
        "val_accuracy": accuracy, "target": float(target), "step": int(step), "steps": PRUNE_STEPS,
        "score": score, "scheduled_sparsity": reached, "sparsity": model_sparsity(pruned),
        "trajectory": path, "layer_sparsity": per_layer, "agp": "yours" if is_learners(state.agp) else "the course's",
        "curve": [(t, schedule.sparsity_at(t)) for t in torch.linspace(0, PRUNE_STEPS, 121).tolist()],
        "base_val_accuracy": state.base_accuracy, "images": len(state.labels),
        "summary": (f"step {int(step)}/{PRUNE_STEPS}: sparsity {reached:.1%} of target {float(target):.0%} · "
                    f"{score} mask one-shot, no fine-tuning"),
    }


def reference(results_dir) -> pd.DataFrame:
    """05's committed runs: one row per schedule (``kind``: oneshot/linear/agp, or ``no fine-tuning``
    for the one-shot global-inner magnitude sweep), ``budget``, ``target_sparsity``, accuracies."""
    table = read_records(results_dir, STAGE)
    if table.empty or "target_sparsity" not in table:
        return pd.DataFrame()
    runs = table[table["schedule"].notna()] if "schedule" in table else table.iloc[:0]
    runs = runs.assign(kind=runs["schedule"] if "schedule" in runs else None)
    sweep = table[table["name"].str.startswith("one-shot · global · inner")]
    sweep = sweep.assign(kind="no fine-tuning", budget="none")
    keep = ["name", "kind", "budget", "target_sparsity", "sparsity", "test_accuracy", "val_accuracy", "epochs"]
    both = pd.concat([runs, sweep], ignore_index=True)
    return both[[c for c in keep if c in both]].sort_values(["kind", "budget", "target_sparsity"]
                                                            ).reset_index(drop=True)


_LABELS = {"oneshot": "one-shot + fine-tune", "linear": "step by step", "agp": "AGP",
           "no fine-tuning": "one-shot magnitude, no fine-tuning"}


def draw(result: dict, reference: pd.DataFrame | None = None, fig=None):
    """The AGP trajectory with the step marked, the per-layer sparsities of that mask, and accuracy
    vs sparsity beside 05's runs."""
    if fig is None:
        fig = plt.figure(figsize=(15, 4.4))
    fig.clear()
    ax_t, ax_l, ax_a = fig.subplots(1, 3)
    steps, path = result["steps"], result["trajectory"]
    curve = result.get("curve") or [(t, agp_schedule(result["target"], steps).sparsity_at(t))
                                    for t in torch.linspace(0, steps, 121).tolist()]
    ax_t.plot(*zip(*curve), color="C0", lw=1, label="AGP (your agp_sparsity)" if result.get("agp") == "yours"
              else "AGP (cubic)")
    ax_t.plot(range(steps + 1), path, "o", color="C0", ms=4, label="pruning events")
    ax_t.plot(result["step"], result["scheduled_sparsity"], "o", ms=13, mfc="none", mec="C3", mew=2.5,
              label=f"step {result['step']}: {result['scheduled_sparsity']:.1%}")
    ax_t.axhline(result["target"], color="k", ls=":", lw=1)
    ax_t.set(xlabel=f"pruning event (of {steps})", ylabel="sparsity", ylim=(0, 1), title="sparsity trajectory")
    ax_t.legend(fontsize=8, loc="lower right")
    names = list(result["layer_sparsity"])
    short = [".".join(n.split(".")[-2:]).replace(".conv", "") for n in names]
    values = [result["layer_sparsity"][n] for n in names]
    ax_l.bar(short, values, color="C2")
    for i, v in enumerate(values):
        ax_l.text(i, v, f"{v:.0%}", ha="center", va="bottom", fontsize=8)
    ax_l.set(ylim=(0, 1.08), ylabel="sparsity of the layer",
             title=f"per layer, {result['score']} mask (model {result['sparsity']:.1%})")
    ax_l.tick_params(axis="x", labelsize=8, rotation=30)
    ref = reference if reference is not None else pd.DataFrame()
    if not ref.empty:
        for i, ((kind, budget), part) in enumerate(ref.groupby(["kind", "budget"], sort=False)):
            style = "*" if budget == "long" else ("x:" if kind == "no fine-tuning" else "o-")
            ax_a.plot(part["target_sparsity"], part["test_accuracy"], style, color=f"C{i}",
                      ms=9 if budget == "long" else 5,
                      label=f"05: {_LABELS.get(kind, kind)}" + ("" if budget == "none" else f" ({budget})"))
    mark_live_point(ax_a, result, "sparsity", "dense (val subset)", "live: one-shot, no fine-tuning")
    ax_a.set(xlabel="sparsity", ylabel="accuracy (%) (05: test)", ylim=(0, 100), xlim=(-0.02, 1.0),
             title=f"live: {result['val_accuracy']:.2f}% at {result['sparsity']:.1%}")
    ax_a.legend(fontsize=7, loc="lower left")
    # fixed margins: tight_layout would cost about a second per move
    fig.subplots_adjust(left=0.05, right=0.98, bottom=0.18, top=0.9, wspace=0.25)
    return fig
