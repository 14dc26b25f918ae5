"""Live sliders for the notebooks, safe when no front end is attached (papermill).

``live_view(topic, state, reference)`` turns a ``helpers.live`` topic module (``CONTROLS``,
``point``, ``draw``) into controls, a readout of the measured numbers and ONE output area holding
ONE figure, redrawn on every change. The first value is drawn once, by the widget. Headless runs
(``$COURSE_HEADLESS`` set by ``helpers.run_notebooks``) build no widget: they draw every control's
headless values once, so an error in any of them fails the run, and print the numbers.
"""
from __future__ import annotations

import base64
import html
import inspect
import io
import os
import time
import traceback
from typing import Callable, Sequence

import matplotlib.pyplot as plt

from .paths import HEADLESS_ENV, MODE_ENV



# --------------------------------------------------------------------------------------------- helpers
def default_values(controls: dict) -> dict:
    """Each control at its default ``value``."""
    return {name: spec["value"] for name, spec in controls.items()}


def headless_points(controls: dict) -> list[dict]:
    """The defaults, then each control's headless values with the others at their default (no repeats)."""
    points = [default_values(controls)]
    for name, spec in controls.items():
        for value in spec["headless"]:
            candidate = {**points[0], name: value}
            if candidate not in points:
                points.append(candidate)
    return points


def _short(value):
    """A scalar of a result as a readout shows it; None for what is no scalar (arrays, tables)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return round(value, 4)
    return getattr(value, "item", lambda: None)() if getattr(value, "ndim", 1) == 0 else None


def scalars(result: dict) -> dict:
    """The scalar entries of a point's result (what a readout or a table can show)."""
    return {k: _short(v) for k, v in result.items() if v is None or _short(v) is not None}


def readout_html(result: dict, seconds: float) -> str:
    """Validation accuracy first, then the other numbers of the result, and the time the move took."""
    numbers = scalars(result)
    accuracy = numbers.pop("val_accuracy", None)
    head = ("validation accuracy <b>n/a</b>" if accuracy is None
            else f"validation accuracy <b>{accuracy:.2f}%</b>")
    rest = " · ".join(f"{html.escape(str(k))}: {html.escape(str(v))}" for k, v in numbers.items())
    return f"{head} · {rest} <span style='color:grey'>({seconds:.2f} s)</span>"


def figure_output(fig) -> dict:
    """The figure as one display_data output (PNG), what an ``Output`` widget holds."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    png = base64.b64encode(buffer.getvalue()).decode("ascii")
    return {"output_type": "display_data", "metadata": {},
            "data": {"image/png": png, "text/plain": f"<Figure {fig.get_figwidth():g}x{fig.get_figheight():g} in>"}}


def _control_widget(widgets, name: str, spec: dict):
    common = dict(description=name.replace("_", " "), value=spec["value"], continuous_update=False,
                  style={"description_width": "initial"})
    if spec["kind"] == "float":
        return widgets.FloatSlider(min=spec["min"], max=spec["max"], step=spec["step"], readout_format=".2f",
                                   **common)
    if spec["kind"] == "int":
        return widgets.IntSlider(min=spec["min"], max=spec["max"], step=spec["step"], **common)
    common.pop("continuous_update")
    options = [(str(option), option) for option in spec["options"]]
    if len(options) <= 4:
        return widgets.ToggleButtons(options=options, **common)
    return widgets.Dropdown(options=options, **common)


# --------------------------------------------------------------------------------------------- live view
def live_view(topic, state, reference, figure_name: str | None = None, figures_dir=None):
    """A live view of ``topic`` (a ``helpers.live`` module) on ``state``; returns the widget, or None.

    With a front end: a control per entry of ``topic.CONTROLS`` (``continuous_update=False``), a
    readout (validation accuracy and the result's numbers, or the error) and one ``Output`` holding
    one figure, redrawn into the same matplotlib figure on every change. Headless
    (``$COURSE_HEADLESS``) or without ipywidgets: no widget; the defaults and every headless value
    are drawn once (errors propagate), a table of the numbers is printed, the figures closed.
    Both: the default-values figure is saved as ``<figures_dir>/<figure_name>.png`` when named.
    """
    if figure_name is not None and figures_dir is None:
        raise ValueError("figure_name needs figures_dir (where the PNG goes)")
    controls = topic.CONTROLS
    try:
        import ipywidgets as widgets
    except ImportError:
        widgets = None
    if os.environ.get(HEADLESS_ENV) or widgets is None:
        _run_headless(topic, state, reference, figure_name, figures_dir, controls, widget_missing=widgets is None)
        return None

    inputs = {name: _control_widget(widgets, name, spec) for name, spec in controls.items()}
    readout = widgets.HTML(value="…")
    readout.add_class("course-readout")  # the browser test reads the accuracy here
    output = widgets.Output(layout={"min_height": "300px"})
    current = {"fig": None}

    def update(change=None):
        started = time.perf_counter()
        values = {name: box.value for name, box in inputs.items()}
        try:
            result = topic.point(state, **values)
            fig = topic.draw(result, reference, fig=current["fig"])
            plt.close(fig)  # shown through the Output only, never again by the inline backend
            current["fig"] = fig
            output.outputs = (figure_output(fig),)
            readout.value = readout_html(result, time.perf_counter() - started)
        except Exception as err:  # shown, not swallowed: a callback's error would only reach the log
            readout.value = (f"<b style='color:#b00020'>error at {html.escape(str(values))}: "
                             f"{html.escape(type(err).__name__)}: {html.escape(str(err))}</b>")
            output.outputs = ({"output_type": "stream", "name": "stderr", "text": traceback.format_exc()},)
            return None
        return result

    for box in inputs.values():
        box.observe(update, names="value")
    first = update()  # the first value, drawn once, by the widget
    if figure_name is not None and first is not None:
        from .plots import save_fig
        save_fig(current["fig"], figure_name, figures_dir)
    view = widgets.VBox([widgets.HBox(list(inputs.values()), layout={"flex_flow": "row wrap"}), readout, output])
    view.update = update  # for tests and for a person who wants to redraw by hand
    return view


def _run_headless(topic, state, reference, figure_name, figures_dir, controls, widget_missing: bool):
    import pandas as pd

    rows = []
    points = headless_points(controls)
    if os.environ.get(MODE_ENV) == "explore":  # a person's kernel draws the defaults once; QUICK and FULL draw all
        points = points[:1]
    for i, values in enumerate(points):
        started = time.perf_counter()
        result = topic.point(state, **values)
        fig = topic.draw(result, reference)
        if i == 0 and figure_name is not None:
            from .plots import save_fig
            save_fig(fig, figure_name, figures_dir)
        plt.close(fig)
        rows.append({**values, **{k: v for k, v in scalars(result).items() if k not in values},
                     "seconds": round(time.perf_counter() - started, 2)})
    why = "ipywidgets is not installed" if widget_missing else "headless run"
    drawn = "the defaults drawn (explore)" if len(points) == 1 else "each control's values drawn once"
    print(f"({why}: the live view appears when you run this cell in Jupyter; {drawn}:)")
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(pd.DataFrame(rows).to_string(index=False))


# --------------------------------------------------------------------------------------------- deprecated
def slider_over(values: Sequence, draw: Callable, description: str = "value"):
    """Deprecated: use ``live_view`` (a live point per move instead of flipping between precomputed
    values). Kept until every notebook has moved.

    A slider over ``values`` calling ``draw(value)``; returns the widget (or None). Each value is
    drawn once: headless runs (``$COURSE_HEADLESS``) and plain Python without ipywidgets draw the
    first value here, so an error in it fails the run; with a front end the widget draws it.
    """
    if not values:
        raise ValueError("slider_over needs at least one value")
    if os.environ.get(HEADLESS_ENV):
        draw(values[0])
        print(f"(headless run: the slider over {description} appears when you run this cell in Jupyter)")
        return None
    try:
        import ipywidgets as widgets
    except ImportError:  # plain Python without ipywidgets: one static figure
        draw(values[0])
        return None
    slider = widgets.SelectionSlider(options=list(values), value=values[0], description=description,
                                     continuous_update=False)
    first_argument = next(iter(inspect.signature(draw).parameters))
    return widgets.interactive(draw, **{first_argument: slider})  # draws the first value itself
