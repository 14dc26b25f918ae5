"""Sliders over results computed before them; safe when no front end is attached (papermill).

The callback only indexes precomputed values and draws, so a headless run cannot hide an error in
it: the same figure is also drawn and saved statically by the notebook.
"""
from __future__ import annotations

import inspect
from typing import Callable, Sequence


def slider_over(values: Sequence, draw: Callable, description: str = "value"):
    """Show a slider over ``values`` calling ``draw(value)``; returns the widget (or None).

    ``draw`` is called once up front, outside the widget, so an error in it fails a headless run.
    """
    draw(values[0])
    try:
        import ipywidgets as widgets
    except ImportError:  # plain Python without ipywidgets: the static figure above is enough
        return None
    slider = widgets.SelectionSlider(options=list(values), value=values[0], description=description,
                                     continuous_update=False)
    first_argument = next(iter(inspect.signature(draw).parameters))
    return widgets.interactive(draw, **{first_argument: slider})
