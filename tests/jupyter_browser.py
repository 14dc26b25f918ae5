"""A small harness for driving notebooks in JupyterLab with the system Chromium through Playwright.

    with jupyter_lab(folder) as lab, chromium() as browser:
        page = open_notebook(browser, lab, "03_wanda.ipynb")
        run_all_cells(page)
        slider = sliders(page).first
        before = readout_text(page)
        move_by_keyboard(page, slider)
        ...

Used by tests/test_browser.py; screenshots go to the ignored ``.runs/browser/``.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from helpers.paths import REPO_ROOT

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS_DIR = REPO_ROOT / ".runs" / "browser"
TOKEN = "course-browser-test"
WIDGET_ERRORS = ("Error displaying widget", "Model not found", "Traceback (most recent call last)")
SLIDER = ".widget-slider"
SLIDER_HANDLE = ".noUi-handle"  # ipywidgets 8 sliders are noUiSlider
READOUT = ".course-readout"
UNUSED_SERVER_EXTENSIONS = ("jupyter_lsp", "jupyter_server_terminals", "notebook")  # faster start     # the readout widget's CSS class (widget.add_class("course-readout"))


def missing_requirements() -> str | None:
    """Why the browser test cannot run here (no Chromium, no Playwright), or None."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -r requirements.txt)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    """A running JupyterLab: its base URL, token and served folder."""

    url: str
    token: str
    root: Path
    log: Path

    def notebook_url(self, name: str) -> str:
        return f"{self.url}/lab/tree/{name}?token={self.token}&reset"


@contextmanager
def jupyter_lab(root: Path, timeout: float = 60.0) -> Iterator[Lab]:
    """JupyterLab on 127.0.0.1 (a free port, a known token, no browser, root allowed) serving ``root``.

    Its runtime, config and workspace folders are temporary, so nothing of the user's leaks in;
    the kernels run without ``COURSE_HEADLESS`` (a person's session: widgets are created).
    """
    port = free_port()
    state = Path(tempfile.mkdtemp(prefix="jupyter-state-"))
    env = {k: v for k, v in os.environ.items() if k not in ("COURSE_HEADLESS", "COURSE_MODE")}
    env.update(JUPYTER_RUNTIME_DIR=str(state / "runtime"), JUPYTER_CONFIG_DIR=str(state / "config"),
               JUPYTERLAB_SETTINGS_DIR=str(state / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(state / "ws"))
    (state / "config").mkdir(parents=True)
    (state / "config" / "jupyter_server_config.json").write_text(json.dumps(
        {"ServerApp": {"jpserver_extensions": {name: False for name in UNUSED_SERVER_EXTENSIONS}}}))
    log = state / "jupyter.log"
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={TOKEN}",
           f"--ServerApp.root_dir={root}", f"--LabApp.workspaces_dir={state / 'ws'}", "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    with open(log, "wb") as out:
        server = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    lab = Lab(f"http://127.0.0.1:{port}", TOKEN, root, log)
    try:
        _wait_for_server(lab, server, timeout)
        yield lab
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(state, ignore_errors=True)


def _wait_for_server(lab: Lab, server: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"JupyterLab exited ({server.returncode}):\n{lab.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{lab.url}/api/status?token={lab.token}", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"JupyterLab did not answer within {timeout:.0f} s:\n{lab.log.read_text()[-3000:]}")


@contextmanager
def chromium():
    """The system Chromium (Playwright's own download does not work here), headless, as root."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def open_notebook(browser, lab: Lab, name: str, timeout_ms: int = 60_000):
    """A new page with notebook ``name`` open and its kernel started (idle)."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(lab.notebook_url(name))
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=timeout_ms)
    deadline = time.monotonic() + timeout_ms / 1000
    while not _kernel_idle(page):  # JupyterLab may first ask which kernel: take the preferred one
        accept = page.locator(".jp-Dialog .jp-mod-accept")
        if accept.count() and accept.first.is_visible():
            accept.first.click()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name}: the kernel did not start within {timeout_ms / 1000:.0f} s")
        page.wait_for_timeout(250)
    dismiss_news(page)
    return page


def dismiss_news(page) -> None:
    """Answer "No" to JupyterLab's "notified about official Jupyter news?" toast, when it shows."""
    no = page.locator(".jp-Notification-Toast", has_text="Jupyter news").get_by_role("button", name="No")
    if no.count():
        no.first.click()


def _kernel_idle(page) -> bool:
    """The status bar names a kernel and says it is idle."""
    return bool(page.evaluate("""() => [...document.querySelectorAll('.jp-StatusBar-TextItem')]
                                     .some(e => /\\| Idle$/.test(e.textContent.trim())
                                                && !e.textContent.includes('No Kernel'))"""))


def wait_until_idle(page, timeout_ms: int = 60_000) -> None:
    """Wait until the notebook's kernel is idle and no cell is queued or running (``[*]``)."""
    page.wait_for_function(
        """() => {
            const status = document.querySelector('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator');
            const prompts = [...document.querySelectorAll('.jp-NotebookPanel .jp-InputArea-prompt')];
            return status && status.getAttribute('data-status') === 'idle'
                && !prompts.some(p => p.textContent.includes('*'));
        }""", timeout=timeout_ms, polling=250)
    page.wait_for_timeout(300)  # widget views render just after the kernel's last message


def run_all_cells(page, timeout_ms: int = 120_000) -> None:
    """Run > Run All Cells, then wait until every cell ran and the kernel is idle."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    page.wait_for_function(
        """() => {
            const prompts = [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell .jp-InputArea-prompt')];
            return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
        }""", timeout=timeout_ms, polling=250)
    wait_until_idle(page, timeout_ms)


def sliders(page):
    """Every slider widget on the page (a Playwright locator)."""
    return page.locator(SLIDER)


def _wait_for_change(page, read, before: str, timeout_ms: int) -> str:
    deadline = time.monotonic() + timeout_ms / 1000
    while time.monotonic() < deadline:
        now = read()
        if now != before:
            wait_until_idle(page, timeout_ms)
            return read()
        page.wait_for_timeout(100)
    return read()


def slider_value(slider) -> str:
    """The slider's own readout (the value it shows beside the track)."""
    return slider.locator(".widget-readout").inner_text().strip()


def move_by_keyboard(page, slider, presses: int = 1, key: str = "ArrowRight", timeout_ms: int = 30_000) -> str:
    """Focus the slider's handle and press ``key``; returns the new slider value once the kernel is idle."""
    before = slider_value(slider)
    slider.locator(SLIDER_HANDLE).focus()
    for _ in range(presses):
        page.keyboard.press(key)
    return _wait_for_change(page, lambda: slider_value(slider), before, timeout_ms)


def move_by_drag(page, slider, fraction: float = 0.25, timeout_ms: int = 30_000) -> str:
    """Drag the handle by ``fraction`` of the track's width (mouse down, move, up); returns the new value."""
    before = slider_value(slider)
    handle = slider.locator(SLIDER_HANDLE).bounding_box()
    track = slider.locator(".noUi-target").bounding_box()
    x, y = handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + fraction * track["width"], y, steps=8)
    page.mouse.up()
    return _wait_for_change(page, lambda: slider_value(slider), before, timeout_ms)


def readout_text(page, index: int = 0) -> str:
    """The text of the ``index``-th readout: a ``.course-readout`` widget, else an HTML/Label widget."""
    readouts = page.locator(READOUT)
    if not readouts.count():
        readouts = page.locator(".jp-OutputArea .widget-html-content")
    return readouts.nth(index).inner_text().strip()


def wait_for_readout_change(page, before: str, index: int = 0, timeout_ms: int = 30_000) -> str:
    """The readout once it differs from ``before`` (or as it is after ``timeout_ms``)."""
    return _wait_for_change(page, lambda: readout_text(page, index), before, timeout_ms)


def cell_of(slider):
    """The notebook cell whose output holds ``slider``."""
    return slider.locator("xpath=ancestor::div[contains(@class, 'jp-Cell')][1]")


def figures_following(slider) -> int:
    """How many figures (output images) the slider's cell shows: a live view shows exactly one."""
    return cell_of(slider).locator(".jp-OutputArea-output img").count()


def widget_errors(page) -> list[str]:
    """Widget errors and tracebacks shown anywhere in the notebook's outputs."""
    text = "\n".join(page.locator(".jp-NotebookPanel .jp-OutputArea").all_inner_texts())
    found = [e for e in WIDGET_ERRORS if e in text]
    stderr = page.locator(".jp-NotebookPanel [data-mime-type='application/vnd.jupyter.stderr']")
    found += [f"stderr: {t[:300]}" for t in stderr.all_inner_texts() if "Error" in t]
    return found


def screenshot(page, name: str, show=None) -> Path:
    """Save a screenshot as ``.runs/browser/<name>.png`` (ignored by git), ``show`` (a locator) in view."""
    dismiss_news(page)
    if show is not None:
        show.scroll_into_view_if_needed()
    SCREENSHOTS_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS_DIR / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
