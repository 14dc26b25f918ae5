"""Notebooks in a real browser: JupyterLab driven by Playwright with the system Chromium.

Proves the harness (tests/jupyter_browser.py) on a fixture notebook: a slider moved by keyboard and
by drag changes the readout, exactly one figure follows it, no widget error. The method notebooks
03 and 06 get the same checks once their explore path shows a live view. Skipped where Chromium or
Playwright is missing, except in CI (``$CI`` set), where this test is required."""
import os
import shutil
import time
from pathlib import Path

import pytest

import jupyter_browser as jb
from helpers.paths import NOTEBOOKS_DIR

FIXTURES = Path(__file__).parent / "fixtures"
FIXTURE = "live_slider.ipynb"
FIXTURE_BUDGET_S = 90

pytestmark = pytest.mark.browser  # a real Chromium drives Jupyter: `-m 'not browser'` skips it



@pytest.fixture(scope="module")
def browser():
    missing = jb.missing_requirements()
    if missing and os.environ.get("CI"):
        pytest.fail(f"the browser test is required in CI ($CI is set), but {missing}", pytrace=False)
    if missing:
        pytest.skip(f"browser test skipped: {missing}")
    with jb.chromium() as b:
        yield b


def check_live_view(page, name: str) -> dict:
    """Move the first slider by keyboard, then by drag: the readout changes each time, one figure
    follows the slider, no widget error. Screenshots before and after each move."""
    slider = jb.sliders(page).first
    slider.wait_for(timeout=60_000)
    assert jb.widget_errors(page) == []
    assert jb.figures_following(slider) == 1, "the first value must be drawn once, by the widget"
    jb.screenshot(page, f"{name}-0-before", show=slider)
    readouts = [jb.readout_text(page)]
    values = [jb.slider_value(slider)]

    values.append(jb.move_by_keyboard(page, slider))
    readouts.append(jb.wait_for_readout_change(page, readouts[-1]))
    jb.screenshot(page, f"{name}-1-after-keyboard", show=slider)
    values.append(jb.move_by_drag(page, slider))
    readouts.append(jb.wait_for_readout_change(page, readouts[-1]))
    jb.screenshot(page, f"{name}-2-after-drag", show=slider)

    assert values[0] != values[1] != values[2], f"the slider did not move: {values}"
    assert readouts[0] != readouts[1] != readouts[2], f"the readout did not follow the slider: {readouts}"
    assert jb.figures_following(slider) == 1, "more than one figure follows the slider"
    assert jb.widget_errors(page) == []
    return {"values": values, "readouts": readouts}


def test_the_harness_moves_a_fixture_slider_by_keyboard_and_by_drag(tmp_path, browser):
    start = time.perf_counter()
    shutil.copy(FIXTURES / FIXTURE, tmp_path / FIXTURE)
    with jb.jupyter_lab(tmp_path) as lab:
        page = jb.open_notebook(browser, lab, FIXTURE)
        jb.run_all_cells(page)
        seen = check_live_view(page, "fixture")
        # the error detector sees what a front end shows for a broken widget
        page.evaluate("""() => document.querySelector('.jp-OutputArea-output').insertAdjacentHTML(
                            'beforeend', '<pre>[Open Browser Console for more detailed log - Double click to close '
                                         + 'this message] Model not found</pre>')""")
        assert jb.widget_errors(page) == ["Model not found"]
        page.close()
    assert seen["values"][:2] == ["0.50", "0.55"], "ArrowRight moves by one step"
    assert "at sparsity 0.55" in seen["readouts"][1]
    assert float(seen["values"][2]) > 0.55, "dragging right raises the value"
    elapsed = time.perf_counter() - start
    assert elapsed < FIXTURE_BUDGET_S, f"the fixture took {elapsed:.0f} s (budget {FIXTURE_BUDGET_S} s)"


def explore_path_wired() -> bool:
    return "live_view(" in (NOTEBOOKS_DIR / "03_wanda.ipynb").read_text()


@pytest.mark.skipif(not explore_path_wired(), reason="explore path not wired yet")
@pytest.mark.parametrize("notebook", ["03_wanda.ipynb", "06_quantization.ipynb"])
def test_a_method_notebook_on_the_explore_path_has_a_live_slider(notebook, browser, tmp_path):
    # A copy is served: JupyterLab autosaves what it runs, and the committed notebook must stay as it is.
    shutil.copy(NOTEBOOKS_DIR / notebook, tmp_path / notebook)
    with jb.jupyter_lab(tmp_path) as lab:
        page = jb.open_notebook(browser, lab, notebook)
        jb.run_all_cells(page, timeout_ms=600_000)  # the whole explore path: about a minute on a quiet machine
        check_live_view(page, Path(notebook).stem)
        page.close()
