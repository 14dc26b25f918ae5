"""Live sliders for the notebooks, safe when no front end is attached (papermill).

``live_view(topic, state, reference)`` turns a ``helpers.live`` topic module (``CONTROLS``,
``point``, ``draw``) into controls, a readout of the measured numbers and ONE output area holding
ONE figure, redrawn on every change. The first value is drawn once, by the widget. Headless runs
(``$COURSE_HEADLESS`` set by ``helpers.run_notebooks``) build no widget: they draw every control's
headless values once, so an error in any of them fails the run, show the default figure as an image
and print the numbers. ``live_view`` returns a ``LiveView``: its ``finish(results_dir)``, at the end
of a notebook, redraws the saved figure with the records this run wrote.
"""
from __future__ import annotations

import base64
import html
import inspect
import io
import os
import time
import traceback
from pathlib import Path
from typing import Callable, Sequence

import matplotlib.pyplot as plt

from .paths import HEADLESS_ENV
from .plots import save_fig
from .provenance import current_mode, reading


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
UNKNOWN_REFERENCE = "(a reference table: pass live_view the results folder to name its files)"


def _in_kernel() -> bool:
    """Whether this runs in an IPython kernel (a notebook, papermill's included): display works."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return getattr(get_ipython(), "kernel", None) is not None


class LiveView:
    """What ``live_view`` returns: the widget (``widget``, None headless) and ``finish``.

    ``finish(results_dir)``, called at the end of a notebook after it wrote its records, redraws the
    default figure with the reference of ``results_dir`` (this run's records), saves it again and
    replaces the image shown at the top: in FULL the view at the top of a notebook runs before the
    notebook writes this run's results, so it drew the previous run's. The explore path keeps the
    committed reference and draws nothing again."""

    def __init__(self, topic, state, figure_name, figures_dir, records):
        self.topic, self.state, self.figure_name, self.figures_dir = topic, state, figure_name, figures_dir
        self.records, self.reference, self.drew = records, None, {}
        self.widget, self.default_result, self._display, self._redraw = None, None, None, None

    def set_reference(self, reference) -> None:
        """The reference: a results folder (read here: the figure names its files) or a table."""
        if isinstance(reference, (str, os.PathLike)):
            with reading() as drew:
                self.reference = self.topic.reference(Path(reference))
            self.drew = drew
        else:
            self.reference, self.drew = reference, ({} if reference is None else {UNKNOWN_REFERENCE: "unknown"})

    def save(self, fig) -> None:
        if self.figure_name is not None:
            save_fig(fig, self.figure_name, self.figures_dir, records=self.records, drew=self.drew)

    def show(self, fig) -> None:
        """Put ``fig`` into the notebook as an image (a headless run: GitHub shows it), or update it."""
        if not _in_kernel():
            return
        from IPython.display import display

        data = figure_output(fig)["data"]
        if self._display is None:
            self._display = display(data, raw=True, display_id=True)
        else:
            self._display.update(data, raw=True)

    def finish(self, results_dir) -> None:
        """Redraw the default figure with the reference of ``results_dir`` (see the class)."""
        if current_mode() == "explore" or self.default_result is None:
            return
        self.set_reference(results_dir)
        fig = self.topic.draw(self.default_result, self.reference)
        self.save(fig)
        if self.widget is None:
            self.show(fig)
        plt.close(fig)
        if self._redraw is not None:
            self._redraw()
        drawn = ", ".join(k for k in self.drew if k != UNKNOWN_REFERENCE) or "no records"
        print(f"live view redrawn with this run's records ({drawn})"
              + (f"; saved as {self.figure_name}.png" if self.figure_name else ""))

    def _ipython_display_(self):
        """Nothing more to show: ``live_view`` displayed the widget (or the image) already."""


def live_view(topic, state, reference, figure_name: str | None = None, figures_dir=None, records=None) -> LiveView:
    """A live view of ``topic`` (a ``helpers.live`` module) on ``state``; returns a ``LiveView``.

    ``reference``: the results folder whose records the view draws as its reference
    (``topic.reference(folder)`` is read here, and the saved figure names those files), or a table
    already read (then the figure cannot name its files), or None. ``records``: other results files
    or folders the view's figure draws (e.g. those ``state`` was prepared from).

    With a front end: a control per entry of ``topic.CONTROLS`` (``continuous_update=False``), a
    readout (validation accuracy and the result's numbers, or the error) and one ``Output`` holding
    one figure, redrawn into the same matplotlib figure on every change; the widget is displayed
    here. Headless (``$COURSE_HEADLESS``) or without ipywidgets: no widget; the defaults and every
    headless value are drawn once (errors propagate), the default figure is shown as an image and
    a table of the numbers printed, the figures closed.
    Both: the default-values figure is saved as ``<figures_dir>/<figure_name>.png`` when named.
    Call ``finish(results_dir)`` on the result at the end of the notebook (see ``LiveView``).
    """
    if figure_name is not None and figures_dir is None:
        raise ValueError("figure_name needs figures_dir (where the PNG goes)")
    view = LiveView(topic, state, figure_name, figures_dir, records)
    view.set_reference(reference)
    try:
        import ipywidgets as widgets
    except ImportError:
        widgets = None
    if os.environ.get(HEADLESS_ENV) or widgets is None:
        _run_headless(view, widget_missing=widgets is None)
    else:
        _build_widget(view, widgets)
    return view


def _build_widget(view: LiveView, widgets) -> None:
    topic, controls = view.topic, view.topic.CONTROLS
    inputs = {name: _control_widget(widgets, name, spec) for name, spec in controls.items()}
    readout = widgets.HTML(value="…")
    readout.add_class("course-readout")  # the browser test reads the accuracy here
    output = widgets.Output(layout={"min_height": "300px"})
    current = {"fig": None}

    def update(change=None):
        started = time.perf_counter()
        values = {name: box.value for name, box in inputs.items()}
        try:
            result = topic.point(view.state, **values)
            fig = topic.draw(result, view.reference, fig=current["fig"])
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
    view.default_result = update()  # the first value, drawn once, by the widget
    if view.default_result is not None:
        view.save(current["fig"])
    view.widget = widgets.VBox([widgets.HBox(list(inputs.values()), layout={"flex_flow": "row wrap"}), readout, output])
    view.widget.update = update  # for tests and for a person who wants to redraw by hand
    view._redraw = update
    if _in_kernel():
        from IPython.display import display

        display(view.widget)


def _run_headless(view: LiveView, widget_missing: bool) -> None:
    import pandas as pd

    rows = []
    points = headless_points(view.topic.CONTROLS)
    if current_mode() == "explore":  # a person's kernel draws the defaults once; QUICK and FULL draw all
        points = points[:1]
    for i, values in enumerate(points):
        started = time.perf_counter()
        result = view.topic.point(view.state, **values)
        fig = view.topic.draw(result, view.reference)
        if i == 0:
            view.default_result = result
            view.save(fig)
            view.show(fig)
        plt.close(fig)
        rows.append({**values, **{k: v for k, v in scalars(result).items() if k not in values},
                     "seconds": round(time.perf_counter() - started, 2)})
    why = "ipywidgets is not installed" if widget_missing else "headless run"
    drawn = "the defaults drawn (explore)" if len(points) == 1 else "each control's values drawn once"
    print(f"({why}: the live view appears when you run this cell in Jupyter; the figure above shows the "
          f"defaults; {drawn}:)")
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
