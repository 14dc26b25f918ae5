import hashlib
import json

import pytest

from helpers.paths import REPO_ROOT, OutputDirs
from helpers.results import (README_END, README_START, make_record, read_results, read_speed, readme_section,
                             render_readme, results_table, speed_problems, write_results)


def test_record_measures_what_it_reports(tmp_path, random_model):
    from helpers import save

    outputs = OutputDirs(tmp_path, "quick")
    path = save(random_model, outputs.weights / "01_x.pt")
    record = make_record("x", "none", random_model, 91.234567, path, outputs,
                         latency={"latency_ms_b1": 0.5, "latency_ms_b256": 20.0})
    assert record["params"] == record["params_nonzero"] == 1_367_226
    assert record["sparsity"] == 0.0 and record["quick"] is True
    assert record["size_bytes"] == path.stat().st_size
    assert record["weights_file"] == "weights/01_x.pt"
    assert record["latency_ms"] == {"batch_1": 0.5, "batch_256": 20.0}
    written = write_results("01_x", [record], outputs)
    assert json.loads(written.read_text()) == [record]


def test_bad_records_are_refused(tmp_path, random_model):
    outputs = OutputDirs(tmp_path, "full")
    with pytest.raises(ValueError, match="percentage"):
        make_record("x", "none", random_model, 930.0, None, outputs)
    with pytest.raises(ValueError, match="lacks"):
        write_results("01_x", [{"name": "x"}], outputs)
    quick_record = make_record("x", "none", random_model, 90.0, None, OutputDirs(tmp_path, "quick"))
    with pytest.raises(ValueError, match="QUICK record"):
        write_results("01_x", [quick_record], outputs)


def test_table_skips_quick_records_and_renders_between_markers():
    records = [{"stage": "01_baseline", "name": "a", "method": "m", "test_accuracy": 93.5, "sparsity": 0.5,
                "params_nonzero": 1000, "weight_bits": 32, "activation_bits": None, "size_bytes": 2_500_000,
                "latency_ms": {"batch_1": 0.3, "batch_256": 40.0}, "latency_threads": 2, "quick": False,
                "weights_file": "weights/01_a.pt"},
               {"stage": "02_x", "name": "unsaved", "quick": False, "weights_file": None},
               {"stage": "01_baseline", "name": "q", "quick": True},
               {"stage": "02_x", "name": "baseline re-measured in 02", "quick": False,
                "weights_file": "weights/01_a.pt"}]
    speed = {"weights/01_a.pt": _speed_record("weights/01_a.pt", 2.5531, 2.4801, 2.6149)}
    table = results_table(records, speed)
    assert "| 01 | a | m | 93.50 | 0.0% | 1,000 | 32/float | 2.50 MB | – | 1.00× (1.00–1.00) " \
           "| 2.55× (2.48–2.61) |" in table
    assert "| q |" not in table and "unsaved" not in table and "re-measured" not in table
    assert "median (q1–q3) of 15 interleaved rounds" in table and "process_time at 1 thread" in table
    assert "| 2.50 MB | – | – |" in results_table(records, {})  # a model the benchmark did not time
    text = f"intro\n{README_START}\nold\n{README_END}\nend"
    assert render_readme(text, table) == f"intro\n{README_START}\n{table}\n{README_END}\nend"


def _speed_record(weights_file, median, q1, q3, sha256="0" * 64):
    return {"weights_file": weights_file, "sha256": sha256, "reference": "weights/01_baseline.pt",
            "clock": "process_time", "threads": 1, "rounds": 15,
            "speedup": {"batch_1": {"median": 1.0, "q1": 1.0, "q3": 1.0},
                        "batch_256": {"median": median, "q1": q1, "q3": q3}}}


def test_speed_problems_name_missing_and_changed_files(tmp_path):
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "01_a.pt").write_bytes(b"model a")
    (tmp_path / "weights" / "01_b.pt").write_bytes(b"model b")
    records = [{"stage": "01_x", "name": n, "quick": False, "weights_file": f"weights/01_{n}.pt"} for n in "ab"]
    sha_a = hashlib.sha256(b"model a").hexdigest()
    assert speed_problems(records, None, tmp_path) == ["results/speed.json is missing: run python -m helpers.benchmark"]
    speed = {"weights/01_a.pt": _speed_record("weights/01_a.pt", 2, 2, 2, sha_a)}
    problems = speed_problems(records, speed, tmp_path)
    assert problems[0] == "weights/01_b.pt has no record in results/speed.json" and len(problems) == 2
    speed["weights/01_b.pt"] = _speed_record("weights/01_b.pt", 2, 2, 2, sha_a)  # timed another file
    assert speed_problems(records, speed, tmp_path)[0] == "weights/01_b.pt changed since results/speed.json timed it"
    speed["weights/01_b.pt"]["sha256"] = hashlib.sha256(b"model b").hexdigest()
    assert speed_problems(records, speed, tmp_path) == []


def test_speed_file_is_read_by_weights_file_and_not_as_a_notebook_result(tmp_path):
    record = {"name": "x", "method": "none", "test_accuracy": 90.0, "sparsity": 0.0, "params_nonzero": 10,
              "weight_bits": 32, "activation_bits": None, "size_bytes": 100, "latency_ms": None,
              "weights_file": "weights/01_a.pt", "quick": False}
    (tmp_path / "01_x.json").write_text(json.dumps([record]))
    with pytest.raises(FileNotFoundError, match="helpers.benchmark"):
        read_speed(tmp_path)
    (tmp_path / "speed.json").write_text(json.dumps([_speed_record("weights/01_a.pt", 2, 1.9, 2.1)]))
    assert read_results(tmp_path) == [{"stage": "01_x", **record}]
    assert read_speed(tmp_path)["weights/01_a.pt"]["speedup"]["batch_256"]["median"] == 2
    (tmp_path / "speed.json").write_text(json.dumps({"weights/01_a.pt": 2}))
    with pytest.raises(ValueError, match="not a list of speed records"):
        read_speed(tmp_path)


def test_readme_table_is_in_sync_with_committed_results():
    readme = (REPO_ROOT / "README.md").read_text()
    assert render_readme(readme, readme_section(read_results(), read_speed())) == readme, \
        "run: python -m helpers.results --write-readme"


def test_committed_speed_file_times_every_saved_model_as_committed():
    assert speed_problems(read_results(), read_speed()) == []


def test_committed_results_are_full_runs_with_the_contract_fields():
    for record in read_results():
        assert record["quick"] is False, f"{record['stage']}: QUICK record committed"
        assert 0 <= record["sparsity"] <= 1 and 0 <= record["test_accuracy"] <= 100
        if record["weights_file"]:
            assert (REPO_ROOT / record["weights_file"]).stat().st_size == record["size_bytes"]


GOOD = {"name": "m", "method": "none", "test_accuracy": 91.5, "sparsity": 0.5, "params_nonzero": 10,
        "weight_bits": 32, "activation_bits": None, "size_bytes": 100, "latency_ms": {"batch_1": 0.4},
        "weights_file": "weights/01_m.pt", "quick": False}


@pytest.mark.parametrize("change,message", [
    ({"test_accuracy": float("nan")}, "test_accuracy must be a finite percentage in 0-100, got nan"),
    ({"test_accuracy": 150.0}, "test_accuracy must be a finite percentage in 0-100, got 150.0"),
    ({"test_accuracy": "93"}, "test_accuracy must be a finite percentage"),
    ({"sparsity": 1.5}, "sparsity must be a finite fraction in 0-1"),
    ({"params_nonzero": -1}, "params_nonzero must be a non-negative integer"),
    ({"latency_ms": {"batch_1": float("inf")}}, "latency_ms must be null or a map of positive finite numbers"),
    ({"quick": "no"}, "quick must be true or false"),
    ({"name": None}, "name must be a non-empty string"),
])
def test_read_results_refuses_bad_values_and_names_the_file(tmp_path, change, message):
    (tmp_path / "01_ok.json").write_text(json.dumps([GOOD]))
    assert read_results(tmp_path) == [{"stage": "01_ok", **GOOD}]
    (tmp_path / "02_bad.json").write_text(json.dumps([GOOD, {**GOOD, **change}]))
    with pytest.raises(ValueError, match=rf"02_bad.json, record 1 .*{message}"):
        read_results(tmp_path)


@pytest.mark.parametrize("text,message", [("{not json", "is not valid JSON"), ('{"name": "m"}', "must hold a list"),
                                          ("[1]", "a record must be a JSON object"),
                                          ('[{"name": "m"}]', "lacks")])
def test_read_results_refuses_broken_files_and_names_them(tmp_path, text, message):
    (tmp_path / "03_x.json").write_text(text)
    with pytest.raises(ValueError, match=rf"03_x.json.*{message}"):
        read_results(tmp_path)


def test_differences_within_the_rerun_spread_are_ties():
    from helpers.records import RERUN_SPREAD_PP, is_tie
    assert is_tie(93.35, 93.35 + 2 * RERUN_SPREAD_PP) and is_tie(93.29, 93.13)
    assert not is_tie(93.35, 93.06) and not is_tie(93.32, 92.35)


def test_series_cost_sums_papermill_durations_of_the_numbered_notebooks(tmp_path):
    from helpers.results import series_cost_markdown

    def notebook(name, meta):
        (tmp_path / name).write_text(json.dumps({"cells": [], "metadata": meta}))

    notebook("01_a.ipynb", {"papermill": {"duration": 600.0, "start_time": "2026-11-21T12:29:45+00:00"}})
    notebook("02_b.ipynb", {"papermill": {"duration": 1200.0, "start_time": "2026-12-02T03:31:00+00:00"}})
    notebook("03_c.ipynb", {})  # never run by papermill: not counted
    notebook("scratch.ipynb", {"papermill": {"duration": 9999.0}})  # not a course notebook
    text = series_cost_markdown(tmp_path)
    assert "30 min" in text and "01 10.0 min (2026-11-21)" in text and "02 20.0 min (2026-12-02)" in text
    assert "03" not in text.split("(", 1)[1].split(";")[0] and "scratch" not in text
    assert series_cost_markdown(tmp_path / "missing").startswith("_No FULL run")
    assert "seeds' time" not in text  # no cell tagged `seeds`: no line about them


def test_series_cost_says_where_the_seeds_time_went(tmp_path):
    from helpers.results import seeded_cell_seconds, series_cost_markdown

    def cell(seconds, tags=()):
        return {"cell_type": "code", "metadata": {"tags": list(tags), "papermill": {"duration": seconds}}}

    cells = [cell(30.0), cell(120.0, ["seeds"]), cell(60.0, ["seeds", "other"]), cell(999.0, ["parameters"]),
             {"cell_type": "markdown", "metadata": {"tags": ["seeds"]}}]  # untimed: not counted
    (tmp_path / "02_b.ipynb").write_text(json.dumps({"cells": cells, "metadata": {"papermill": {
        "duration": 1212.0, "start_time": "2026-12-06T07:00:00+00:00"}}}))
    assert seeded_cell_seconds({"cells": cells}) == 180.0
    text = series_cost_markdown(tmp_path)
    assert "Where the seeds' time went**: 3 min" in text and "02 3.0 min)" in text and "02 20.2 min (2026-12-06)" in text


# --- every reader of speed.json and results/NN_*.json names the file and what is wrong ------------

@pytest.mark.parametrize("text, what", [
    ('[\n  {"weights_file": "weights/01_a.pt",\n}]', "Expecting property name enclosed in double quotes: line 3 column 1"),
    ("", "Expecting value: line 1 column 1"),
    ("[1, 2", "Expecting ',' delimiter: line 1 column 6"),
])
def test_a_broken_speed_file_is_named_with_line_and_column(tmp_path, text, what):
    from helpers.records import read_speed_file

    (tmp_path / "speed.json").write_text(text)
    message = (f"{tmp_path / 'speed.json'} is not valid JSON ({what}); restore it from git or run "
               "python -m helpers.benchmark")
    for read in (lambda: read_speed(tmp_path), lambda: read_speed_file(tmp_path / "speed.json")):
        with pytest.raises(ValueError) as err:
            read()
        assert str(err.value) == message


def test_a_speed_file_that_is_not_utf8_is_named(tmp_path):
    (tmp_path / "speed.json").write_bytes(b"[\xff]")
    with pytest.raises(ValueError, match=r"speed.json is not UTF-8 text \(byte 1\)"):
        read_speed(tmp_path)


def test_a_broken_results_file_is_named_with_line_and_column(tmp_path):
    (tmp_path / "02_x.json").write_text("[\n  {oops}\n]")
    with pytest.raises(ValueError) as err:
        read_results(tmp_path)
    assert str(err.value) == (f"{tmp_path / '02_x.json'} is not valid JSON (Expecting property name enclosed in "
                              "double quotes: line 2 column 4); restore it or run its notebook again")


def test_the_results_cli_names_a_broken_speed_file_instead_of_a_traceback(tmp_path, capsys):
    from helpers.results import main

    (tmp_path / "results").mkdir()
    (tmp_path / "README.md").write_text(f"{README_START}\n{README_END}\n")
    (tmp_path / "results" / "speed.json").write_text('[{"weights_file": "weights/01_a.pt"')
    before = (tmp_path / "README.md").read_bytes()
    for argv in (["--check"], ["--write-readme"]):
        assert main(argv, root=tmp_path) == 1
        assert capsys.readouterr().err == (
            f"error: {tmp_path / 'results' / 'speed.json'} is not valid JSON (Expecting ',' delimiter: line 1 "
            "column 36); restore it from git or run python -m helpers.benchmark\n")
    assert (tmp_path / "README.md").read_bytes() == before


def test_a_broken_notebook_is_named_by_the_series_cost(tmp_path):
    from helpers.results import series_cost_markdown

    (tmp_path / "01_a.ipynb").write_text('{"cells": [')
    with pytest.raises(ValueError, match=r"01_a.ipynb is not valid JSON \(Expecting value: line 1 column 12\)"):
        series_cost_markdown(tmp_path)


def test_records_round_trip_atomically_with_the_files_sha256(tmp_path):
    from helpers.records import format_spread, read_speed_file, sha256_of, write_speed_file

    records = [_speed_record("weights/01_a.pt", 2.5531, 2.4801, 2.6149)]
    write_speed_file(tmp_path / "speed.json", records)
    assert read_speed_file(tmp_path / "speed.json") == records
    assert (tmp_path / "speed.json").read_text() == json.dumps(records, indent=2) + "\n"
    assert [p.name for p in tmp_path.iterdir()] == ["speed.json"]  # no temporary file left
    assert sha256_of(tmp_path / "speed.json") == hashlib.sha256((tmp_path / "speed.json").read_bytes()).hexdigest()
    assert format_spread(2.5531, 2.4801, 2.6149) == "2.55× (2.48–2.61)"


def _labelled_batches(model, n=64, seed=0):
    """Batches whose labels are ``model``'s own predictions for the first half, wrong for the rest."""
    import torch

    from helpers.data import Batches, ImageSet

    g = torch.Generator().manual_seed(seed)
    images = (torch.rand(n, 1, 28, 28, generator=g) * 255).to(torch.uint8)
    with torch.no_grad():
        predicted = model.eval()(images.float().div(255)).argmax(1)
    labels = torch.where(torch.arange(n) < n // 2, predicted, (predicted + 1) % 10)
    return Batches(ImageSet(images.squeeze(1), labels), 32)


def test_a_point_recorder_saves_the_model_and_records_its_accuracies_shape_and_extra(tmp_path, random_model):
    from helpers import load
    from helpers.results import PointRecorder

    outputs = OutputDirs(tmp_path, "quick")
    test, val = _labelled_batches(random_model, 64, 0), _labelled_batches(random_model, 40, 1)
    record_point = PointRecorder("02", outputs, test, val, 0.01,
                                 shape=lambda m: {"conv_channels": list(m.config.conv_channels)})
    record = record_point(random_model, "l1_r30", "L1 filter pruning", 0.3, fine_tune_epochs=2)
    assert record["test_accuracy"] == 50.0 and record["val_accuracy"] == 50.0  # half of each set is right
    assert record["weights_file"] == "weights/02_l1_r30.pt" and record["ratio"] == 0.3
    assert record["conv_channels"] == [32, 64, 128] and record["fine_tune_epochs"] == 2
    assert set(record["latency_ms"]) == {"batch_1", "batch_256"}
    assert list(record)[-4:] == ["ratio", "val_accuracy", "conv_channels", "fine_tune_epochs"]  # the notebooks' order
    from helpers import read_meta
    assert read_meta(tmp_path / "weights" / "02_l1_r30.pt") == {"ratio": 0.3, "fine_tune_epochs": 2}
    x = next(iter(test))[0]
    assert load(tmp_path / "weights" / "02_l1_r30.pt")(x).equal(random_model(x))


def test_a_sweep_recorder_appends_one_unsaved_record_per_point(tmp_path, random_model):
    from helpers.results import sweep_recorder

    records = []
    record_point = sweep_recorder(records, OutputDirs(tmp_path, "quick"), "magnitude ", epochs=0)
    record_point(random_model, {"variant": "one-shot · global", "target": 0.9, "accuracy": 12.5})
    assert len(records) == 1
    r = records[0]
    assert (r["name"], r["method"]) == ("one-shot · global · 90%", "magnitude one-shot · global, no fine-tuning")
    assert r["test_accuracy"] == 12.5 and r["weights_file"] is None and r["size_bytes"] is None
    assert (r["target_sparsity"], r["epochs"]) == (0.9, 0)


def _compiled_speed_file():
    """A speed.json as the benchmark writes it once it times compiled copies: the baseline (its compiled
    copy against itself eager), a file that compiled, and an FX int8 file that could not be compiled."""
    spread = lambda m: {"median": m, "q1": m - 0.1, "q3": m + 0.1}  # noqa: E731
    common = {"reference": "weights/01_baseline.pt", "clock": "process_time", "threads": 1, "rounds": 16,
              "passes": 4, "sha256": "0" * 64}
    return [
        {**common, "weights_file": "weights/01_baseline.pt", "speedup": {"batch_1": spread(1.0), "batch_256": spread(1.0)},
         "compiled": {"speedup": {"batch_1": spread(1.4), "batch_256": spread(2.0)}, "compile_seconds": 20.0}},
        {**common, "weights_file": "weights/02_x.pt", "speedup": {"batch_1": spread(2.0), "batch_256": spread(2.0)},
         "speedup_vs_compiled": {"batch_1": spread(1.4), "batch_256": spread(1.0)},
         "compiled": {"speedup": {"batch_1": spread(2.6), "batch_256": spread(3.2)},
                      "speedup_vs_compiled": {"batch_1": spread(1.9), "batch_256": spread(1.6)}, "compile_seconds": 9.0}},
        {**common, "weights_file": "weights/06_q.int8", "speedup": {"batch_1": spread(1.5), "batch_256": spread(9.0)},
         "speedup_vs_compiled": {"batch_1": spread(1.1), "batch_256": spread(4.5)},
         "compiled": {"not_compiled": "an FX int8 graph"}}]


def _crafted_records():
    rec = lambda stage, name, file, bits, nonzero, **extra: {  # noqa: E731
        "name": name, "method": name, "test_accuracy": 93.0, "sparsity": 0.4 if bits < 32 else 0.0, "params": 1000,
        "params_nonzero": nonzero, "weight_bits": bits, "activation_bits": 8 if bits < 32 else None, "size_bytes": 2_000_000,
        "latency_ms": None, "weights_file": file, "quick": False, "val_accuracy": 93.5, **extra}
    return {"01_baseline": [rec("01_baseline", "baseline", "weights/01_baseline.pt", 32, 1000, val_accuracy=94.0)],
            "02_x": [rec("02_x", "x", "weights/02_x.pt", 32, 250, sparse_size_bytes=400_000)],
            "06_q": [rec("06_q", "q", "weights/06_q.int8", 8, 600)]}


def test_the_table_shows_speed_vs_eager_and_vs_compiled_once_the_benchmark_timed_compiled_copies():
    records = [{"stage": stage, **r} for stage, rs in _crafted_records().items() for r in rs]
    eager_only = {r["weights_file"]: {k: v for k, v in r.items() if k not in ("compiled", "speedup_vs_compiled")}
                  for r in _compiled_speed_file()}
    assert "vs compiled" not in results_table(records, eager_only)  # the committed speed.json of today
    table = results_table(records, {r["weights_file"]: r for r in _compiled_speed_file()})
    assert "| b1 vs eager | b256 vs eager | b1 vs compiled | b256 vs compiled |" in table
    assert "| 02 | x | x | 93.00 | 75.0% | 250 | 32/float | 2.00 MB | 400.0 kB |" in table  # dense and .sparse
    assert "| 2.00× (1.90–2.10) | 2.00× (1.90–2.10) | 1.90× (1.80–2.00) | 1.60× (1.50–1.70) |" in table  # both compiled
    assert "| 4.50× (4.40–4.60) † |" in table  # FX int8: eager against the compiled baseline, marked
    assert "| 01 | baseline |" in table and "| 1.00× (1.00–1.00) | 1.00× (1.00–1.00) |" in table
    assert "the compiled baseline itself runs 2.00× (1.90–2.10) the eager one at batch 256" in table
    q_row = next(line for line in table.splitlines() if line.startswith("| 06 | q |"))
    assert "| 0.0% | 600 |" in q_row  # a quantized model's zeros are not weights removed


def test_the_readme_renders_the_compiled_columns_from_a_crafted_speed_json(tmp_path):
    from helpers.results import update_readme

    (tmp_path / "results").mkdir()
    (tmp_path / "notebooks").mkdir()
    for stage, rs in _crafted_records().items():
        (tmp_path / "results" / f"{stage}.json").write_text(json.dumps(rs))
    (tmp_path / "results" / "speed.json").write_text(json.dumps(_compiled_speed_file()))
    (tmp_path / "README.md").write_text(f"intro\n{README_START}\nold\n{README_END}\n")
    assert update_readme(root=tmp_path) is False  # regenerated
    readme = (tmp_path / "README.md").read_text()
    assert "b256 vs compiled" in readme and "4.50× (4.40–4.60) †" in readme and "**Frontier targets**" in readme
    assert update_readme(check=True, root=tmp_path) is True


def _verdict(question="distillation", verdict="tie", seeds=([91.0, 91.2, 90.9], [90.8, 91.3, 90.7])):
    return {"notebook": "04", "question": question, "a": "distilled", "b": "plain", "split": "validation",
            "difference_pp": 0.2, "ci95_pp": [-0.1, 0.5], "p_value": 0.3, "a_only": 30, "b_only": 20, "n": 5000,
            "seeds_a": seeds[0], "seeds_b": seeds[1], "verdict": verdict, "quick": False}


def test_print_verdicts_says_when_there_are_none_and_prints_each_sentence(tmp_path, capsys):
    from helpers.results import print_verdicts, verdict_sentence

    assert print_verdicts("04", tmp_path) == []
    assert "holds no verdict of notebook 04 yet: the next FULL run writes them" in capsys.readouterr().out
    (tmp_path / "verdicts.json").write_text(json.dumps([_verdict(), _verdict("same shape"),
                                                         {**_verdict("other"), "notebook": "02"}]))
    assert [r["question"] for r in print_verdicts("04", tmp_path, about="same")] == ["same shape"]
    out = capsys.readouterr().out
    assert out.startswith("same shape: a tie (the simpler or cheaper one is kept) — distilled − plain = +0.20 pp")
    assert "(95% paired interval -0.10 to +0.50" in out and "30 vs 20 discordant of 5,000; seeds +0.20, -0.10, +0.20 pp" in out
    assert "seeds (validation %): distilled 91.03 ± 0.15 (91.00, 91.20, 90.90)" in out
    assert len(print_verdicts(None, tmp_path)) == 3
    assert verdict_sentence(_verdict(seeds=([], []))).count("\n") == 0  # no seeds: one line
