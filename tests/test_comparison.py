"""The comparison of notebook 08: topics, Pareto frontiers and budget queries on hand-made records."""
import json

import pandas as pd
import pytest

from helpers.comparison import (TOPICS, baseline_accuracy, pareto_front, records_frame,
                                summary_table, topic_of, topic_styles, within_budget)


def rec(stage, name, acc, size, params, latency=None, **extra):
    return {"stage": stage, "name": name, "method": extra.pop("method", name), "test_accuracy": acc,
            "size_bytes": size, "params_nonzero": params, "weights_file": extra.pop("weights_file", None),
            "sparsity": 0.0, "weight_bits": 32, "activation_bits": None,
            "latency_ms": latency, "quick": False, **extra}


@pytest.fixture
def results_dir(tmp_path):
    files = {
        "01_baseline": [rec("01_baseline", "baseline", 93.5, 1000, 100, {"batch_1": 1.0, "batch_256": 50.0},
                            val_accuracy=94.0)],
        "02_l1": [rec("02_l1", "l1_r50", 93.0, 300, 25, {"batch_1": 0.5, "batch_256": 20.0},
                      weights_file="weights/02_l1_r50.pt", val_accuracy=93.6),
                  rec("02_l1", "baseline again", 93.5, 1000, 100, weights_file="weights/01_baseline.pt")],
        "03_wanda": [rec("03_wanda", "w", 92.0, 1000, 10, method="wanda per-row"),
                     rec("03_wanda", "m", 91.0, 1000, 10, method="magnitude per-row")],
        "05_schedules": [rec("05_schedules", "agp", 93.2, 1000, 5, schedule="agp"),
                         rec("05_schedules", "os", 92.5, 1000, 5, schedule="oneshot"),
                         rec("05_schedules", "os0", 60.0, 1000, 5)],
    }
    for stage, records in files.items():
        (tmp_path / f"{stage}.json").write_text(json.dumps(records))
    return tmp_path


def test_records_frame_splits_topics_and_computes_weights_removed(results_dir):
    frame = records_frame(results_dir).set_index("name")
    assert frame.loc["w", "topic"] == "Wanda" and frame.loc["m", "topic"] == "magnitude (03)"
    assert frame.loc["agp", "topic"] == "step-by-step / AGP" and frame.loc["os", "topic"] == "one-shot (05)"
    assert frame.loc["os0", "topic"] == "one-shot (05)" and frame.loc["l1_r50", "topic"] == "L1 filter pruning"
    assert frame.loc["l1_r50", "weights_removed"] == pytest.approx(0.75)
    assert frame.loc["l1_r50", "latency_b256_ms"] == 20.0 and pd.isna(frame.loc["w", "latency_b256_ms"])


def test_pareto_front_drops_exactly_the_dominated_rows():
    frame = pd.DataFrame({"name": list("abcd"), "cost": [1, 2, 3, 2], "test_accuracy": [90, 92, 91, 89]})
    assert list(pareto_front(frame, "cost")["name"]) == ["a", "b"]          # c and d are dominated by b
    assert list(pareto_front(frame, "cost", higher_cost_is_better=True)["name"]) == ["b", "c"]


def test_within_budget_picks_smallest_and_fastest_above_the_accuracy(results_dir):
    frame = records_frame(results_dir)
    best = within_budget(frame, 93.5)
    assert best["smallest"]["name"] == "l1_r50" and best["fastest"]["name"] == "l1_r50"
    assert within_budget(frame, 99.0) == {"smallest": None, "fastest": None}


def test_within_budget_chooses_on_validation_never_on_test(results_dir):
    (results_dir / "07_c.json").write_text(json.dumps([
        rec("07_c", "test_lucky", 93.4, 100, 20, {"batch_1": 0.1, "batch_256": 2.0}, val_accuracy=92.0),
        rec("07_c", "no_val", 93.4, 50, 20, {"batch_1": 0.1, "batch_256": 1.0})]))
    best = within_budget(records_frame(results_dir), baseline_accuracy(records_frame(results_dir)) - 1.0)
    assert best["smallest"]["name"] == "l1_r50" and best["fastest"]["name"] == "l1_r50"


def test_smallest_file_counts_the_sparse_file(results_dir):
    (results_dir / "03_s.json").write_text(json.dumps([
        rec("03_s", "sparse90", 93.0, 1000, 10, method="magnitude per-row", sparse_size_bytes=120,
            val_accuracy=93.8)]))
    frame = records_frame(results_dir).set_index("name", drop=False)
    assert frame.loc["sparse90", "smallest_file_bytes"] == 120
    assert frame.loc["l1_r50", "smallest_file_bytes"] == 300 and frame.loc["os0", "smallest_file_bytes"] == 1000
    assert within_budget(frame, 93.5)["smallest"]["name"] == "sparse90"


def test_baseline_accuracy_falls_back_to_a_re_measured_baseline(results_dir):
    frame = records_frame(results_dir)
    assert baseline_accuracy(frame) == 94.0
    frame.loc[frame["stage"] == "01_baseline", "val_accuracy"] = float("nan")
    frame.loc[frame["name"] == "baseline again", "val_accuracy"] = 94.2
    assert baseline_accuracy(frame) == 94.2
    with pytest.raises(KeyError, match="val_accuracy"):
        baseline_accuracy(frame.drop(columns="val_accuracy"))


def test_each_topic_keeps_its_style_whatever_else_is_shown():
    every = topic_styles(TOPICS)
    some = topic_styles(["quantization", "combined", "09_new"])
    assert all(some[t] == every[t] for t in ("quantization", "combined"))
    assert len({every[t][0] for t in TOPICS}) == len(TOPICS) and len({every[t][1] for t in TOPICS}) == len(TOPICS)
    assert some["09_new"] not in every.values()


def test_topic_of_unknown_stage_falls_back_to_its_name():
    assert topic_of({"stage": "09_new"}) == "09_new"


def test_records_frame_without_results_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the notebooks"):
        records_frame(tmp_path)


def test_summary_table_lists_each_notebooks_own_saved_models(results_dir):
    (results_dir / "04_no_weights_key.json").write_text(json.dumps([rec("04_x", "bare", 90.0, 1000, 100)]))
    table = summary_table(records_frame(results_dir))  # weights_file is NaN for the record without it
    assert list(table["name"]) == ["l1_r50"]
    assert table.loc[0, "smaller_than_baseline"] == pytest.approx(1000 / 300, abs=0.05)



def test_speedups_come_from_speed_json_when_the_file_was_benchmarked(results_dir):
    speed = [{"weights_file": "weights/02_l1_r50.pt", "speedup": {"batch_1": {"median": 1.5, "q1": 1.4, "q3": 1.6},
                                                                   "batch_256": {"median": 2.5, "q1": 2.4, "q3": 2.6}}}]
    (results_dir / "speed.json").write_text(json.dumps(speed))
    frame = records_frame(results_dir).set_index("name")
    assert frame.loc["l1_r50", "speedup_b1"] == 1.5 and frame.loc["l1_r50", "speedup_b256"] == 2.5
    assert pd.isna(frame.loc["w", "speedup_b256"])
    assert frame.loc["l1_r50", "speedup_b256_q1"] == 2.4 and frame.loc["l1_r50", "speedup_b256_q3"] == 2.6


def test_the_fastest_within_budget_is_the_highest_benchmarked_speedup(results_dir):
    (results_dir / "04_s.json").write_text(json.dumps([
        rec("04_s", "slim", 93.4, 900, 50, {"batch_1": 0.9, "batch_256": 30.0}, weights_file="weights/04_slim.pt",
            val_accuracy=93.7)]))
    speed = [{"weights_file": f"weights/{name}", "speedup": {"batch_256": {"median": m, "q1": m, "q3": m}}}
             for name, m in (("02_l1_r50.pt", 2.5), ("04_slim.pt", 3.0))]
    (results_dir / "speed.json").write_text(json.dumps(speed))
    frame = records_frame(results_dir)
    assert within_budget(frame, 93.5)["fastest"]["name"] == "slim"  # 3.0x, though 02's latency reads lower
    (results_dir / "speed.json").unlink()
    assert within_budget(records_frame(results_dir), 93.5)["fastest"]["name"] == "l1_r50"  # latencies only


def test_frontier_targets_choose_on_validation_and_say_whether_each_target_is_met():
    from helpers.comparison import frontier_targets

    def row(stage, name, val, test, size, params, sparsity=0.0, speed=float("nan"), wf=None):
        return {"stage": stage, "name": name, "val_accuracy": val, "test_accuracy": test, "size_bytes": size,
                "smallest_file_bytes": size, "params": params, "sparsity": sparsity, "speedup_b256": speed,
                "speedup_b256_q1": speed * 0.9, "speedup_b256_q3": speed * 1.1, "weights_file": wf}
    frame = pd.DataFrame([
        row("01_baseline", "baseline", 94.0, 93.5, 100_000, 1000, speed=1.0, wf="weights/01_baseline.pt"),
        row("07_c", "tiny", 93.2, 93.0, 900, 1000, sparsity=0.97),          # 111x, within 1 pp on validation
        row("07_c", "tinier but worse", 92.5, 93.4, 500, 1000, sparsity=0.99),  # fine on test, out on validation
        row("02_l1", "r60", 93.1, 92.9, 20_000, 220, speed=2.6),            # 4.5x fewer, 2.6x: meets
        row("02_l1", "r70", 90.0, 90.0, 18_000, 200, speed=3.0),            # out of budget
    ])
    table = frontier_targets(frame).set_index("target")
    file_row, structured_row = table.iloc[0], table.iloc[1]
    assert file_row["model"] == "07 tiny" and file_row["x smaller"] == 111.1 and file_row["met"]
    assert structured_row["model"] == "02 r60" and structured_row["met"]
    # the structured target missed: the fastest structured model within budget is shown, not met
    frame.loc[frame.name == "r60", "speedup_b256"] = 2.0
    assert not frontier_targets(frame).iloc[1]["met"]
    assert not frontier_targets(frame, min_smaller=200).iloc[0]["met"]


def test_frontier_markdown_is_a_table_row_per_target(results_dir):
    from helpers.comparison import frontier_markdown

    base = rec("01_baseline", "baseline", 93.5, 1000, 100, weights_file="weights/01_baseline.pt", val_accuracy=94.0)
    small = rec("02_l1", "l1_r50", 93.0, 300, 25, weights_file="weights/02_l1_r50.pt", val_accuracy=93.6)
    base["params"], small["params"] = 100, 25
    (results_dir / "01_baseline.json").write_text(json.dumps([base]))
    (results_dir / "02_l1.json").write_text(json.dumps([small]))
    (results_dir / "speed.json").write_text(json.dumps([{"weights_file": "weights/02_l1_r50.pt", "size_bytes": 300,
        "macs": 1, "threads": 1, "clock": "cpu", "reference": "weights/01_baseline.pt", "rounds": 3,
        "speedup": {"batch_1": {"median": 2.0, "q1": 1.9, "q3": 2.1}, "batch_256": {"median": 3.0, "q1": 2.8, "q3": 3.2}}}]))
    for stage in ("03_wanda", "05_schedules"):
        (results_dir / f"{stage}.json").unlink()
    lines = frontier_markdown(results_dir).splitlines()
    rows = [l for l in lines if l.startswith("| file") or l.startswith("| structured")]
    assert len(rows) == 2
    assert "02 l1_r50" in rows[1] and "4.00×" in rows[1] and "3.00× (2.80–3.20)" in rows[1] and rows[1].endswith("| yes |")
    assert "3.3×" in rows[0] and rows[0].endswith("| no |")  # 1000 / 300 bytes: far from 100x


def test_a_broken_speed_file_is_named_by_the_comparison(results_dir):
    (results_dir / "speed.json").write_text("[{]")
    with pytest.raises(ValueError, match=r"speed.json is not valid JSON \(Expecting property name enclosed in "
                                         r"double quotes: line 1 column 3\)"):
        records_frame(results_dir)


def _helpers_imported_by(module: str) -> set[str]:
    """The ``helpers`` modules that ``helpers/<module>.py`` imports (at any depth of its code)."""
    import ast

    from helpers.paths import REPO_ROOT

    tree = ast.parse((REPO_ROOT / "helpers" / f"{module}.py").read_text())
    return {node.module.lstrip(".").split(".")[0] for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module}


def test_imports_go_one_way_results_over_comparison_over_records():
    assert "results" not in _helpers_imported_by("comparison"), "comparison must not import results (a cycle)"
    assert {"comparison", "records"} <= _helpers_imported_by("results")
    assert _helpers_imported_by("records") <= {"io_utils", "paths", "provenance"}  # provenance: which files were read
    assert "results" not in _helpers_imported_by("benchmark") and "records" in _helpers_imported_by("benchmark")


def test_pareto_mask_keeps_identical_twins_and_drops_the_less_accurate_of_equal_sizes():
    from helpers.comparison import pareto_mask

    assert pareto_mask([5, 1, 3, 4, 2], [91, 80, 85, 90, 85]).tolist() == [True, True, False, True, True]
    assert pareto_mask([2, 2, 3], [88, 90, 89]).tolist() == [False, True, False]
    assert pareto_mask([3, 1, 3], [92, 80, 92]).tolist() == [True, True, True]  # twins do not dominate each other
    with pytest.raises(ValueError, match="one length"):
        pareto_mask([1, 2], [90.0])


def test_pareto_front_draws_with_the_front_function_it_is_given():
    frame = pd.DataFrame({"name": list("abc"), "cost": [1, 2, 3], "test_accuracy": [90, 92, 91]})
    everything = lambda costs, accuracies: [True] * len(costs)  # noqa: E731
    assert list(pareto_front(frame, "cost", front=everything)["name"]) == ["a", "b", "c"]
    with pytest.raises(ValueError, match="one entry per row"):
        pareto_front(frame, "cost", front=lambda c, a: [True])


def test_quantized_zeros_are_not_weights_removed():
    from helpers.comparison import weights_removed

    quantized = {"stage": "06_quantization", "params": 1000, "params_nonzero": 500}
    pruned_then_quantized = {"stage": "07_combined", "params": 1000, "params_nonzero": 50}
    structured = {"stage": "02_l1", "params_nonzero": 250}
    assert weights_removed(quantized, 1000) == 0.0  # its zeros rounded to 0: still stored, still multiplied
    assert weights_removed(pruned_then_quantized, 1000) == pytest.approx(0.95)
    assert weights_removed(structured, 1000) == pytest.approx(0.75)


def _compiled(median):
    return {"batch_1": {"median": median, "q1": median, "q3": median},
            "batch_256": {"median": median, "q1": median - 0.1, "q3": median + 0.1}}


def test_beyond_compiling_says_how_the_file_ran():
    from helpers.comparison import beyond_compiling

    both = {"speedup_vs_compiled": _compiled(1.2), "compiled": {"speedup_vs_compiled": _compiled(1.6)}}
    eager = {"speedup_vs_compiled": _compiled(4.5), "compiled": {"not_compiled": "an FX int8 graph"}}
    base = {"weights_file": "weights/01_baseline.pt", "reference": "weights/01_baseline.pt",
            "compiled": {"speedup": _compiled(2.0)}}
    assert beyond_compiling(both) == (_compiled(1.6), "compiled")
    assert beyond_compiling(eager) == (_compiled(4.5), "eager")
    assert beyond_compiling(base)[0]["batch_256"]["median"] == 1.0
    assert beyond_compiling({"speedup": _compiled(2.0)}) == ({}, "") and beyond_compiling(None) == ({}, "")


def test_records_frame_reads_the_speedups_against_the_compiled_baseline(results_dir):
    from helpers.comparison import beyond_compiling_table

    assert beyond_compiling_table(records_frame(results_dir)).empty  # a speed.json of eager timings only
    (results_dir / "speed.json").write_text(json.dumps([
        {"weights_file": "weights/01_baseline.pt", "reference": "weights/01_baseline.pt", "speedup": _compiled(1.0),
         "compiled": {"speedup": _compiled(2.0)}},
        {"weights_file": "weights/02_l1_r50.pt", "reference": "weights/01_baseline.pt", "speedup": _compiled(3.0),
         "speedup_vs_compiled": _compiled(1.5), "compiled": {"speedup": _compiled(4.0),
                                                              "speedup_vs_compiled": _compiled(2.0)}}]))
    frame = records_frame(results_dir).set_index("name")
    assert frame.loc["l1_r50", "speedup_vs_compiled_b256"] == 2.0 and frame.loc["l1_r50", "compiled_form"] == "compiled"
    assert frame.loc["l1_r50", "speedup_compiled_b256"] == 4.0 and frame.loc["baseline again", "speedup_compiled_b256"] == 2.0
    assert pd.isna(frame.loc["w", "speedup_vs_compiled_b256"])
    table = beyond_compiling_table(frame.reset_index())
    assert list(table["name"]) == ["l1_r50"] and table.loc[0, "vs compiled baseline"] == 2.0  # 02's own files only


def _front(*rows):
    return pd.DataFrame([{"name": n, "weights_file": f"weights/{n}.pt", "bytes": b, "val_accuracy": a}
                         for n, b, a in rows])


def _correct(n, wrong, extra_right=()):
    """n images; the model is wrong on the images in ``wrong`` (and right on ``extra_right`` anyway)."""
    import torch

    out = torch.ones(n, dtype=torch.bool)
    out[list(wrong)] = False
    out[list(extra_right)] = True
    return out


def test_the_walk_keeps_a_dearer_model_only_when_it_wins_by_the_rule():
    from helpers.comparison import best_within, frontier_walk, walk_sentences

    front = _front(("big", 300, 95.0), ("small", 100, 90.0), ("mid", 200, 90.2))
    correct = {"weights/small.pt": _correct(1000, range(100)),          # 90.0%
               "weights/mid.pt": _correct(1000, range(98)),             # 90.2%: +2 images, a tie
               "weights/big.pt": _correct(1000, range(50))}             # 95.0%: +50 images over small, a win
    walk = frontier_walk(front, correct, "bytes").set_index("name")
    assert list(walk.index) == ["small", "mid", "big"]  # cheapest first
    assert walk["kept"].tolist() == [True, False, True] and walk.loc["mid", "verdict"] == "tie"
    assert walk.loc["big", "against"] == "small"  # compared with the last model KEPT, not with "mid"
    assert best_within(walk.reset_index(), "bytes", 250)["name"] == "small"  # a tie keeps the cheaper
    assert best_within(walk.reset_index(), "bytes", 300)["name"] == "big" and best_within(walk.reset_index(), "bytes", 50) is None
    lines = walk_sentences(walk.reset_index(), "bytes frontier")
    assert len(lines) == 2 and "a tie" in lines[0] and "big wins" in lines[1]
    everything_ties = frontier_walk(front, correct, "bytes", decide=lambda ci, seeds: "tie")
    assert everything_ties["kept"].tolist() == [True, False, False]


def test_the_walk_on_a_speed_axis_starts_from_the_fastest():
    from helpers.comparison import frontier_walk

    front = _front(("fast", 0, 90.0), ("slow", 0, 95.0)).assign(speed=[5.0, 1.0])
    correct = {"weights/fast.pt": _correct(1000, range(100)), "weights/slow.pt": _correct(1000, range(50))}
    walk = frontier_walk(front, correct, "speed", higher_cost_is_better=True)
    assert list(walk["name"]) == ["fast", "slow"] and walk["kept"].tolist() == [True, True]


def test_the_walk_ignores_a_records_own_kept_or_verdict_field():
    """A record may carry a field named like the walk's columns (02's distillation records have
    "kept"): the walk's own columns replace it instead of doubling it (08 failed on that)."""
    from helpers.comparison import frontier_walk

    front = _front(("fast", 0, 90.0), ("slow", 0, 95.0)).assign(speed=[5.0, 1.0], kept=["plain", None],
                                                                verdict=["x", "y"])
    correct = {"weights/fast.pt": _correct(1000, range(100)), "weights/slow.pt": _correct(1000, range(50))}
    walk = frontier_walk(front, correct, "speed", higher_cost_is_better=True)
    assert list(walk.columns).count("kept") == 1 and walk["kept"].tolist() == [True, True]
    assert walk["verdict"].iloc[1] == "a" and walk["verdict"].isna().iloc[0]


def test_interval_verdict_is_the_course_rule_on_an_interval_and_seeds():
    from helpers.comparison import interval_verdict

    assert interval_verdict((0.1, 0.5)) == "a" and interval_verdict((-0.5, -0.1)) == "b"
    assert interval_verdict((0.0, 0.5)) == "tie" and interval_verdict((-0.1, 0.5)) == "tie"
    assert interval_verdict((0.1, 0.5), [0.2, -0.1]) == "tie" and interval_verdict((0.1, 0.5), [0.2, 0.0]) == "tie"
