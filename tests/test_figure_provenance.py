"""A figure, and a printed speed-up, come from the run that made the committed notebook (issue 30.1).

save_fig writes PNG text metadata (the run's mode, the time, the sha256 of every results file the
figure drew); figure_problems checks it against the committed notebook's papermill run and the
committed results. The figures committed before the 2026-12-06 FULL series predated the metadata
(and two live views drew the previous series' records): these checks failed on them."""
import json
from datetime import datetime, timedelta, timezone

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from helpers import provenance  # noqa: E402
from helpers.artifacts import stage_records  # noqa: E402
from helpers.claims import printed_speedups, speedup_problems  # noqa: E402
from helpers.paths import HEADLESS_ENV, MODE_ENV, NOTEBOOKS_DIR, REPO_ROOT  # noqa: E402
from helpers.plots import save_fig  # noqa: E402
from helpers.records import read_results  # noqa: E402
from helpers.widgets import live_view  # noqa: E402


@pytest.fixture
def full_run(tmp_path, monkeypatch):
    """A FULL run in ``tmp_path``: a notebook 03 whose papermill run is going on now, a results folder."""
    monkeypatch.setitem(provenance._run, "mode", "full")
    now = datetime.now(timezone.utc)
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    meta = {"papermill": {"start_time": (now - timedelta(minutes=1)).isoformat(),
                          "end_time": (now + timedelta(minutes=10)).isoformat()}}
    (notebooks / "03_demo.ipynb").write_text(json.dumps({"cells": [], "metadata": meta}))
    (tmp_path / "results").mkdir()
    return tmp_path


def write(path, records):
    path.write_text(json.dumps(records))
    return path


def figure():
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    return fig


def problems(root, name="03_demo_plot.png"):
    return provenance.figure_problems(root / "figures" / name, root=root, notebooks_dir=root / "notebooks")


def test_save_fig_records_the_run_and_the_bytes_of_the_records_it_drew(full_run):
    results = write(full_run / "results" / "03_demo.json", [{"name": "a"}])
    path = save_fig(figure(), "03_demo_plot", full_run / "figures", records=full_run / "results")
    meta = provenance.read_provenance(path)
    assert meta["mode"] == "full" and meta["records"] == {"results/03_demo.json": provenance.digests(results)["results/03_demo.json"]}
    assert problems(full_run) == []


def test_a_figure_of_this_runs_computations_only_names_no_records(full_run):
    save_fig(figure(), "03_demo_plot", full_run / "figures")
    assert provenance.read_provenance(full_run / "figures" / "03_demo_plot.png")["records"] == {}
    assert problems(full_run) == []


def test_records_rewritten_after_the_figure_was_drawn_make_it_stale(full_run):
    results = write(full_run / "results" / "03_demo.json", [{"name": "previous series"}])
    save_fig(figure(), "03_demo_plot", full_run / "figures", records=results)
    write(results, [{"name": "this run"}])
    assert problems(full_run) == ["03_demo_plot.png: drew results/03_demo.json as it was before (sha256 "
                                  f"{provenance.read_provenance(full_run / 'figures' / '03_demo_plot.png')['records']['results/03_demo.json'][:12]}…), "
                                  "not the committed file (an earlier run's records)"]


def test_a_figure_without_provenance_another_mode_or_another_run_fails(full_run, monkeypatch):
    (full_run / "figures").mkdir()
    fig = figure()
    fig.savefig(full_run / "figures" / "03_old.png")  # as figures were saved before provenance
    assert "no provenance" in problems(full_run, "03_old.png")[0]
    monkeypatch.setitem(provenance._run, "mode", "quick")
    save_fig(fig, "03_quick", full_run / "figures")
    assert "saved by a quick run" in problems(full_run, "03_quick.png")[0]
    monkeypatch.setitem(provenance._run, "mode", "full")
    save_fig(fig, "05_other", full_run / "figures")
    assert "no papermill-run notebook 05" in problems(full_run, "05_other.png")[0]
    notebook = full_run / "notebooks" / "03_demo.ipynb"
    long_ago = {"papermill": {"start_time": "2020-01-01T00:00:00+00:00", "end_time": "2020-01-01T01:00:00+00:00"}}
    notebook.write_text(json.dumps({"cells": [], "metadata": long_ago}))
    save_fig(fig, "03_demo_plot", full_run / "figures")
    assert "outside the run of 03_demo.ipynb" in problems(full_run)[0]


def test_a_missing_records_file_cannot_have_been_drawn(full_run):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_fig(figure(), "03_demo_plot", full_run / "figures", records=full_run / "results" / "03_none.json")


def test_reading_collects_the_results_files_the_readers_read(full_run):
    write(full_run / "results" / "03_demo.json", [])
    record = {"name": "b", "method": "m", "test_accuracy": 90.0, "sparsity": 0.0, "params_nonzero": 1,
              "weight_bits": 32, "activation_bits": None, "size_bytes": 1, "latency_ms": None,
              "weights_file": None, "quick": False}
    write(full_run / "results" / "04_demo.json", [record])
    stage_records(full_run / "results", "03_demo")  # outside: not collected
    with provenance.reading() as drew:
        stage_records(full_run / "results", "03_demo")
        read_results(full_run / "results")
    assert sorted(drew) == ["results/03_demo.json", "results/04_demo.json"]


def test_a_live_view_saved_before_this_run_wrote_its_records_is_stale_until_finish(full_run, monkeypatch):
    """What happened to 03_masks_block2.png and 06_bit_width_explorer.png in FULL: the live view at
    the top drew the previous series' records; finish() after write_results makes it fresh."""
    import types

    monkeypatch.setenv(HEADLESS_ENV, "1")
    monkeypatch.setenv(MODE_ENV, "full")
    results = write(full_run / "results" / "03_demo.json", [{"test_accuracy": 90.0}])
    topic = types.SimpleNamespace(
        CONTROLS={"r": {"kind": "float", "min": 0, "max": 1, "step": 0.1, "value": 0.5, "headless": []}},
        point=lambda state, r: {"val_accuracy": 100 * r},
        draw=lambda result, reference, fig=None: figure(),
        reference=lambda folder: stage_records(folder, "03_demo"))
    view = live_view(topic, None, full_run / "results", figure_name="03_demo_plot", figures_dir=full_run / "figures")
    write(results, [{"test_accuracy": 91.0}])  # this run's records, written later in the notebook
    assert "as it was before" in problems(full_run)[0]
    view.finish(full_run / "results")
    assert problems(full_run) == []


COMMITTED_FIGURES = sorted((REPO_ROOT / "figures").glob("[0-9][0-9]_*.png"))


def test_there_are_committed_figures_to_check():
    assert len(COMMITTED_FIGURES) >= 30


def test_every_committed_figure_comes_from_the_run_that_made_its_notebook():
    found = [p for figure_path in COMMITTED_FIGURES for p in provenance.figure_problems(figure_path)]
    assert not found, f"{len(found)} problems:\n" + "\n".join(found)


# ----------------------------------------------------------------------------- printed speed-ups
def test_printed_speedups_are_read_with_their_range():
    cell = {"cell_type": "code", "outputs": [
        {"output_type": "stream", "text": "fastest: int8, 10.12x (9.74-10.44) the baseline's speed\n"},
        {"output_type": "execute_result", "data": {"text/plain": "  108.2   1.00   0.97     0.97-0.98    93.72"}}]}
    found = [text for _, text, _ in printed_speedups({"cells": [cell]})]
    assert found == ["10.12x (9.74-10.44)", "0.97     0.97-0.98"]


def test_a_printed_speedup_must_be_a_record_of_speed_json(tmp_path):
    speed = [{"weights_file": "weights/07_x.int8", "speedup": {"batch_256": {"median": 9.8349, "q1": 9.6483, "q3": 10.2159}}}]
    (tmp_path / "speed.json").write_text(json.dumps(speed))

    def notebook(text):
        cell = {"cell_type": "code", "outputs": [{"output_type": "stream", "text": text}]}
        (tmp_path / "08_x.ipynb").write_text(json.dumps({"cells": [cell]}))
        return tmp_path / "08_x.ipynb"

    assert speedup_problems(notebook("int8 9.83x (9.65-10.22) at batch 256"), tmp_path / "speed.json") == []
    stale = speedup_problems(notebook("int8 10.12x (9.74-10.44) at batch 256"), tmp_path / "speed.json")
    assert stale == ["08_x.ipynb cell 0: '10.12x (9.74-10.44)' is in no record of speed.json"]


def test_the_comparison_prints_the_speedups_of_the_committed_speed_json():
    notebook = next(NOTEBOOKS_DIR.glob("08_*.ipynb"))
    assert printed_speedups(json.loads(notebook.read_text())), "08 prints no speed-up: the check would be empty"
    found = speedup_problems(notebook, REPO_ROOT / "results" / "speed.json")
    assert not found, "\n".join(found)


def test_every_committed_figure_is_saved_by_a_notebook():
    """A figure no notebook saves any more (renamed or dropped) is never refreshed: delete it."""
    sources = "".join(p.read_text() for p in NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    orphans = [p.name for p in COMMITTED_FIGURES if f'\\"{p.stem}\\"' not in sources]
    assert not orphans, f"no notebook saves these committed figures (delete them): {orphans}"


@pytest.mark.parametrize("topic", ["filters", "wanda", "slimming", "schedules", "quantization", "combined", "comparison"])
def test_each_live_reference_names_the_results_files_it_reads(topic):
    """live_view(topic, state, results_folder) can only name its reference's files if the topic reads
    them through the noted readers (stage_records, read_results, read_json)."""
    import importlib

    module = importlib.import_module(f"helpers.live.{topic}")
    with provenance.reading() as drew:
        table = module.reference(REPO_ROOT / "results")
    assert len(table) > 0 and drew and all(key.startswith("results/") for key in drew), drew
