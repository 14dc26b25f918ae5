"""Sliders over results computed before them; safe when no front end is attached (papermill).

The callback only indexes precomputed values and draws, so a headless run cannot hide an error in
it: the same figure is also drawn and saved statically by the notebook.
"""
from __future__ import annotations

import inspect
import os
from typing import Callable, Sequence

HEADLESS_ENV = "COURSE_HEADLESS"  # set by helpers.run_notebooks: no front end will ever show a widget


def slider_over(values: Sequence, draw: Callable, description: str = "value"):
    """Show a slider over ``values`` calling ``draw(value)``; returns the widget (or None).

    ``draw`` is called once up front, outside the widget, so an error in it fails a headless run.
    Headless runs (``$COURSE_HEADLESS`` set) create no widget: nobody could move it, and widget
    messages occasionally leave nbclient waiting forever (jupyter/nbclient#312).
    """
    if not values:
        raise ValueError("slider_over needs at least one value")
    draw(values[0])
    if os.environ.get(HEADLESS_ENV):
        print(f"(headless run: the slider over {description} appears when you run this cell in Jupyter)")
        return None
    try:
        import ipywidgets as widgets
    except ImportError:  # plain Python without ipywidgets: the static figure above is enough
        return None
    slider = widgets.SelectionSlider(options=list(values), value=values[0], description=description,
                                     continuous_update=False)
    first_argument = next(iter(inspect.signature(draw).parameters))
    return widgets.interactive(draw, **{first_argument: slider})
