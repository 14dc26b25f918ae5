from pathlib import Path

import pytest

from helpers.run_notebooks import describe_failure, numbered_notebooks, select

FAKE = [Path("01_baseline_training.ipynb"), Path("02_l1_filter_pruning.ipynb"), Path("03_wanda.ipynb")]


def test_select_by_number_or_name_keeps_order():
    assert select(FAKE, "03,1") == [FAKE[0], FAKE[2]]
    assert select(FAKE, "02_l1_filter_pruning") == [FAKE[1]]
    assert select(FAKE, None) == FAKE


def test_unknown_names_are_an_error():
    with pytest.raises(SystemExit, match="no notebook named 09"):
        select(FAKE, "01,09")


def test_the_repository_notebooks_are_numbered_01_to_n_without_gaps():
    notebooks = numbered_notebooks()
    assert notebooks and notebooks[0].name == "01_baseline_training.ipynb"
    assert [int(nb.name[:2]) for nb in notebooks] == list(range(1, len(notebooks) + 1))


def test_numbered_notebooks_sorts_by_number_and_skips_others(tmp_path):
    for name in ("10_late.ipynb", "02_b.ipynb", "01_a.ipynb", "scratch.ipynb", "03_c.txt"):
        (tmp_path / name).write_text("{}")
    assert [nb.name for nb in numbered_notebooks(tmp_path)] == ["01_a.ipynb", "02_b.ipynb", "10_late.ipynb"]


def test_failures_name_the_cell():
    class FakePapermillError(Exception):
        exec_count, ename, evalue = 7, "ValueError", "bad sparsity"
    assert describe_failure(FakePapermillError()) == "cell 7 (ValueError: bad sparsity)"
