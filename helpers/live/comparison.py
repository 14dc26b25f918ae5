"""Live view of notebook 08: an accuracy budget picks the smallest and the fastest model, from results only.

The budget is the accuracy a model may lose against the dense baseline, in percentage points. The
loss is measured on the validation split where a record has a validation accuracy (and the
baseline's validation accuracy is recorded too), else on the test set: choosing on validation keeps
the test set for reporting. No model is run; ``model`` and ``splits`` of ``prepare`` are unused.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..comparison import frontier_plot, records_frame, within_budget
from ..paths import REPO_ROOT
from . import figure_axes

BASELINE_FILE = "weights/01_baseline.pt"
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


def selection_frame(frame: pd.DataFrame) -> tuple[pd.DataFrame, float, float | None]:
    """``frame`` with ``accuracy_loss_pp`` (validation where recorded, else test), ``selected_on``
    and ``budget_accuracy`` (baseline test accuracy minus that loss), plus the baseline accuracies."""
    baseline = frame[frame["stage"] == "01_baseline"]
    if baseline.empty:
        raise ValueError("the results hold no 01_baseline record: the budget is relative to it")
    baseline_test = float(baseline["test_accuracy"].iloc[0])
    val = frame["val_accuracy"] if "val_accuracy" in frame else pd.Series(float("nan"), index=frame.index)
    of_baseline = val[(frame["weights_file"] == BASELINE_FILE) & val.notna()]
    baseline_val = float(of_baseline.iloc[0]) if not of_baseline.empty else None
    on_val = val.notna() & (baseline_val is not None)
    frame = frame.copy()
    frame["selected_on"] = on_val.map({True: "validation", False: "test"})
    frame["accuracy_loss_pp"] = (baseline_test - frame["test_accuracy"]).where(~on_val, (baseline_val or 0.0) - val)
    frame["budget_accuracy"] = baseline_test - frame["accuracy_loss_pp"]
    return frame, baseline_test, baseline_val


def prepare(model=None, splits=None, results_dir=REPO_ROOT / "results") -> State:
    """The records of ``results_dir`` ready for budget queries."""
    return State(*selection_frame(records_frame(Path(results_dir))))


def _describe(row) -> dict | None:
    if row is None:
        return None
    described = {key: (None if pd.isna(row.get(key)) else row.get(key)) for key in
                 ("name", "topic", "test_accuracy", "val_accuracy", "accuracy_loss_pp", "selected_on", "size_bytes",
                  "latency_b256_ms")}
    return described | {"row": row.name}


def point(state: State, max_loss_pp: float = 1.0) -> dict:
    """The smallest and the fastest model losing at most ``max_loss_pp`` points; ``val_accuracy`` is
    the smallest model's validation accuracy where recorded (None otherwise)."""
    if not max_loss_pp >= 0:
        raise ValueError(f"the accuracy budget is a loss in percentage points >= 0, got {max_loss_pp!r}")
    best = within_budget(state.frame, state.baseline_test - max_loss_pp - 1e-9, by="budget_accuracy")
    smallest, fastest = _describe(best["smallest"]), _describe(best["fastest"])
    qualifying = int((state.frame["accuracy_loss_pp"] <= max_loss_pp + 1e-9).sum())
    return {"val_accuracy": smallest["val_accuracy"] if smallest else None, "max_loss_pp": float(max_loss_pp),
            "min_test_accuracy": state.baseline_test - max_loss_pp, "models_within": qualifying,
            "smallest_name": smallest["name"] if smallest else None,
            "smallest_bytes": smallest["size_bytes"] if smallest else None,
            "fastest_name": fastest["name"] if fastest else None,
            "smallest": smallest, "fastest": fastest, "frame": state.frame}


def reference(results_dir=REPO_ROOT / "results") -> pd.DataFrame:
    """All records (the frontiers drawn are the reference); empty when there are none."""
    try:
        return records_frame(Path(results_dir))
    except FileNotFoundError:
        return pd.DataFrame()


def draw(result: dict, reference: pd.DataFrame = None, fig=None):
    """Bytes on disk and batch-256 latency vs test accuracy, every topic's frontier, the chosen
    models circled and the budget line."""
    fig, (ax_size, ax_time) = figure_axes(fig, 2, figsize=(15, 5))
    frame = result["frame"]
    names = {"smallest": result["smallest"], "fastest": result["fastest"]}
    for ax, key, cost, label in ((ax_size, "smallest", "size_bytes", "bytes on disk (log)"),
                                 (ax_time, "fastest", "latency_b256_ms", "latency b256 (ms, log)")):
        chosen = names[key]
        highlight = None if chosen is None else frame.loc[chosen["row"]]
        frontier_plot(frame, cost, label, log_x=True, ax=ax, highlight=highlight)
        ax.axhline(result["min_test_accuracy"], ls=":", color="grey")
        text = "none" if chosen is None else (f"{chosen['name']} ({chosen['accuracy_loss_pp']:+.2f} pp lost on "
                                               f"{chosen['selected_on']})")
        ax.set_title(f"{key} within {result['max_loss_pp']:.2f} pp: {text}", fontsize=9)
    fig.tight_layout()
    return fig
