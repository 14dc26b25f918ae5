"""helpers.stages: the explore path loads committed files, says how to make a missing one."""
import pytest

from helpers.stages import committed_file, how_to_make


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
