"""Live view of notebook 08: an accuracy budget picks the smallest and the fastest model, from results only.

The budget is the validation accuracy a model may lose against the dense baseline's validation
accuracy, in percentage points: choosing on validation keeps the test set for reporting (the chosen
models' test accuracy is reported). Records without ``val_accuracy`` cannot be chosen. "Fastest"
is the largest batch-256 speed-up of ``results/speed.json`` where that file exists (matched by
``weights_file``), else the lowest ``latency_b256_ms``. No model is run; ``model`` and ``splits`` of
``prepare`` are unused. The frontiers drawn come from ``front`` (08 passes ``use("pareto_front", ...)``:
the learner's function once it passes its check).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from ..comparison import baseline_accuracy, frontier_plot, pareto_mask, records_frame, within_budget
from ..paths import REPO_ROOT
from ..records import read_speed
from . import figure_axes

CONTROLS = {
    "max_loss_pp": {"kind": "float", "min": 0.0, "max": 5.0, "step": 0.05, "value": 1.0,
                    "headless": [0.0, 0.5, 1.0, 5.0]},
}


@dataclass
class State:
    """The records table with the selection columns, and the baseline's accuracies."""

    frame: pd.DataFrame
    baseline_test: float
    baseline_val: float | None
    front: Callable = pareto_mask  # (costs, accuracies) -> bool mask of the Pareto front


def speedups(results_dir) -> dict[str, float]:
    """weights_file -> median batch-256 speed-up from ``<results_dir>/speed.json`` (empty when missing)."""
    if not (Path(results_dir) / "speed.json").is_file():
        return {}
    return {name: float(r["speedup"]["batch_256"]["median"]) for name, r in read_speed(results_dir).items()
            if (r.get("speedup") or {}).get("batch_256")}


def selection_frame(frame: pd.DataFrame, speedup: dict[str, float] | None = None
                    ) -> tuple[pd.DataFrame, float, float | None]:
    """``frame`` with ``accuracy_loss_pp`` (baseline validation minus the record's validation accuracy;
    NaN where either is missing: such a record cannot be chosen) and ``speedup_b256`` (from
    ``speedup``, NaN where unknown), plus the baseline's test and validation accuracies."""
    baseline = frame[frame["stage"] == "01_baseline"]
    if baseline.empty:
        raise ValueError("the results hold no 01_baseline record: the budget is relative to it")
    baseline_test = float(baseline["test_accuracy"].iloc[0])
    try:
        baseline_val = baseline_accuracy(frame, "val_accuracy")
    except KeyError:
        baseline_val = None
    frame = frame.copy()
    if "val_accuracy" not in frame:
        frame["val_accuracy"] = float("nan")
    frame["accuracy_loss_pp"] = (baseline_val if baseline_val is not None else float("nan")) - frame["val_accuracy"]
    frame["speedup_b256"] = frame["weights_file"].map(speedup or {}).astype(float)
    return frame, baseline_test, baseline_val


def prepare(model=None, splits=None, results_dir=REPO_ROOT / "results", front: Callable = pareto_mask) -> State:
    """The records of ``results_dir`` (and its speed-ups) ready for budget queries; ``front`` draws
    the frontiers."""
    return State(*selection_frame(records_frame(Path(results_dir)), speedups(results_dir)), front)


def _describe(row) -> dict | None:
    if row is None:
        return None
    described = {key: (None if pd.isna(row.get(key)) else row.get(key)) for key in
                 ("name", "topic", "test_accuracy", "val_accuracy", "accuracy_loss_pp", "size_bytes",
                  "latency_b256_ms", "speedup_b256")}
    return described | {"row": row.name}


def choose(frame: pd.DataFrame, min_val_accuracy: float) -> dict:
    """``within_budget`` on validation, "fastest" by the largest known speed-up where any qualifying
    record has one (else by batch-256 latency)."""
    best = within_budget(frame, min_val_accuracy)
    ok = frame[frame["val_accuracy"] >= min_val_accuracy].dropna(subset=["speedup_b256"])
    if not ok.empty:
        best["fastest"] = ok.loc[ok["speedup_b256"].idxmax()]
    return best


def point(state: State, max_loss_pp: float = 1.0) -> dict:
    """The smallest and the fastest model losing at most ``max_loss_pp`` points of validation accuracy;
    ``val_accuracy`` is the smallest model's (None when none qualifies)."""
    if not max_loss_pp >= 0:
        raise ValueError(f"the accuracy budget is a loss in percentage points >= 0, got {max_loss_pp!r}")
    if state.baseline_val is None:
        best, qualifying = {"smallest": None, "fastest": None}, 0
    else:
        best = choose(state.frame, state.baseline_val - max_loss_pp - 1e-9)
        qualifying = int((state.frame["accuracy_loss_pp"] <= max_loss_pp + 1e-9).sum())
    smallest, fastest = _describe(best["smallest"]), _describe(best["fastest"])
    return {"val_accuracy": smallest["val_accuracy"] if smallest else None, "max_loss_pp": float(max_loss_pp),
            "min_val_accuracy": None if state.baseline_val is None else state.baseline_val - max_loss_pp,
            "models_within": qualifying,
            "smallest_name": smallest["name"] if smallest else None,
            "smallest_bytes": smallest["size_bytes"] if smallest else None,
            "smallest_test_accuracy": smallest["test_accuracy"] if smallest else None,
            "fastest_name": fastest["name"] if fastest else None,
            "fastest_test_accuracy": fastest["test_accuracy"] if fastest else None,
            "smallest": smallest, "fastest": fastest, "frame": state.frame, "front": state.front}


def reference(results_dir=REPO_ROOT / "results") -> pd.DataFrame:
    """All records (the frontiers drawn are the reference); empty when there are none."""
    try:
        return records_frame(Path(results_dir))
    except FileNotFoundError:
        return pd.DataFrame()


def draw(result: dict, reference: pd.DataFrame = None, fig=None):
    """Bytes on disk and batch-256 latency vs test accuracy, every topic's frontier, the chosen
    models circled (chosen on validation)."""
    fig, (ax_size, ax_time) = figure_axes(fig, 2, figsize=(15, 5))
    frame = result["frame"]
    names = {"smallest": result["smallest"], "fastest": result["fastest"]}
    for ax, key, cost, label in ((ax_size, "smallest", "size_bytes", "bytes on disk (log)"),
                                 (ax_time, "fastest", "latency_b256_ms", "latency b256 (ms, log)")):
        chosen = names[key]
        highlight = None if chosen is None else frame.loc[chosen["row"]]
        frontier_plot(frame, cost, label, log_x=True, ax=ax, highlight=highlight, front=result.get("front", pareto_mask))
        text = "none" if chosen is None else (f"{chosen['name']} ({chosen['accuracy_loss_pp']:+.2f} pp lost on "
                                               f"validation, test {chosen['test_accuracy']:.2f}%)")
        ax.set_title(f"{key} within {result['max_loss_pp']:.2f} pp: {text}", fontsize=9)
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.11, top=0.93, wspace=0.15)  # tight_layout: ~0.3 s a move
    return fig
