"""The batch runner: selection, modes through the kernel's environment, widget state, in-place writes.

Tiny temporary notebooks run under papermill where executing is the point; elsewhere ``run_one``
is replaced by a stand-in that writes the executed copy."""
import json
import os
import stat
from pathlib import Path

import nbformat
import pytest

import helpers.run_notebooks as rn
from helpers.paths import MODE_ENV
from helpers.run_notebooks import (EXPLORE_BUDGET_S, Outcome, describe_failure, kernel_environment,
                                   numbered_notebooks, run_one, run_series, select, summary)
from helpers.paths import HEADLESS_ENV

FAKE = [Path("01_baseline_training.ipynb"), Path("02_l1_filter_pruning.ipynb"), Path("03_wanda.ipynb")]
WIDGET_STATE = {"application/vnd.jupyter.widget-state+json": {"state": {"abc": {}}, "version_major": 2,
                                                               "version_minor": 0}}


def tiny_notebook(path: Path, *code: str) -> Path:
    """A notebook with a ``parameters`` cell (QUICK = False), the given code cells and stale widget state."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("QUICK = False")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params] + [nbformat.v4.new_code_cell(c) for c in code]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["widgets"] = WIDGET_STATE
    path.write_text(nbformat.writes(nb))
    return path


def stdout_of(path: Path) -> str:
    nb = nbformat.read(str(path), as_version=4)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


@pytest.fixture
def caller_env(monkeypatch):
    """The calling process: not headless, no mode."""
    monkeypatch.delenv(HEADLESS_ENV, raising=False)
    monkeypatch.delenv(MODE_ENV, raising=False)


# --- selection and order ---------------------------------------------------------------------

def test_select_by_number_or_name_keeps_order():
    assert select(FAKE, "03,1") == [FAKE[0], FAKE[2]]
    assert select(FAKE, "02_l1_filter_pruning") == [FAKE[1]]
    assert select(FAKE, None) == FAKE


def test_unknown_names_are_an_error():
    with pytest.raises(SystemExit, match="no notebook named 09"):
        select(FAKE, "01,09")


@pytest.mark.parametrize("only", ["", " ", ",", " , "])
def test_an_empty_selection_is_rejected_not_run_as_everything(only):
    with pytest.raises(SystemExit, match="--only: empty selection"):
        select(FAKE, only)
    with pytest.raises(SystemExit, match="--only: empty selection"):
        rn.main(["--only", only])


def test_numbered_notebooks_are_found_and_put_in_numeric_order(tmp_path):
    for name in ["10_last.ipynb", "02_b.ipynb", "01_a.ipynb", "notes.ipynb", "1_short.ipynb", "03_c.txt"]:
        (tmp_path / name).write_text("{}")
    assert [p.name for p in numbered_notebooks(tmp_path)] == ["01_a.ipynb", "02_b.ipynb", "10_last.ipynb"]


def test_the_repository_notebooks_are_numbered_01_to_n_without_gaps():
    numbers = [nb.name[:2] for nb in numbered_notebooks()]
    assert numbers and numbers == [f"{i:02d}" for i in range(1, len(numbers) + 1)]


def test_failures_name_the_cell():
    class FakePapermillError(Exception):
        exec_count, ename, evalue = 7, "ValueError", "bad sparsity"
    assert describe_failure(FakePapermillError()) == "cell 7 (ValueError: bad sparsity)"


# --- modes reach the kernel, and nothing leaks back ----------------------------------------------

@pytest.mark.parametrize("mode, expected", [("explore", "mode=explore quick=False headless=1"),
                                            ("full", "mode=full quick=False headless=1"),
                                            ("quick", "mode=None quick=True headless=1")])
def test_the_kernel_gets_the_mode_and_the_caller_keeps_its_environment(tmp_path, caller_env, mode, expected):
    source = tiny_notebook(tmp_path / "01_tiny.ipynb", 'import os\nprint(f"mode={os.environ.get(\'COURSE_MODE\')} '
                           'quick={QUICK} headless={os.environ.get(\'COURSE_HEADLESS\')}")')
    before = source.read_bytes()
    outcomes = run_series([source], mode, runs_dir=tmp_path / "runs")
    assert [(o.name, o.status) for o in outcomes] == [("01_tiny.ipynb", "ok")]
    executed = tmp_path / "runs" / mode / "01_tiny.ipynb"
    assert expected in stdout_of(executed)
    assert source.read_bytes() == before, "the source notebook changed"
    assert HEADLESS_ENV not in os.environ and MODE_ENV not in os.environ, "the kernel's environment leaked"
    injected = [c for c in nbformat.read(str(executed), as_version=4).cells
                if "injected-parameters" in c.metadata.get("tags", [])]
    assert bool(injected) == (mode == "quick"), "only QUICK may inject parameters"
    assert "widgets" not in json.loads(executed.read_text())["metadata"], "stale widget state kept"


def test_kernel_environment_restores_the_callers_values(monkeypatch):
    monkeypatch.setenv(MODE_ENV, "full")
    monkeypatch.setenv(HEADLESS_ENV, "")
    with kernel_environment("quick"):
        assert MODE_ENV not in os.environ and os.environ[HEADLESS_ENV] == "1"
    assert os.environ[MODE_ENV] == "full" and os.environ[HEADLESS_ENV] == ""
    monkeypatch.delenv(MODE_ENV)
    with pytest.raises(RuntimeError):
        with kernel_environment("explore"):
            assert os.environ[MODE_ENV] == "explore"
            raise RuntimeError("a failing notebook")
    assert MODE_ENV not in os.environ and os.environ[HEADLESS_ENV] == ""
    with pytest.raises(ValueError, match="unknown mode 'slow'"):
        with kernel_environment("slow"):
            pass


def test_a_failing_notebook_still_loses_its_widget_state_and_is_named(tmp_path, caller_env):
    source = tiny_notebook(tmp_path / "01_fails.ipynb", "raise ValueError('bad sparsity')")
    [outcome] = run_series([source], "explore", runs_dir=tmp_path / "runs")
    assert outcome.status == "FAILED" and "ValueError: bad sparsity" in outcome.detail
    executed = tmp_path / "runs" / "explore" / "01_fails.ipynb"
    assert "widgets" not in json.loads(executed.read_text())["metadata"]


# --- the series: stopping, in-place writes, summary --------------------------------------------

@pytest.fixture
def fake_run(monkeypatch):
    """run_one stand-in: writes '<name> executed' as the output; raises for names in ``fail``."""
    calls, fail = [], set()

    def run(notebook, output, quick=False, log_output=False, mode=None):
        calls.append((notebook.name, mode))
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(f"{notebook.name} executed")
        if notebook.name in fail:
            raise RuntimeError("kernel died")
    monkeypatch.setattr(rn, "run_one", run)
    return calls, fail


def notebooks_in(folder: Path, n: int = 3) -> list[Path]:
    paths = [folder / f"0{i}_nb.ipynb" for i in range(1, n + 1)]
    for p in paths:
        p.write_text(f"{p.name} source")
    return paths


def test_full_stops_at_a_failure_explore_runs_every_notebook(tmp_path, fake_run):
    calls, fail = fake_run
    nbs = notebooks_in(tmp_path)
    fail.add("02_nb.ipynb")
    full = run_series(nbs, "full", runs_dir=tmp_path / "runs")
    assert [o.status for o in full] == ["ok", "FAILED"] and "kernel died" in full[1].detail
    calls.clear()
    explore = run_series(nbs, "explore", runs_dir=tmp_path / "runs")
    assert [o.status for o in explore] == ["ok", "FAILED", "ok"]
    assert calls == [(nb.name, "explore") for nb in nbs]


def test_in_place_replaces_atomically_and_keeps_the_file_mode(tmp_path, fake_run):
    nbs = notebooks_in(tmp_path, 2)
    os.chmod(nbs[0], 0o640)
    outcomes = run_series(nbs, "full", in_place=True, runs_dir=tmp_path / "runs")
    assert [o.status for o in outcomes] == ["ok", "ok"]
    assert nbs[0].read_text() == "01_nb.ipynb executed"
    assert stat.S_IMODE(nbs[0].stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["01_nb.ipynb", "02_nb.ipynb", "runs"]


def test_a_failed_in_place_write_leaves_the_source_whole_and_is_in_the_summary(tmp_path, fake_run,
                                                                             monkeypatch, capsys):
    nbs = notebooks_in(tmp_path, 2)

    def disk_full(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(rn.shutil, "copyfile", disk_full)
    monkeypatch.setattr(rn, "numbered_notebooks", lambda: nbs)
    monkeypatch.setattr(rn, "RUNS_DIR", tmp_path / "runs")
    assert rn.main(["--in-place"]) == 1
    out, err = capsys.readouterr()
    assert "01_nb.ipynb" in out and "WRITE FAILED" in out and "No space left on device" in err
    assert "02_nb.ipynb" not in out, "the series went on after a failed write"
    assert nbs[0].read_text() == "01_nb.ipynb source"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["01_nb.ipynb", "02_nb.ipynb", "runs"], "temp file left"


@pytest.mark.parametrize("argv, message", [(["--quick", "--in-place"], "--in-place is for FULL runs only"),
                                           (["--explore", "--in-place"], "--in-place is for FULL runs only"),
                                           (["--quick", "--explore"], "not allowed with argument")])
def test_contradicting_options_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit):
        rn.main(argv)
    assert message in capsys.readouterr().err


def test_in_place_is_for_full_runs_only():
    with pytest.raises(ValueError, match="FULL runs only"):
        run_series([], "explore", in_place=True)


def test_explore_summary_flags_notebooks_over_the_budget(tmp_path, fake_run, monkeypatch, capsys):
    nbs = notebooks_in(tmp_path, 2)
    ticks = iter([0.0, 5.0, 10.0, 10.0 + EXPLORE_BUDGET_S + 1])  # 01: 5 s, 02: over the budget
    monkeypatch.setattr(rn.time, "perf_counter", lambda: next(ticks))
    monkeypatch.setattr(rn, "numbered_notebooks", lambda: nbs)
    monkeypatch.setattr(rn, "RUNS_DIR", tmp_path / "runs")
    assert rn.main(["--explore"]) == 0
    out, err = capsys.readouterr()
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("0")}
    assert "SLOW" not in lines["01_nb.ipynb"] and "5.0" in lines["01_nb.ipynb"]
    assert "SLOW (> 60 s)" in lines["02_nb.ipynb"] and "02_nb.ipynb took 61 s" in err
    assert (tmp_path / "runs" / "explore" / "02_nb.ipynb").is_file()


def test_summary_does_not_flag_slow_full_runs():
    table = summary([Outcome("01_a.ipynb", 500.0, "ok")], "full")
    assert "500.0" in table and "SLOW" not in table


# --- malformed --only lists are refused before anything runs ------------------------------------

@pytest.mark.parametrize("only, message", [
    ("01,,02", "--only: '01,,02' has an empty item (a stray comma); name notebooks like --only 01,03"),
    ("01,", "--only: '01,' has an empty item (a stray comma)"),
    (",01", "--only: ',01' has an empty item (a stray comma)"),
    ("01, 03", "--only: '01, 03' has spaces in ' 03'; name notebooks without them, like --only 01,03"),
    (" 01", "--only: ' 01' has spaces in ' 01'"),
    ("01\t", "--only: '01\\t' has spaces in '01\\t'"),
    ("01,01", "--only: '01,01' names 01_baseline_training twice (01 and 01)"),
    ("1,01", "--only: '1,01' names 01_baseline_training twice (1 and 01)"),
    ("02_l1_filter_pruning,02", "--only: '02_l1_filter_pruning,02' names 02_l1_filter_pruning twice"),
    ("01,09", "--only: no notebook named 09 (known: 01_baseline_training, 02_l1_filter_pruning, 03_wanda)"),
    ("01,x1", "--only: no notebook named x1"),
])
def test_a_malformed_only_list_is_refused_and_nothing_runs(only, message, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("a notebook ran")
    monkeypatch.setattr(rn, "run_series", never)
    monkeypatch.setattr(rn, "numbered_notebooks", lambda: FAKE)
    with pytest.raises(SystemExit) as refused:
        rn.main(["--only", only])
    assert str(refused.value.code).startswith(message)
    with pytest.raises(SystemExit, match="--only: "):
        select(FAKE, only)


# --- an in-place run leaves the README's generated section in step ------------------------------

def papermill_notebook(path: Path, minutes: float) -> Path:
    """A notebook as papermill leaves it: its run's duration in ``metadata.papermill``."""
    path.write_text(json.dumps({"cells": [], "metadata": {"papermill": {
        "duration": minutes * 60, "start_time": "2026-12-01T10:00:00+00:00"}}, "nbformat": 4, "nbformat_minor": 5}))
    return path


@pytest.fixture
def repo_copy(tmp_path, monkeypatch):
    """A tmp repository (README with markers, one result, notebooks 01 and 02 run in 10 and 20 min)
    whose README is in step; the runner's notebooks, runs and README point there, never at the real ones."""
    from helpers.results import README_END, README_START, update_readme

    root = tmp_path / "repo"
    (root / "notebooks").mkdir(parents=True)
    (root / "results").mkdir()
    (root / "README.md").write_text(f"intro\n{README_START}\nold\n{README_END}\nend\n")
    record = {"name": "m", "method": "none", "test_accuracy": 91.5, "sparsity": 0.0, "params_nonzero": 10,
              "weight_bits": 32, "activation_bits": None, "size_bytes": 100, "latency_ms": None,
              "weights_file": "weights/01_m.pt", "quick": False}
    (root / "results" / "01_a.json").write_text(json.dumps([record]))
    nbs = [papermill_notebook(root / "notebooks" / "01_a.ipynb", 10),
           papermill_notebook(root / "notebooks" / "02_b.ipynb", 20)]
    assert update_readme(root=root) is False and update_readme(check=True, root=root) is True
    monkeypatch.setattr(rn, "numbered_notebooks", lambda: nbs)
    monkeypatch.setattr(rn, "RUNS_DIR", tmp_path / "runs")
    monkeypatch.setattr(rn, "README_ROOT", root)
    return root


@pytest.fixture
def papermill_run(monkeypatch):
    """run_one stand-in: the executed copy is a notebook that ran in ``minutes[name]``; raises for ``fail``."""
    minutes, fail = {}, set()

    def run(notebook, output, quick=False, log_output=False, mode=None):
        output.parent.mkdir(parents=True, exist_ok=True)
        papermill_notebook(output, minutes.get(notebook.name, 1.0))
        if notebook.name in fail:
            raise RuntimeError("kernel died")
    monkeypatch.setattr(rn, "run_one", run)
    return minutes, fail


def test_an_in_place_run_regenerates_the_readme_from_the_replaced_notebooks(repo_copy, papermill_run, capsys):
    from helpers.results import main as results_main, update_readme

    real_readme = (rn.REPO_ROOT / "README.md").read_bytes()
    minutes, _ = papermill_run
    minutes["02_b.ipynb"] = 5.0
    assert "02 20.0 min" in (repo_copy / "README.md").read_text()
    assert rn.main(["--only", "02", "--in-place"]) == 0
    assert "README.md's results table regenerated" in capsys.readouterr().out
    assert "02 5.0 min (2026-12-01)" in (repo_copy / "README.md").read_text()
    assert update_readme(check=True, root=repo_copy) is True  # python -m helpers.results --check: in step
    assert results_main(["--check"], root=repo_copy) == 1  # only because this copy has no speed.json
    assert "README.md's results table matches results/*.json" in capsys.readouterr().out
    assert (rn.REPO_ROOT / "README.md").read_bytes() == real_readme


def test_an_in_place_run_warns_of_typed_in_numbers_and_figures_not_from_it(repo_copy, papermill_run, capsys):
    """What tests/test_claims.py and tests/test_figure_provenance.py will fail on, said at the end of the run."""
    import nbformat

    typed = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("It reaches 93.74% on the test set.")])
    nbformat.write(typed, repo_copy / "notebooks" / "01_a.ipynb")
    (repo_copy / "figures").mkdir()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure()
    fig.savefig(repo_copy / "figures" / "02_plot.png")  # plain matplotlib: no provenance metadata
    plt.close(fig)
    assert rn.main(["--only", "02", "--in-place"]) == 0  # warnings: the run itself worked
    err = capsys.readouterr().err
    assert "WARNING: 01_a.ipynb cell 0: '93.74%' is shown by no output" in err
    assert "WARNING: 02_plot.png: no provenance" in err


def test_a_run_that_replaced_nothing_leaves_the_readme_alone(repo_copy, papermill_run, capsys):
    _, fail = papermill_run
    fail.add("02_b.ipynb")
    before = (repo_copy / "README.md").read_bytes()
    (repo_copy / "results" / "01_a.json").write_text("[")  # would fail a regeneration
    assert rn.main(["--only", "02", "--in-place"]) == 1
    assert (repo_copy / "README.md").read_bytes() == before
    assert "README" not in capsys.readouterr().err


def test_a_readme_that_cannot_be_regenerated_fails_the_run_and_names_the_file(repo_copy, papermill_run, capsys):
    before = (repo_copy / "README.md").read_bytes()
    broken = repo_copy / "results" / "01_a.json"
    broken.write_text('[{"name": "m",}]')
    assert rn.main(["--only", "01,02", "--in-place"]) == 1
    err = capsys.readouterr().err
    assert (f"ERROR: README.md's results table not regenerated ({broken} is not valid JSON (Expecting property "
            "name enclosed in double quotes: line 1 column 15); restore it or run its notebook again): "
            "run python -m helpers.results --write-readme") in err
    assert (repo_copy / "README.md").read_bytes() == before


def test_a_full_series_times_its_files_right_before_the_comparison_reads_them(tmp_path, fake_run, monkeypatch):
    calls, fail = fake_run
    nbs = [tmp_path / name for name in ("06_quantization.ipynb", "07_combined.ipynb", "08_comparison.ipynb")]
    for p in nbs:
        p.write_text("source")
    monkeypatch.setattr(rn, "run_benchmark", lambda: calls.append(("benchmark", None)) or rn.Outcome("helpers.benchmark", 1.0, "ok"))
    outcomes = run_series(nbs, "full", runs_dir=tmp_path / "runs")
    assert [c[0] for c in calls] == ["06_quantization.ipynb", "07_combined.ipynb", "benchmark", "08_comparison.ipynb"]
    assert [o.name for o in outcomes][2] == "helpers.benchmark"
    calls.clear()
    run_series(nbs, "quick", runs_dir=tmp_path / "runs")  # QUICK never re-times the committed files
    assert ("benchmark", None) not in calls
    calls.clear()
    run_series(nbs[2:], "full", runs_dir=tmp_path / "runs")  # 08 alone reads the speed file as it is
    assert [c[0] for c in calls] == ["08_comparison.ipynb"]


def test_a_failed_benchmark_stops_the_series_before_the_comparison(tmp_path, fake_run, monkeypatch):
    calls, _ = fake_run
    nbs = [tmp_path / name for name in ("07_combined.ipynb", "08_comparison.ipynb")]
    for p in nbs:
        p.write_text("source")
    monkeypatch.setattr(rn, "run_benchmark", lambda: rn.Outcome("helpers.benchmark", 1.0, "FAILED", "exited 2"))
    outcomes = run_series(nbs, "full", runs_dir=tmp_path / "runs")
    assert [(o.name, o.status) for o in outcomes] == [("07_combined.ipynb", "ok"), ("helpers.benchmark", "FAILED")]
    assert [c[0] for c in calls] == ["07_combined.ipynb"]


@pytest.mark.parametrize("only, ok", [("03,04,05,06,07,08", True), (None, True), ("08", True),
                                      ("03", False), ("03,05,06,07,08", False), ("01,02", False)])
def test_an_in_place_run_goes_on_to_the_last_notebook(only, ok):
    notebooks = numbered_notebooks()
    problem = rn.in_place_problem(notebooks, select(notebooks, only))
    assert (problem is None) is ok
    if not ok:
        assert "--only" in problem and problem.endswith(",08")
