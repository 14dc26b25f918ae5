"""live_view: one figure per slider, every headless value drawn once, errors shown; slider_over (deprecated)."""
import types

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from helpers.paths import MODE_ENV  # noqa: E402
from helpers.widgets import HEADLESS_ENV, headless_points, live_view, slider_over  # noqa: E402

pytest.importorskip("ipywidgets")


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
        if fig is None:
            fig = plt.figure()
        fig.clear()
        fig.subplots().plot([0, 1], [0, result["val_accuracy"]])
        return fig

    controls = {"ratio": {"kind": "float", "min": 0.0, "max": 0.9, "step": 0.1, "value": 0.5, "headless": [0.1, 0.5, 0.9]},
                "mode": {"kind": "choice", "options": ["a", "b"], "value": "a", "headless": ["a", "b"]}}
    return types.SimpleNamespace(CONTROLS=controls, point=point, draw=draw, calls=calls)


def test_headless_draws_the_default_and_every_headless_value_once(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv(HEADLESS_ENV, "1")
    monkeypatch.delenv(MODE_ENV, raising=False)
    topic = fake_topic()
    plt.close("all")
    assert live_view(topic, None, None, figure_name="live", figures_dir=tmp_path) is None
    assert topic.calls["point"] == [(0.5, "a"), (0.1, "a"), (0.9, "a"), (0.5, "b")]
    assert topic.calls["draw"] == [50.0, 10.0, 90.0, 50.0]
    assert (tmp_path / "live.png").stat().st_size > 0 and plt.get_fignums() == []
    out = capsys.readouterr().out
    assert "headless" in out and "90.0" in out and "mask" not in out  # numbers only, no arrays


def test_headless_explore_draws_only_the_defaults_as_a_person_would_see(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv(HEADLESS_ENV, "1")
    monkeypatch.setenv(MODE_ENV, "explore")
    topic = fake_topic()
    assert live_view(topic, None, None, figure_name="live", figures_dir=tmp_path) is None
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
    view = live_view(topic, None, None, figure_name="live", figures_dir=tmp_path)
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
    view = live_view(fake_topic(fail_at=0.3), None, None)
    slider, readout, output = view.children[0].children[0], view.children[1], view.children[2]
    slider.value = 0.3
    assert "ZeroDivisionError" in readout.value and "boom" in readout.value
    assert output.outputs[0]["output_type"] == "stream" and "boom" in output.outputs[0]["text"]
    slider.value = 0.6  # and the view recovers
    assert "60.00%" in readout.value and "image/png" in output.outputs[0]["data"]


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
