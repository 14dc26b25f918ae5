"""slider_over: draws up front, builds a slider over exactly the given values, none headless."""
import pytest

from helpers.widgets import HEADLESS_ENV, slider_over


def test_slider_draws_first_value_and_offers_every_value(monkeypatch):
    monkeypatch.delenv(HEADLESS_ENV, raising=False)
    drawn = []

    def draw(ratio):
        drawn.append(ratio)

    widget = slider_over([0.3, 0.5, 0.7], draw, description="ratio")
    assert drawn[0] == 0.3
    slider = widget.children[0]
    assert list(slider.options) == [0.3, 0.5, 0.7] and slider.description == "ratio"
    slider.value = 0.7
    assert drawn[-1] == 0.7  # moving the slider calls draw with the new value


def test_headless_runs_draw_but_create_no_widget(monkeypatch, capsys):
    monkeypatch.setenv(HEADLESS_ENV, "1")
    drawn = []
    assert slider_over([2, 4, 8], drawn.append, description="bits") is None
    assert drawn == [2] and "headless" in capsys.readouterr().out


def test_an_error_in_draw_is_not_hidden_and_empty_values_are_refused(monkeypatch):
    monkeypatch.setenv(HEADLESS_ENV, "1")
    with pytest.raises(ZeroDivisionError):
        slider_over([0], lambda v: 1 / v)
    with pytest.raises(ValueError, match="at least one"):
        slider_over([], print)
