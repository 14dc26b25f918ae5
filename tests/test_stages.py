"""helpers.stages: the explore path loads committed files, says how to make a missing one."""
import pytest

import json

from helpers.stages import committed_file, committed_records, how_to_make


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


def test_committed_records_on_the_explore_path_only(tmp_path, capsys):
    record = {"name": "m", "method": "x", "test_accuracy": 90.0, "sparsity": 0.5, "params_nonzero": 10,
              "weight_bits": 32, "activation_bits": None, "size_bytes": 100, "latency_ms": None,
              "weights_file": None, "quick": False}
    (tmp_path / "05_schedules.json").write_text(json.dumps([record]))
    assert committed_records("05_schedules", "explore", tmp_path) == [record]
    assert committed_records("05_schedules", "quick", tmp_path) is None
    assert committed_records("02_l1_filter_pruning", "explore", tmp_path) is None
    assert "02_l1_filter_pruning.json is missing" in capsys.readouterr().out


def test_committed_records_are_checked(tmp_path):
    (tmp_path / "05_schedules.json").write_text(json.dumps([{"name": "m"}]))
    with pytest.raises(ValueError, match="05_schedules.json"):
        committed_records("05_schedules", "explore", tmp_path)
