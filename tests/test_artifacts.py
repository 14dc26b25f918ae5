"""helpers.artifacts: the explore path loads committed files, says how to make a missing one; the run context."""
import json

import pytest

from helpers.artifacts import committed_file, committed_records, how_to_make


def test_explore_finds_a_committed_file_and_other_modes_compute(tmp_path):
    (tmp_path / "01_baseline.pt").write_bytes(b"x")
    assert committed_file("01_baseline.pt", "explore", tmp_path) == tmp_path / "01_baseline.pt"
    assert committed_file("01_baseline.pt", "full", tmp_path) is None
    assert committed_file("01_baseline.pt", "quick", tmp_path) is None


def test_a_missing_file_names_the_command_that_makes_it(tmp_path, capsys):
    assert committed_file("04_sparsity_trained.pt", "explore", tmp_path) is None
    out = capsys.readouterr().out
    assert "04_sparsity_trained.pt is missing" in out
    assert "--only 04 --in-place" in out and "04_network_slimming" in out


def test_files_not_named_after_a_notebook_are_refused():
    with pytest.raises(ValueError, match="NN_what"):
        how_to_make("baseline.pt")


FULL_RECORD = {"name": "m", "method": "x", "test_accuracy": 90.0, "sparsity": 0.5, "params_nonzero": 10,
               "weight_bits": 32, "activation_bits": None, "size_bytes": 100, "latency_ms": None,
               "weights_file": None, "quick": False}


def test_explore_loads_the_committed_records_and_other_modes_compute(tmp_path, capsys):
    from helpers.artifacts import committed_records
    (tmp_path / "03_wanda.json").write_text(json.dumps([FULL_RECORD]))
    assert committed_records("03_wanda", "explore", tmp_path) == [FULL_RECORD]
    assert "1 records of" in capsys.readouterr().out
    assert committed_records("03_wanda", "quick", tmp_path) is None
    assert committed_records("03_wanda", "full", tmp_path) is None


@pytest.mark.parametrize("text", [None, "not json", "[]", '[{"name": "a", "quick": true}]',
                                  json.dumps([{**FULL_RECORD, "test_accuracy": 150.0}])])
def test_missing_non_full_or_invalid_records_name_the_command_that_makes_them(tmp_path, capsys, text):
    from helpers.artifacts import committed_records
    if text is not None:
        (tmp_path / "03_wanda.json").write_text(text)
    assert committed_records("03_wanda", "explore", tmp_path) is None
    out = capsys.readouterr().out
    assert "--only 03 --in-place" in out and "small subsets" in out


def test_record_named_finds_the_first_record_by_name_prefix():
    from helpers.artifacts import record_named

    records = [{"name": "frontier W4 (.ccz)"}, {"name": "structured distilled float32"}, {"name": "structured distilled int8"}]
    assert record_named(records, "structured distilled") is records[1]
    assert record_named(records, "structured distilled int8") is records[2]
    assert record_named(records, "deep compressed") is None
    assert record_named(None, "frontier") is None  # FULL and QUICK: no committed records


@pytest.mark.parametrize("quick, env, mode, small", [(True, "full", "quick", True), (False, "full", "full", False),
                                                     (False, None, "explore", True)])
def test_start_run_gives_the_mode_outputs_and_device_and_seeds(monkeypatch, tmp_path, quick, env, mode, small):
    import torch

    from helpers.artifacts import start_run

    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(tmp_path))
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    if env is None:
        monkeypatch.delenv("COURSE_MODE", raising=False)
    else:
        monkeypatch.setenv("COURSE_MODE", env)
    run = start_run(quick, seed=7)
    first = torch.rand(3)
    assert (run.mode, run.small, run.outputs.root, run.outputs.mode) == (mode, small, tmp_path, mode)
    assert isinstance(run.device, torch.device)
    start_run(quick, seed=7)
    assert torch.equal(torch.rand(3), first)  # seeded: the same draws again
