"""Where things live: the repository root and its data, figures, weights and results folders.

A notebook runs in one of three modes (``run_mode``):

- ``explore`` (the default: a person running the notebook): loads the committed weights and
  results, computes little, writes into the ignored ``.explore/`` folder;
- ``quick`` (tests, CI: ``QUICK = True``): tiny subsets, writes into the ignored ``.quick/``;
- ``full`` (the batch runner sets ``COURSE_MODE=full``): the real experiment, writes into the
  committed folders of the repository.

``$COURSE_OUTPUT_DIR``, when set, replaces the output folder of any mode.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
SHARED_DATA_DIR = REPO_ROOT.parent / "shared" / "data"

DATA_ENV = "COURSE_DATA_DIR"
OUTPUT_ENV = "COURSE_OUTPUT_DIR"
MODE_ENV = "COURSE_MODE"
HEADLESS_ENV = "COURSE_HEADLESS"  # set by helpers.run_notebooks: no front end will ever show a widget
MODES = ("explore", "quick", "full")
ENV_MODES = ("explore", "full")  # the values $COURSE_MODE may take (QUICK is a notebook parameter)
MODE_OUTPUT_ROOTS = {"explore": REPO_ROOT / ".explore", "quick": REPO_ROOT / ".quick", "full": REPO_ROOT}


def run_mode(quick: bool) -> str:
    """The mode of a run: ``"quick"`` when ``quick``, else ``$COURSE_MODE`` (explore|full), default explore."""
    if quick:
        return "quick"
    value = os.environ.get(MODE_ENV, "").strip()
    if not value:
        return "explore"
    if value not in ENV_MODES:
        raise ValueError(f"${MODE_ENV}={value!r} is not a mode: use one of {', '.join(ENV_MODES)} "
                         f"(or unset it for explore; QUICK runs set QUICK = True instead)")
    return value


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data folder: the argument, else ``$COURSE_DATA_DIR``, else ``<repo>/data``."""
    if root is not None:
        return Path(root)
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    return REPO_ROOT / "data"


@dataclass(frozen=True)
class OutputDirs:
    """The three output folders of one run (created on first use)."""

    root: Path
    mode: str

    @property
    def quick(self) -> bool:
        """True for every run that is not the real experiment (quick and explore): its records are
        flagged ``"quick": true`` and never pass for committed FULL results."""
        return self.mode != "full"

    @property
    def figures(self) -> Path:
        return self._ensure("figures")

    @property
    def weights(self) -> Path:
        return self._ensure("weights")

    @property
    def results(self) -> Path:
        return self._ensure("results")

    def _ensure(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path


def output_dirs(quick_or_mode: bool | str) -> OutputDirs:
    """Output folders for a run: ``$COURSE_OUTPUT_DIR``, else by mode (explore ``.explore/``,
    quick ``.quick/``, full the repository).

    ``quick_or_mode`` is a mode name or the notebook's ``QUICK`` flag (resolved by ``run_mode``).
    """
    if isinstance(quick_or_mode, bool):
        mode = run_mode(quick_or_mode)
    elif quick_or_mode in MODES:
        mode = quick_or_mode
    else:
        raise ValueError(f"output_dirs: {quick_or_mode!r} is neither QUICK (True/False) nor a mode "
                         f"({', '.join(MODES)})")
    if os.environ.get(OUTPUT_ENV):
        return OutputDirs(Path(os.environ[OUTPUT_ENV]), mode)
    return OutputDirs(MODE_OUTPUT_ROOTS[mode], mode)
