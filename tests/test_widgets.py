"""live_view: one figure per slider, every headless value drawn once, errors shown, the saved figure
redrawn by finish() with this run's records; slider_over (deprecated)."""
import json
import types

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from helpers import provenance  # noqa: E402
from helpers.artifacts import stage_records  # noqa: E402
from helpers.paths import MODE_ENV  # noqa: E402
from helpers.widgets import HEADLESS_ENV, UNKNOWN_REFERENCE, headless_points, live_view, slider_over  # noqa: E402

pytest.importorskip("ipywidgets")


@pytest.fixture(autouse=True)
def no_run_mode(monkeypatch):
    """The mode comes from $COURSE_MODE here, not from a start_run another test made."""
    monkeypatch.setitem(provenance._run, "mode", None)


def fake_topic(fail_at=None):
    """A topic module stand-in that records its calls: accuracy = 100 * ratio."""
    calls = {"point": [], "draw": []}

    def point(state, ratio=0.5, mode="a"):
        calls["point"].append((ratio, mode))
        if fail_at is not None and ratio == fail_at:
            raise ZeroDivisionError("boom at the chosen ratio")
        return {"val_accuracy": 100.0 * ratio, "mode": mode, "params": 7, "mask": [[1, 0]]}

    def draw(result, reference, fig=None):
        calls["draw"].append(result["val_accuracy"])
        calls.setdefault("references", []).append(reference)
        if fig is None:
            fig = plt.figure()
        fig.clear()
        fig.subplots().plot([0, 1], [0, result["val_accuracy"]])
        return fig

    def reference(results_dir):
        path = results_dir / "03_demo.json"
        return stage_records(results_dir, "03_demo") if path.is_file() else []

    controls = {"ratio": {"kind": "float", "min": 0.0, "max": 0.9, "step": 0.1, "value": 0.5, "headless": [0.1, 0.5, 0.9]},
                "mode": {"kind": "choice", "options": ["a", "b"], "value": "a", "headless": ["a", "b"]}}
    return types.SimpleNamespace(CONTROLS=controls, point=point, draw=draw, reference=reference, calls=calls)


def test_headless_draws_the_default_and_every_headless_value_once(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv(HEADLESS_ENV, "1")
    monkeypatch.delenv(MODE_ENV, raising=False)
    topic = fake_topic()
    plt.close("all")
    assert live_view(topic, None, None, figure_name="live", figures_dir=tmp_path).widget is None
    assert topic.calls["point"] == [(0.5, "a"), (0.1, "a"), (0.9, "a"), (0.5, "b")]
    assert topic.calls["draw"] == [50.0, 10.0, 90.0, 50.0]
    assert (tmp_path / "live.png").stat().st_size > 0 and plt.get_fignums() == []
    out = capsys.readouterr().out
    assert "headless" in out and "90.0" in out and "mask" not in out  # numbers only, no arrays


def test_headless_explore_draws_only_the_defaults_as_a_person_would_see(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv(HEADLESS_ENV, "1")
    monkeypatch.setenv(MODE_ENV, "explore")
    topic = fake_topic()
    assert live_view(topic, None, None, figure_name="live", figures_dir=tmp_path).widget is None
    assert topic.calls["point"] == [(0.5, "a")] and (tmp_path / "live.png").stat().st_size > 0
    assert "the defaults drawn (explore)" in capsys.readouterr().out


def test_headless_errors_fail_the_run(monkeypatch):
    monkeypatch.setenv(HEADLESS_ENV, "1")
    with pytest.raises(ZeroDivisionError):
        live_view(fake_topic(fail_at=0.9), None, None)


def test_headless_points_keep_others_at_default_without_repeats():
    points = headless_points(fake_topic().CONTROLS)
    assert points[0] == {"ratio": 0.5, "mode": "a"} and len(points) == len({tuple(p.items()) for p in points}) == 4


def test_a_move_redraws_one_figure_into_one_output(monkeypatch, tmp_path):
    monkeypatch.delenv(HEADLESS_ENV, raising=False)
    topic = fake_topic()
    plt.close("all")
    view = live_view(topic, None, None, figure_name="live", figures_dir=tmp_path).widget
    slider, toggle = view.children[0].children
    readout, output = view.children[1], view.children[2]
    assert topic.calls["draw"] == [50.0]  # the first value: drawn once, by the widget
    assert (tmp_path / "live.png").is_file()
    assert "50.00%" in readout.value and len(output.outputs) == 1
    first_png = output.outputs[0]["data"]["image/png"]
    assert slider.continuous_update is False and list(toggle.options) == [("a", "a"), ("b", "b")]
    slider.value = 0.8
    assert topic.calls["point"][-1] == (0.8, "a") and "80.00%" in readout.value
    assert len(output.outputs) == 1 and output.outputs[0]["data"]["image/png"] != first_png
    toggle.value = "b"
    assert topic.calls["point"][-1] == (0.8, "b") and "mode: b" in readout.value
    assert len(output.outputs) == 1 and len(topic.calls["draw"]) == 3
    assert len(plt.get_fignums()) <= 1  # one figure follows the slider, no new ones pile up


def test_an_error_in_a_move_is_shown_in_the_readout_and_the_output(monkeypatch):
    monkeypatch.delenv(HEADLESS_ENV, raising=False)
    view = live_view(fake_topic(fail_at=0.3), None, None).widget
    slider, readout, output = view.children[0].children[0], view.children[1], view.children[2]
    slider.value = 0.3
    assert "ZeroDivisionError" in readout.value and "boom" in readout.value
    assert output.outputs[0]["output_type"] == "stream" and "boom" in output.outputs[0]["text"]
    slider.value = 0.6  # and the view recovers
    assert "60.00%" in readout.value and "image/png" in output.outputs[0]["data"]


def write_records(folder, accuracy):
    folder.mkdir(exist_ok=True)
    (folder / "03_demo.json").write_text(json.dumps([{"name": "a", "test_accuracy": accuracy}]))
    return folder / "03_demo.json"


@pytest.mark.parametrize("headless", [True, False])
def test_finish_redraws_the_saved_figure_with_this_runs_records(monkeypatch, capsys, tmp_path, headless):
    """FULL: the view at the top draws the previous run's records; finish(), after the notebook wrote
    this run's, saves the figure again from them, and its provenance names the new bytes."""
    monkeypatch.setenv(HEADLESS_ENV, "1") if headless else monkeypatch.delenv(HEADLESS_ENV, raising=False)
    monkeypatch.setenv(MODE_ENV, "full")
    results = tmp_path / "results"
    write_records(results, 90.0)  # the previous series' records
    topic = fake_topic()
    view = live_view(topic, None, results, figure_name="03_live", figures_dir=tmp_path)
    before = provenance.read_provenance(tmp_path / "03_live.png")["records"]
    assert topic.calls["references"][0] == [{"name": "a", "test_accuracy": 90.0}]
    new = write_records(results, 91.5)  # this run writes its records
    view.finish(results)
    after = provenance.read_provenance(tmp_path / "03_live.png")
    assert topic.calls["references"][-1] == [{"name": "a", "test_accuracy": 91.5}]
    assert after["records"] == {"results/03_demo.json": provenance.digests(new)["results/03_demo.json"]}
    assert before != after["records"] and after["mode"] == "full"
    assert "redrawn with this run's records (results/03_demo.json)" in capsys.readouterr().out


def test_finish_on_the_explore_path_keeps_the_committed_reference(monkeypatch, tmp_path):
    monkeypatch.setenv(HEADLESS_ENV, "1")
    monkeypatch.setenv(MODE_ENV, "explore")
    topic = fake_topic()
    view = live_view(topic, None, None, figure_name="03_live", figures_dir=tmp_path)
    drawn = len(topic.calls["draw"])
    view.finish(tmp_path / "nothing here")
    assert len(topic.calls["draw"]) == drawn


def test_a_reference_passed_as_a_table_is_marked_unknown_in_the_figure(monkeypatch, tmp_path):
    monkeypatch.setenv(HEADLESS_ENV, "1")
    live_view(fake_topic(), None, [{"name": "a"}], figure_name="03_live", figures_dir=tmp_path)
    assert UNKNOWN_REFERENCE in provenance.read_provenance(tmp_path / "03_live.png")["records"]


def test_headless_in_a_kernel_shows_the_default_figure_as_an_image(monkeypatch, tmp_path):
    """papermill runs a kernel: the default figure goes into the notebook as image/png, and finish()
    replaces that same output (one display id) rather than adding a second image."""
    shown = []

    class Handle:
        def update(self, data, raw):
            shown.append(("update", sorted(data)))

    def display(data, raw=False, display_id=False):
        shown.append(("display", sorted(data)))
        return Handle()

    import IPython.display

    monkeypatch.setattr(IPython.display, "display", display)
    monkeypatch.setattr("helpers.widgets._in_kernel", lambda: True)
    monkeypatch.setenv(HEADLESS_ENV, "1")
    monkeypatch.setenv(MODE_ENV, "full")
    write_records(tmp_path / "results", 90.0)
    view = live_view(fake_topic(), None, tmp_path / "results")
    assert shown == [("display", ["image/png", "text/plain"])]
    view.finish(tmp_path / "results")
    assert shown[-1] == ("update", ["image/png", "text/plain"]) and len(shown) == 2


def test_figure_name_needs_a_folder():
    with pytest.raises(ValueError, match="figures_dir"):
        live_view(fake_topic(), None, None, figure_name="x")


# ----------------------------------------------------------------------------- slider_over (deprecated)
def test_slider_draws_first_value_once_and_offers_every_value(monkeypatch):
    monkeypatch.delenv(HEADLESS_ENV, raising=False)
    drawn = []

    def draw(ratio):
        drawn.append(ratio)

    widget = slider_over([0.3, 0.5, 0.7], draw, description="ratio")
    assert drawn == [0.3]  # once, by the widget (no second static draw)
    slider = widget.children[0]
    assert list(slider.options) == [0.3, 0.5, 0.7] and slider.description == "ratio"
    slider.value = 0.7
    assert drawn == [0.3, 0.7]


def test_slider_headless_runs_draw_once_but_create_no_widget(monkeypatch, capsys):
    monkeypatch.setenv(HEADLESS_ENV, "1")
    drawn = []
    assert slider_over([2, 4, 8], drawn.append, description="bits") is None
    assert drawn == [2] and "headless" in capsys.readouterr().out


def test_slider_error_in_draw_is_not_hidden_and_empty_values_are_refused(monkeypatch):
    monkeypatch.setenv(HEADLESS_ENV, "1")
    with pytest.raises(ZeroDivisionError):
        slider_over([0], lambda v: 1 / v)
    with pytest.raises(ValueError, match="at least one"):
        slider_over([], print)


LIVE_NOTEBOOK = '''import json, pathlib, types
import matplotlib.pyplot as plt
from helpers.artifacts import stage_records
from helpers.widgets import live_view

folder = pathlib.Path({folder!r})

def draw(result, reference, fig=None):  # the width says which records it drew: 2 in (90%), 3 in (91%)
    return plt.figure(figsize=(2 + (reference[0]["test_accuracy"] > 90), 2))

topic = types.SimpleNamespace(
    CONTROLS={{"r": {{"kind": "float", "min": 0, "max": 1, "step": 0.1, "value": 0.5, "headless": [0.2]}}}},
    point=lambda state, r: {{"val_accuracy": 100 * r}}, draw=draw,
    reference=lambda results: stage_records(results, "03_demo"))
live = live_view(topic, None, folder / "results", figure_name="03_demo", figures_dir=folder / "figures")'''


@pytest.mark.notebook
def test_a_headless_notebook_carries_the_live_figure_and_finish_replaces_it(tmp_path):
    """papermill (FULL): the live view's cell holds the default figure as an image beside its table;
    finish(), after this run wrote its records, replaces that image and the saved PNG."""
    import nbformat

    from helpers.run_notebooks import run_one

    write_records(tmp_path / "results", 90.0)
    cells = [nbformat.v4.new_code_cell(LIVE_NOTEBOOK.format(folder=str(tmp_path))),
             nbformat.v4.new_code_cell(f"import json\npathlib.Path({str(tmp_path / 'results' / '03_demo.json')!r})"
                                       ".write_text(json.dumps([{'name': 'a', 'test_accuracy': 91.0}]))\n"
                                       "live.finish(folder / 'results')")]
    notebook = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "language": "python",
                                                                               "display_name": "Python 3"}})
    nbformat.write(notebook, tmp_path / "03_demo.ipynb")
    run_one(tmp_path / "03_demo.ipynb", tmp_path / "executed.ipynb", mode="full")
    executed = nbformat.read(tmp_path / "executed.ipynb", as_version=4)
    images = [o for o in executed.cells[0].outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1 and images[0]["data"]["text/plain"] == "<Figure 3x2 in>"  # redrawn from 91%
    table = "".join(o.get("text", "") for o in executed.cells[0].outputs)
    assert "headless run" in table and "val_accuracy" in table
    assert "redrawn with this run's records (results/03_demo.json)" in executed.cells[1].outputs[0]["text"]
    saved = provenance.read_provenance(tmp_path / "figures" / "03_demo.png")
    assert saved["mode"] == "full" and list(saved["records"]) == ["results/03_demo.json"]
