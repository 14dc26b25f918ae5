"""Checks every live-view topic module must pass (used by tests/test_live_*.py)."""
import inspect
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from helpers import load  # noqa: E402
from helpers.models import build_model  # noqa: E402
from helpers.paths import REPO_ROOT  # noqa: E402

BASELINE = REPO_ROOT / "weights" / "01_baseline.pt"


def small_model():
    """The committed baseline when present, else a seeded random CNN (eval mode)."""
    if BASELINE.is_file():
        return load(BASELINE)
    torch.manual_seed(0)
    return build_model().eval()


def on_grid(value, control) -> bool:
    steps = (value - control["min"]) / control["step"]
    return control["min"] <= value <= control["max"] and math.isclose(steps, round(steps), abs_tol=1e-6)


def check_controls(module):
    """CONTROLS: known kinds, defaults and headless values valid, names = point()'s keywords."""
    params = list(inspect.signature(module.point).parameters)[1:]
    assert sorted(module.CONTROLS) == sorted(params)
    for name, control in module.CONTROLS.items():
        assert control["kind"] in ("float", "int", "choice"), name
        values = [control["value"]] + list(control["headless"])
        assert control["headless"], name
        if control["kind"] == "choice":
            assert all(v in control["options"] for v in values), name
        else:
            assert control["min"] < control["max"] and control["step"] > 0, name
            assert all(on_grid(v, control) for v in values), name
            if control["kind"] == "int":
                assert all(isinstance(v, int) for v in values + [control["min"], control["max"]]), name


def defaults(module) -> dict:
    return {name: control["value"] for name, control in module.CONTROLS.items()}


def check_draw(module, result, reference):
    """draw() returns a Figure, redraws into a given one, and copes with an empty reference."""
    import pandas as pd

    fig = module.draw(result, reference)
    assert isinstance(fig, matplotlib.figure.Figure) and fig.axes
    again = module.draw(result, reference, fig=fig)
    assert again is fig and len(fig.axes) == len(module.draw(result, pd.DataFrame()).axes)
    plt.close("all")


def state_dict_copy(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_unchanged(model, before):
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
