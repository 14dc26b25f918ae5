import hashlib
import json

import pytest
import torch

from helpers import save_model
from helpers.benchmark import INT8_MACS_NOTE, b256_differences, load_saved_model, main
from helpers.models import CNNConfig, build_model
from helpers.quantization.int8 import convert_int8, save_int8
from helpers.storage.sparse import save_sparse_model


@pytest.fixture
def weights_dir(tmp_path):
    """A (small) baseline, a 4x narrower model, the baseline saved sparse and an int8 model."""
    folder = tmp_path / "weights"
    torch.manual_seed(1)
    baseline = build_model(CNNConfig(conv_channels=(16, 32, 64), fc_features=(200, 50))).eval()
    save_model(baseline, folder / "01_baseline.pt")
    save_model(build_model(CNNConfig(conv_channels=(4, 8, 16), fc_features=(50, 12))).eval(), folder / "02_small.pt")
    save_sparse_model(baseline, folder / "03_dense_as_sparse.sparse")
    save_int8(convert_int8(baseline, torch.rand(16, 1, 28, 28)), folder / "06_x.int8")
    return folder


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


def test_each_file_is_timed_in_a_pair_with_the_reference(weights_dir, tmp_path, monkeypatch):
    import helpers.benchmark as benchmark

    real, seen = benchmark.compare_speed, []

    def spy(models, reference, **kwargs):
        seen.append(sorted(models))
        return real(models, reference, **kwargs)

    monkeypatch.setattr(benchmark, "compare_speed", spy)
    records = benchmark.speed_records(benchmark.saved_model_files(weights_dir), weights_dir / "01_baseline.pt",
                                      rounds=3, warmup_s=0.0, batch_sizes=(1, 4), progress=False, passes=2)
    assert len(seen) == 6 and all(len(pair) == 2 and "weights/01_baseline.pt" in pair for pair in seen)
    assert {name for pair in seen for name in pair} == {r["weights_file"] for r in records}
    files = [next(n for n in pair if n != "weights/01_baseline.pt") for pair in seen]
    assert files[3:] == files[:3][::-1]  # the second pass runs backward: each file sits mid-run on average
    assert all(r["rounds"] == 6 and r["passes"] == 2 for r in records)
    with pytest.raises(ValueError, match="passes"):
        benchmark.speed_records([], weights_dir / "01_baseline.pt", passes=0)
    reference = next(r for r in records if r["weights_file"] == "weights/01_baseline.pt")
    assert reference["speedup"]["batch_4"] == {"median": 1.0, "q1": 1.0, "q3": 1.0}


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
