import hashlib
import json
import os

import pytest
import torch

from helpers import save
from helpers.benchmark import INT8_MACS_NOTE, b256_differences, load_saved_model, main
from helpers.models import CNNConfig, build_model
from helpers.quantization.int8 import convert_int8


@pytest.fixture
def weights_dir(tmp_path):
    """A (small) baseline, a 4x narrower model, the baseline saved sparse and an int8 model."""
    folder = tmp_path / "weights"
    torch.manual_seed(1)
    baseline = build_model(CNNConfig(conv_channels=(16, 32, 64), fc_features=(200, 50))).eval()
    save(baseline, folder / "01_baseline.pt")
    save(build_model(CNNConfig(conv_channels=(4, 8, 16), fc_features=(50, 12))).eval(), folder / "02_small.pt")
    save(baseline, folder / "03_dense_as_sparse.sparse")
    save(convert_int8(baseline, torch.rand(16, 1, 28, 28)), folder / "06_x.int8")
    return folder


@pytest.mark.timing
def test_benchmark_times_every_file_against_the_baseline(weights_dir, tmp_path, capsys):
    output = tmp_path / "results" / "speed.json"
    assert main(["--weights-dir", str(weights_dir), "--output", str(output), "--rounds", "3", "--passes", "2",
                 "--warmup-s", "0.01"]) == 0
    records = {r["weights_file"]: r for r in json.loads(output.read_text())}
    assert sorted(records) == ["weights/01_baseline.pt", "weights/02_small.pt",
                               "weights/03_dense_as_sparse.sparse", "weights/06_x.int8"]
    baseline, small = records["weights/01_baseline.pt"], records["weights/02_small.pt"]
    assert baseline["speedup"]["batch_256"] == {"median": 1.0, "q1": 1.0, "q3": 1.0}
    assert small["mac_ratio"] > 10 and small["speedup"]["batch_256"]["median"] > 2.0
    for r in records.values():
        path = tmp_path / r["weights_file"]
        assert r["size_bytes"] == path.stat().st_size
        assert r["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert r["threads"] == 1 and r["clock"] == "process_time" and r["rounds"] == 6 and r["passes"] == 2
        assert r["reference"] == "weights/01_baseline.pt" and r["protocol"].startswith("pairwise")
        assert r["cpu_ms_per_call"]["batch_256"] > 0
        assert set(r["speedup"]) == set(r["wall_speedup"]) == {"batch_1", "batch_256"}
        s = r["speedup"]["batch_1"]
        assert s["q1"] <= s["median"] <= s["q3"]
    int8 = records["weights/06_x.int8"]
    assert int8["macs_note"] == INT8_MACS_NOTE and int8["macs"] == baseline["macs"]
    assert "macs_note" not in small
    assert records["weights/03_dense_as_sparse.sparse"]["mac_ratio"] == 1.0  # zeros are multiplied too
    assert "wrote" in capsys.readouterr().out

    # --only re-times the matching files (and the reference) and keeps the other records
    (weights_dir / "06_x.int8").unlink()  # a deleted file's record goes
    assert main(["--weights-dir", str(weights_dir), "--output", str(output), "--rounds", "3",
                 "--warmup-s", "0.01", "--only", "02_*", "--check-against", str(output), "--tolerance", "100"]) == 0
    again = {r["weights_file"]: r for r in json.loads(output.read_text())}
    assert sorted(again) == sorted(records)[:3]
    assert again["weights/03_dense_as_sparse.sparse"] == records["weights/03_dense_as_sparse.sparse"]
    assert "b256 ratios moved by more than" in capsys.readouterr().out


@pytest.mark.timing
def test_each_file_is_timed_in_a_pair_with_the_reference(weights_dir, tmp_path, monkeypatch):
    import helpers.benchmark as benchmark

    real, seen = benchmark.compare_speed, []

    def spy(models, reference, **kwargs):
        seen.append(sorted(models))
        return real(models, reference, **kwargs)

    monkeypatch.setattr(benchmark, "compare_speed", spy)
    records = benchmark.time_records(benchmark.saved_model_files(weights_dir), weights_dir / "01_baseline.pt",
                                      rounds=3, warmup_s=0.0, batch_sizes=(1, 4), progress=False, passes=2,
                                      compiled=False)
    assert len(seen) == 6 and all(len(pair) == 2 and "weights/01_baseline.pt" in pair for pair in seen)
    assert {name for pair in seen for name in pair} == {r["weights_file"] for r in records}
    files = [next(n for n in pair if n != "weights/01_baseline.pt") for pair in seen]
    assert files[3:] == files[:3][::-1]  # the second pass runs backward: each file sits mid-run on average
    assert all(r["rounds"] == 6 and r["passes"] == 2 for r in records)
    with pytest.raises(ValueError, match="passes"):
        benchmark.time_records([], weights_dir / "01_baseline.pt", passes=0)
    reference = next(r for r in records if r["weights_file"] == "weights/01_baseline.pt")
    assert reference["speedup"]["batch_4"] == {"median": 1.0, "q1": 1.0, "q3": 1.0}


@pytest.mark.timing
def test_compiled_copies_are_timed_in_the_same_rounds_and_say_what_a_file_buys_beyond_compiling(weights_dir):
    import helpers.benchmark as benchmark
    from helpers.speed import compile_unavailable

    reason = compile_unavailable()
    if reason and not os.environ.get("CI"):
        pytest.skip(reason)
    from helpers import load
    from helpers.quantization.pt2e import convert_int8_pt2e

    save(convert_int8_pt2e(load(weights_dir / "01_baseline.pt"), torch.rand(16, 1, 28, 28)), weights_dir / "06_p.int8")
    real, seen = benchmark.compare_speed, []

    def spy(models, reference, **kwargs):
        seen.append(sorted(models))
        return real(models, reference, **kwargs)

    benchmark.compare_speed, original = spy, benchmark.compare_speed
    try:
        records = {r["weights_file"]: r for r in benchmark.time_records(
            benchmark.saved_model_files(weights_dir), weights_dir / "01_baseline.pt", rounds=4, warmup_s=0.02,
            batch_sizes=(1, 64), progress=False, passes=1)}
    finally:
        benchmark.compare_speed = original
    ref, small = "weights/01_baseline.pt", "weights/02_small.pt"
    assert [ref, ref + " [compiled]", small, small + " [compiled]"] in seen  # one group, the same rounds
    assert [ref, ref + " [compiled]", "weights/06_x.int8"] in seen  # the FX int8 graph is not compiled
    assert "crashes the process" in records["weights/06_x.int8"]["compiled"]["not_compiled"]
    pt2e = "weights/06_p.int8"  # a PT2E program is an .int8 file too, and it compiles
    assert [ref, ref + " [compiled]", pt2e, pt2e + " [compiled]"] in seen
    assert records[pt2e]["compiled"]["speedup_vs_compiled"]["batch_64"]["median"] > 0
    assert records[ref]["compiled"]["compile_seconds"] >= 0  # apart from the timed calls (0 when cached)
    compiled_ref = records[ref]["compiled"]["speedup"]["batch_64"]["median"]
    s = records[small]
    assert s["compiled"]["compile_seconds"] >= 0 and set(s["compiled"]) >= {"speedup", "speedup_vs_compiled"}
    # over the compiled baseline = over the eager one / what compiling gives the baseline (same rounds)
    expected = s["speedup"]["batch_64"]["median"] / compiled_ref
    assert s["speedup_vs_compiled"]["batch_64"]["median"] == pytest.approx(expected, rel=0.3)


def test_b256_differences_are_relative_to_the_previous_run():
    def record(name, ratio):
        return {"weights_file": name, "speedup": {"batch_256": {"median": ratio, "q1": ratio, "q3": ratio}}}

    differences = b256_differences([record("a", 2.2), record("new", 3.0)], [record("a", 2.0), record("gone", 1.0)])
    assert differences == [("a", 2.0, 2.2, pytest.approx(0.1))]


def test_unknown_suffix_and_missing_reference_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown model file suffix '.onnx'"):
        load_saved_model(tmp_path / "model.onnx")
    with pytest.raises(SystemExit):
        main(["--weights-dir", str(tmp_path), "--output", str(tmp_path / "speed.json")])


# --- nothing is written on an empty or failed selection; every error names its file -------------

@pytest.fixture
def committed(tmp_path):
    """A speed file as committed (in a tmp folder), and a check that it is still byte for byte the same."""
    output = tmp_path / "results" / "speed.json"
    output.parent.mkdir()
    output.write_text(json.dumps([{"weights_file": "weights/01_baseline.pt",
                                   "speedup": {"batch_256": {"median": 1.0, "q1": 1.0, "q3": 1.0}}}], indent=2))
    before = output.read_bytes()

    def unchanged():
        return output.read_bytes() == before and sorted(p.name for p in output.parent.iterdir()) == ["speed.json"]
    return output, unchanged


@pytest.fixture
def no_timing(monkeypatch):
    """Fail the test if anything is timed: these refusals come before minutes of timing."""
    import helpers.benchmark as benchmark

    def never(*args, **kwargs):
        raise AssertionError("timed")
    monkeypatch.setattr(benchmark, "time_records", never)


@pytest.mark.parametrize("only, message", [
    ("nomatch*", "--only 'nomatch*' matches no saved model in {weights}; {output} not written"),
    ("02_small", "--only '02_small' matches no saved model in {weights}; {output} not written"),
    ("", "--only: empty pattern ''; give a file-name pattern like '03_*' (leave --only out to time every file)"),
    ("  ", "--only: empty pattern '  '"),
    (" 02_*", "--only: pattern ' 02_*' has spaces around it; write it without them, like '03_*'"),
    ("02_*,03_*", "--only: '02_*,03_*' is a list; give one file-name pattern, e.g. '0[34]_*' for 03 and 04"),
    ("weights/02_*", "--only: 'weights/02_*' names a folder; the pattern matches file names in --weights-dir"),
])
def test_an_only_pattern_that_selects_nothing_writes_nothing(weights_dir, committed, no_timing, only, message, capsys):
    output, unchanged = committed
    with pytest.raises(SystemExit) as refused:
        main(["--weights-dir", str(weights_dir), "--output", str(output), "--only", only])
    assert refused.value.code == 2
    assert f"error: {message.format(weights=weights_dir, output=output)}" in capsys.readouterr().err
    assert unchanged()


@pytest.mark.parametrize("text, where", [("[\n  {\"weights_file\": 1,}\n]", "line 2 column 22"),
                                         ("", "line 1 column 1"), ("[1, 2", "line 1 column 6")])
def test_a_broken_speed_file_is_named_before_any_timing(weights_dir, committed, no_timing, text, where, capsys):
    output, unchanged = committed
    broken = output.parent.parent / "old.json"
    broken.write_text(text)
    for argv in (["--check-against", str(broken)], ["--output", str(broken), "--only", "02_*"]):
        with pytest.raises(SystemExit) as refused:
            main(["--weights-dir", str(weights_dir), "--output", str(output), *argv])
        assert refused.value.code == 2
        err = capsys.readouterr().err
        assert f"error: {broken} is not valid JSON (" in err and f": {where}); restore it from git or run " \
            "python -m helpers.benchmark;" in err and err.rstrip().endswith("not written")
    assert unchanged() and broken.read_text() == text


def test_a_speed_file_of_other_records_is_named_with_the_record(weights_dir, committed, no_timing, capsys):
    output, unchanged = committed
    output.write_text('[{"weights_file": "weights/01_baseline.pt", "speedup": {}}, {"weights_file": "x"}]')
    before = output.read_bytes()
    with pytest.raises(SystemExit):
        main(["--weights-dir", str(weights_dir), "--output", str(output), "--only", "02_*"])
    assert (f"error: {output} is not a list of speed records (each with weights_file and speedup): "
            'record 1 is {"weights_file": "x"};') in capsys.readouterr().err
    assert output.read_bytes() == before


def test_a_file_that_fails_to_time_writes_nothing_and_is_named(weights_dir, committed, monkeypatch, capsys):
    import helpers.benchmark as benchmark

    output, unchanged = committed
    real = benchmark.compare_speed

    def flaky(models, reference, **kwargs):
        if "weights/03_dense_as_sparse.sparse" in models:
            raise RuntimeError("out of memory")
        return real(models, reference, **kwargs)
    monkeypatch.setattr(benchmark, "compare_speed", flaky)
    assert main(["--weights-dir", str(weights_dir), "--output", str(output), "--rounds", "3", "--passes", "1",
                 "--warmup-s", "0", "--calls-per-round", "1"]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (  # the lines above it: progress bars
        "error: timing weights/03_dense_as_sparse.sparse in a pair with weights/01_baseline.pt failed "
        f"(RuntimeError: out of memory); {output} not written")
    assert unchanged()


def test_a_file_that_fails_to_load_writes_nothing_and_is_named(weights_dir, committed, capsys):
    output, unchanged = committed
    (weights_dir / "04_broken.pt").write_bytes(b"not a checkpoint")
    assert main(["--weights-dir", str(weights_dir), "--output", str(output), "--only", "04_*"]) == 1
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith("error: loading weights/04_broken.pt failed (") and "04_broken.pt" in err.split("(", 1)[1]
    assert err.endswith(f"; {output} not written")
    assert unchanged()


def test_compiled_model_builds_at_the_timing_thread_count_and_restores_the_callers():
    from helpers.speed import compile_unavailable, compiled_model

    reason = compile_unavailable()
    if reason and not os.environ.get("CI"):
        pytest.skip(reason)
    seen, before = [], torch.get_num_threads()
    model = build_model(CNNConfig(conv_channels=(4, 8, 16), fc_features=(20, 10))).eval()
    original = model.forward

    def spy(x):
        seen.append(torch.get_num_threads())
        return original(x)

    model.forward = spy  # dynamo traces the spy: it runs (and records) while compiling
    torch.set_num_threads(2)
    try:
        compiled, seconds = compiled_model(model, batch_sizes=(1,), threads=1)
        assert seen and set(seen) == {1} and seconds >= 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
