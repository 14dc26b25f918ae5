"""Comparing every method from the recorded results: Pareto frontiers, budget queries, and the
picks along a frontier decided by the course's one verdict rule.

Reads the records through ``helpers.records`` (below this module); ``helpers.results``
(the README) imports ``frontier_markdown`` from here, never the reverse. Only the picks
(``frontier_walk``) look at models themselves: their per-image correctness on validation
(``validation_correct``), which a paired comparison needs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .paths import REPO_ROOT
from .records import format_spread, is_saved_model, read_results, read_speed
from .verdicts import PairedComparison, paired_comparison, sentence, verdict

STAGE_NAMES = {"01": "baseline", "02": "L1 filter pruning", "03": "Wanda / magnitude",
               "04": "Network Slimming", "05": "one-shot vs gradual", "06": "quantization",
               "07": "combined"}
# The method families in a fixed order: a family keeps its colour and marker in every figure,
# whichever families a figure happens to show.
TOPICS = ("baseline", "L1 filter pruning", "Wanda", "magnitude (03)", "Network Slimming",
          "one-shot (05)", "step-by-step / AGP", "quantization", "combined")
MARKERS = ("*", "o", "s", "D", "^", "v", "P", "X", "p", "h")  # filled markers only (seaborn cannot mix)


def topic_of(record: dict) -> str:
    """The method family a record belongs to in the comparison: its notebook's topic, with
    notebook 03 split into Wanda and magnitude and notebook 05 into one-shot and gradual."""
    notebook = record["stage"][:2]
    if notebook == "03":
        return "Wanda" if "wanda" in record.get("method", "").lower() else "magnitude (03)"
    if notebook == "05":
        return "step-by-step / AGP" if record.get("schedule") in ("linear", "agp") else "one-shot (05)"
    return STAGE_NAMES.get(notebook, record["stage"])


def topic_styles(topics) -> dict[str, tuple]:
    """Topic -> (colour, marker), fixed by the topic's place in ``TOPICS`` (topics not listed there
    follow in sorted order), so that every figure of the comparison draws a method alike."""
    names = list(TOPICS) + sorted(set(topics) - set(TOPICS))
    colours = sns.color_palette("tab10", n_colors=10)
    return {name: (colours[i % len(colours)], MARKERS[i % len(MARKERS)]) for i, name in enumerate(names)}


QUANTIZATION_ONLY = ("06",)  # notebooks whose models are quantized and never pruned


def weights_removed(record: dict, baseline_params: float) -> float:
    """The share of the baseline's weights a model no longer has: removed channels (fewer
    parameters) and pruned weights (zeros). A model that was only quantized (notebook 06) counts
    its missing parameters alone: its zeros are weights that rounded to 0, still stored and computed."""
    params = record.get("params", record["params_nonzero"])
    kept = params if record["stage"][:2] in QUANTIZATION_ONLY else record["params_nonzero"]
    return 1.0 - float(kept) / float(baseline_params)


def beyond_compiling(timed: dict | None) -> tuple[dict, str]:
    """What a file of ``speed.json`` buys beyond compiling: its speed-ups (``{"batch_N": {median, q1,
    q3}}``) against the torch.compile'd baseline, and how the file ran: ``"compiled"`` (its compiled
    copy: both sides compiled), ``"eager"`` (it could not be compiled: eager against the compiled
    baseline), or ``""`` with no speed-ups where the benchmark timed no compiled copies."""
    timed = timed or {}
    compiled = timed.get("compiled") or {}
    if compiled.get("speedup_vs_compiled"):
        return compiled["speedup_vs_compiled"], "compiled"
    if timed.get("speedup_vs_compiled"):
        return timed["speedup_vs_compiled"], "eager"
    if timed.get("weights_file") == timed.get("reference") and compiled.get("speedup"):
        return {b: {"median": 1.0, "q1": 1.0, "q3": 1.0} for b in compiled["speedup"]}, "compiled"
    return {}, ""


def records_frame(results_dir=REPO_ROOT / "results") -> pd.DataFrame:
    """All records of ``results/*.json`` as a table, with the notebook number, its topic, the
    latency columns ``latency_b1_ms`` / ``latency_b256_ms`` (NaN where not measured), the speed-ups
    ``speedup_b1`` / ``speedup_b256`` of ``speed.json`` (``python -m helpers.benchmark``; NaN where
    the file or its record is missing), ``speedup_vs_compiled_b1`` / ``_b256`` (with ``_q1``/``_q3``):
    the same against the compiled baseline (``beyond_compiling``; ``compiled_form`` says how the file
    ran; NaN before the benchmark timed compiled copies), ``weights_removed`` (``weights_removed``:
    pruned or removed, never a quantized model's rounded zeros), and ``smallest_file_bytes``: the
    smallest file the model was saved in (its ``.sparse`` file's ``sparse_size_bytes`` where that is
    smaller than ``size_bytes``; NaN where nothing was saved)."""
    records = read_results(results_dir)
    if not records:
        raise FileNotFoundError(f"no results in {results_dir}: run the notebooks first")
    frame = pd.DataFrame(records)
    frame["notebook"] = frame["stage"].str[:2]
    frame["topic"] = [topic_of(r) for r in records]
    latency = frame["latency_ms"].apply(lambda v: v if isinstance(v, dict) else {})
    frame["latency_b1_ms"] = latency.apply(lambda v: v.get("batch_1")).astype(float)
    frame["latency_b256_ms"] = latency.apply(lambda v: v.get("batch_256")).astype(float)
    try:
        speed = read_speed(results_dir)
    except FileNotFoundError:
        speed = {}
    for batch in ("1", "256"):
        for stat, suffix in (("median", ""), ("q1", "_q1"), ("q3", "_q3")):
            frame[f"speedup_b{batch}{suffix}"] = [
                speed[f]["speedup"].get(f"batch_{batch}", {}).get(stat) if isinstance(f, str) and f in speed else None
                for f in frame["weights_file"]]
            frame[f"speedup_b{batch}{suffix}"] = frame[f"speedup_b{batch}{suffix}"].astype(float)
    beyond = [beyond_compiling(speed.get(f)) if isinstance(f, str) else ({}, "") for f in frame["weights_file"]]
    frame["compiled_form"] = [form for _, form in beyond]
    frame["speedup_compiled_b256"] = [  # the file's compiled copy against the EAGER baseline: compiling and the method
        ((speed.get(f, {}).get("compiled") or {}).get("speedup") or {}).get("batch_256", {}).get("median", np.nan)
        if isinstance(f, str) else np.nan for f in frame["weights_file"]]
    for batch in ("1", "256"):
        for stat, suffix in (("median", ""), ("q1", "_q1"), ("q3", "_q3")):
            frame[f"speedup_vs_compiled_b{batch}{suffix}"] = [
                spreads.get(f"batch_{batch}", {}).get(stat, np.nan) for spreads, _ in beyond]
    baseline = frame.loc[frame["stage"] == "01_baseline", "params_nonzero"]
    if not baseline.empty:  # structured pruning shrinks the model instead of zeroing weights
        frame["weights_removed"] = [weights_removed(r, baseline.iloc[0]) for r in records]
    sizes = frame[[c for c in ("size_bytes", "sparse_size_bytes") if c in frame]].astype(float)
    frame["smallest_file_bytes"] = sizes.min(axis=1)  # NaN only where no file was saved
    return frame


def baseline_accuracy(frame: pd.DataFrame, column: str = "val_accuracy") -> float:
    """The dense baseline's accuracy in ``column``: from notebook 01's record, else from any record of
    the same weights file (the notebooks' re-measured baselines); a clear error when none has it."""
    if column not in frame:
        raise KeyError(f"no record has {column!r}: re-run the notebooks that record it")
    dense = frame[(frame["stage"] == "01_baseline") | (frame.get("weights_file") == "weights/01_baseline.pt")]
    values = dense[column].dropna()
    if values.empty:
        raise KeyError(f"no baseline record has {column!r}: re-run notebook 01")
    return float(values.iloc[0])


def pareto_mask(costs, accuracies) -> np.ndarray:
    """Which points are on the Pareto front (bool, in the input's order): a point is dominated when
    another has a cost at most its own and an accuracy at least its own, one of them strictly.
    Identical points do not dominate each other (both stay); of two equal costs the more accurate
    dominates."""
    c, a = np.asarray(costs, dtype=float), np.asarray(accuracies, dtype=float)
    if c.ndim != 1 or c.shape != a.shape:
        raise ValueError(f"costs and accuracies must be 1-D and of one length, got {c.shape} and {a.shape}")
    return np.array([not np.any((c <= c[i]) & (a >= a[i]) & ((c < c[i]) | (a > a[i]))) for i in range(len(c))],
                    dtype=bool)


def pareto_front(frame: pd.DataFrame, cost: str, higher_cost_is_better: bool = False,
                 accuracy: str = "test_accuracy", front: Callable = pareto_mask) -> pd.DataFrame:
    """Rows not dominated in (cost, ``accuracy``), by ascending cost: ``front(costs, accuracies)`` (the
    bool mask of ``pareto_mask``, or a learner's) decides. ``cost`` is minimised (maximised when
    ``higher_cost_is_better``, e.g. a speed-up)."""
    rows = frame.dropna(subset=[cost, accuracy])
    sign = -1.0 if higher_cost_is_better else 1.0
    keep = np.asarray(front(sign * rows[cost].to_numpy(dtype=float), rows[accuracy].to_numpy(dtype=float)),
                      dtype=bool)
    if keep.shape != (len(rows),):
        raise ValueError(f"a front mask needs one entry per row ({len(rows)}), got shape {keep.shape}")
    return rows[keep].sort_values(cost, kind="stable")


def within_budget(frame: pd.DataFrame, min_accuracy: float, by: str = "val_accuracy") -> dict:
    """The smallest (``smallest_file_bytes``) and the fastest (the highest batch-256 speed-up of
    ``speed.json``, else the lowest notebook latency) model with at least
    ``min_accuracy`` in column ``by`` -- **validation** accuracy unless told, so the choice never reads
    the test set (report the chosen row's ``test_accuracy``); records without it cannot be chosen.
    None where no model qualifies."""
    if by not in frame:
        return {"smallest": None, "fastest": None}
    ok = frame[frame[by] >= min_accuracy]
    sized = ok.dropna(subset=["smallest_file_bytes"])
    fastest = None
    if "speedup_b256" in ok and ok["speedup_b256"].notna().any():  # one benchmark run: speed.json
        timed = ok.dropna(subset=["speedup_b256"])
        fastest = timed.loc[timed["speedup_b256"].idxmax()]
    elif ok["latency_b256_ms"].notna().any():  # no speed.json: the notebooks' own latencies
        timed = ok.dropna(subset=["latency_b256_ms"])
        fastest = timed.loc[timed["latency_b256_ms"].idxmin()]
    return {"smallest": None if sized.empty else sized.loc[sized["smallest_file_bytes"].idxmin()],
            "fastest": fastest}



def frontier_targets(frame: pd.DataFrame, budget_pp: float = 1.0, min_smaller: float = 100.0,
                     min_fewer_params: float = 4.0, min_speedup: float = 2.5) -> pd.DataFrame:
    """The course's two frontier targets, each met or not by the best model **chosen on validation**
    (at most ``budget_pp`` below the baseline's validation accuracy; test accuracy reported):

    * a file ``min_smaller`` times smaller than the baseline's (the smallest file within budget);
    * a structured model (no zeros: channels really removed) with ``min_fewer_params`` times fewer
      parameters and a batch-256 speed-up of at least ``min_speedup`` (median of ``speed.json``);
      where none qualifies, the fastest structured model within budget is shown as the nearest miss.
    """
    base = frame[frame["weights_file"] == "weights/01_baseline.pt"].iloc[0]
    ok = frame[frame["val_accuracy"] >= baseline_accuracy(frame) - budget_pp]
    sized = ok.dropna(subset=["smallest_file_bytes"])
    structured = ok[(ok["sparsity"] == 0) & (ok["params"] < base["params"]) & ok["speedup_b256"].notna()]
    meets = structured[(base["params"] / structured["params"] >= min_fewer_params) & (structured["speedup_b256"] >= min_speedup)]
    picks = {f"file >= {min_smaller:g}× smaller": sized.loc[sized["smallest_file_bytes"].idxmin()] if len(sized) else None,
             f"structured >= {min_fewer_params:g}× fewer params, >= {min_speedup:g}× at b256":
                 (meets if len(meets) else structured).sort_values("speedup_b256").iloc[-1] if len(structured) else None}
    rows = []
    for target, row in picks.items():
        if row is None:
            rows.append({"target": target, "model": None, "met": False})
            continue
        smaller, fewer = base["size_bytes"] / row["smallest_file_bytes"], base["params"] / row["params"]
        met = smaller >= min_smaller if "file" in target else (fewer >= min_fewer_params and row["speedup_b256"] >= min_speedup)
        rows.append({"target": target, "model": f"{row['stage'][:2]} {row['name']}", "x smaller": round(smaller, 1),
                     "x fewer params": round(fewer, 2), "speedup b256": round(row["speedup_b256"], 2),
                     "speedup q1-q3": f"{row['speedup_b256_q1']:.2f}-{row['speedup_b256_q3']:.2f}",
                     "val acc": row["val_accuracy"], "test acc": row["test_accuracy"],
                     "test vs baseline (pp)": round(row["test_accuracy"] - base["test_accuracy"], 2), "met": bool(met)})
    return pd.DataFrame(rows)


def beyond_compiling_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per method family, the saved model that gains most over the compiled baseline at batch 256:
    its speed-up against the eager baseline, its compiled copy's against the eager baseline, and what
    it buys beyond compiling (against the compiled baseline; ``compiled_form`` says whether the file
    ran compiled or, where it cannot be compiled, eager). Empty before the benchmark timed compiled copies."""
    saved = frame[[is_saved_model(r) and r["topic"] != "baseline" for r in frame.to_dict("records")]]
    saved = saved.dropna(subset=["speedup_vs_compiled_b256"])
    if saved.empty:
        return pd.DataFrame()
    best = saved.loc[saved.groupby("topic", sort=False)["speedup_vs_compiled_b256"].idxmax()]
    table = best[["topic", "name", "test_accuracy", "speedup_b256", "speedup_compiled_b256", "speedup_vs_compiled_b256",
                  "speedup_vs_compiled_b256_q1", "speedup_vs_compiled_b256_q3", "compiled_form"]]
    return table.rename(columns={"speedup_b256": "vs eager baseline", "speedup_compiled_b256": "compiled, vs eager baseline",
                                 "speedup_vs_compiled_b256": "vs compiled baseline"}).reset_index(drop=True)


def frontier_markdown(results_dir=REPO_ROOT / "results", budget_pp: float = 1.0) -> str:
    """``frontier_targets`` of the records as a Markdown table (for the README), with Deep
    Compression's ratios beside the file target."""
    table = frontier_targets(records_frame(results_dir), budget_pp)
    lines = [f"**Frontier targets** (chosen on validation within {budget_pp:g} pp of the baseline; "
             "Deep Compression: 39× for LeNet-5, 40× for LeNet-300-100):", "",
             "| target | model | × smaller file | × fewer params | speed-up b256 (q1–q3) | test acc. (pp vs baseline) | met |",
             "|---|---|---:|---:|---:|---:|---|"]
    for _, r in table.iterrows():
        if r["model"] is None:
            lines.append(f"| {r['target']} | none within budget | | | | | no |")
            continue
        speed = "–" if pd.isna(r["speedup b256"]) else format_spread(
            r["speedup b256"], *(float(q) for q in r["speedup q1-q3"].split("-")))
        lines.append(f"| {r['target'].replace('>=', '≥')} | {r['model']} | {r['x smaller']:.1f}× | {r['x fewer params']:.2f}× "
                     f"| {speed} | {r['test acc']:.2f} ({r['test vs baseline (pp)']:+.2f}) | {'yes' if r['met'] else 'no'} |")
    return "\n".join(lines)


def frontier_plot(frame: pd.DataFrame, cost: str, label: str, higher_cost_is_better=False,
                  log_x=False, ax=None, highlight=None, front: Callable = pareto_mask):
    """All models (colour and marker = notebook topic, the same in every figure: ``topic_styles``)
    with each topic's Pareto frontier (``front``: ``pareto_mask`` or a learner's) as a line."""
    rows = frame.dropna(subset=[cost])
    ax = ax or plt.subplots(figsize=(9, 5.5))[1]
    styles = topic_styles(frame["topic"].unique())
    shown = [topic for topic in styles if topic in set(rows["topic"])]
    sns.scatterplot(data=rows, x=cost, y="test_accuracy", hue="topic", style="topic", hue_order=shown,
                    style_order=shown, palette={t: styles[t][0] for t in shown},
                    markers={t: styles[t][1] for t in shown}, s=45, alpha=0.6, ax=ax)
    for topic, group in rows.groupby("topic", sort=False):
        line = pareto_front(group, cost, higher_cost_is_better, front=front)
        ax.plot(line[cost], line["test_accuracy"], "-", color=styles[topic][0], lw=1.5)
    if highlight is not None:
        ax.scatter([highlight[cost]], [highlight["test_accuracy"]], s=250, facecolors="none",
                   edgecolors="black", linewidths=2, zorder=5)
    if log_x:
        ax.set_xscale("log")
    ax.set(xlabel=label, ylabel="test accuracy (%)")
    ax.legend(fontsize=8, loc="lower left" if not higher_cost_is_better else "lower left")
    return ax


def summary_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per saved model (records with a weights file): the models a reader can load, with
    ``sparsity`` (its share of zeros) beside ``weights_removed`` (a quantized model's zeros not counted)."""
    cols = ["notebook", "name", "method", "test_accuracy", "sparsity", "weights_removed", "params_nonzero", "weight_bits",
            "activation_bits", "size_bytes", "smallest_file_bytes", "latency_b1_ms", "latency_b256_ms",
            "weights_file"]
    saved = frame[[is_saved_model(r) for r in frame.to_dict("records")]]
    baseline_size = frame.loc[frame["stage"] == "01_baseline", "size_bytes"]
    table = saved[[c for c in cols if c in saved]].copy()
    if not baseline_size.empty:
        table["smaller_than_baseline"] = (float(baseline_size.iloc[0]) / table["smallest_file_bytes"]).round(1)
    return table.reset_index(drop=True)


# ------------------------------------------------------------------ picks through the verdict rule
def interval_verdict(ci95_pp, seed_differences_pp=()) -> str:
    """``helpers.verdicts.verdict`` from an interval and the seeds' differences alone: ``"a"`` when
    the interval (A − B, pp) lies above 0 and every seed's difference is positive, ``"b"`` the
    mirror image, else ``"tie"``."""
    low, high = (float(v) for v in ci95_pp)
    return verdict(PairedComparison(0.0, (low, high), 1.0, 0, 0, 1), seed_differences_pp)


def validation_correct(rows: pd.DataFrame, batches, root=REPO_ROOT, device=None) -> dict:
    """``weights_file`` -> per-image correctness (bool tensor) on ``batches`` of each row's saved
    model, loaded through ``helpers.load`` (each file once)."""
    from .storage import load
    from .training import per_image_correct

    return {f: per_image_correct(load(Path(root) / f), batches, device) for f in dict.fromkeys(rows["weights_file"])}


def frontier_walk(front: pd.DataFrame, correct: dict, cost: str, higher_cost_is_better: bool = False,
                  decide: Callable = interval_verdict) -> pd.DataFrame:
    """Along a frontier (``pareto_front`` on validation), cheapest ``cost`` first, each dearer model is kept
    only when it beats the last kept one by the rule (``decide(interval, [])``: the paired interval
    of its validation accuracy minus the kept one's, from ``correct[weights_file]``); otherwise it is
    a tie and the cheaper model stays. One row per frontier model: its ``comparison`` with the kept
    one before it (None for the first), ``against`` (that model's name), ``verdict`` and ``kept``."""
    walk_columns = ["against", "comparison", "verdict", "kept"]
    front = front.drop(columns=[c for c in walk_columns if c in front.columns])  # a record's own "kept" etc.
    rows, last = [], None
    for _, row in front.sort_values(cost, ascending=not higher_cost_is_better, kind="stable").iterrows():
        if last is None:
            rows.append({**row, "against": None, "comparison": None, "verdict": None, "kept": True})
            last = row
            continue
        comparison = paired_comparison(correct[row["weights_file"]], correct[last["weights_file"]])
        decided = decide(comparison.ci95_pp, [])
        rows.append({**row, "against": last["name"], "comparison": comparison, "verdict": decided,
                     "kept": decided == "a"})
        last = row if decided == "a" else last
    return pd.DataFrame(rows, columns=[*front.columns, *walk_columns])


def walk_sentences(walk: pd.DataFrame, axis: str) -> list[str]:
    """One sentence per step of a ``frontier_walk`` (``helpers.verdicts.sentence``: its numbers and verdict)."""
    return [sentence(f"{axis}: {r['name']} over {r['against']}", r["name"], r["against"], r["comparison"], r["verdict"])
            for _, r in walk.iterrows() if r["comparison"] is not None]


def best_within(walk: pd.DataFrame, cost: str, limit: float, higher_cost_is_better: bool = False):
    """The pick of a cost budget: the last model kept by ``frontier_walk`` whose ``cost`` is within
    ``limit`` (at most it; at least it when ``higher_cost_is_better``), or None."""
    within = walk[(walk[cost] >= limit) if higher_cost_is_better else (walk[cost] <= limit)]
    kept = within[within["kept"].astype(bool)]
    return None if kept.empty else kept.iloc[-1]
