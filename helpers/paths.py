"""Where things live: the repository root and its data, figures, weights and results folders.

FULL runs write into the committed folders of the repository. QUICK runs (tests, CI, a reader
trying things out) write into an ignored ``.quick/`` folder, or wherever the environment variable
``COURSE_OUTPUT_DIR`` points, so they never overwrite the committed FULL outputs.
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
    quick: bool

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


def output_dirs(quick: bool) -> OutputDirs:
    """Output folders for a run: ``$COURSE_OUTPUT_DIR``, else ``.quick/`` (QUICK) or the repo (FULL)."""
    if os.environ.get(OUTPUT_ENV):
        return OutputDirs(Path(os.environ[OUTPUT_ENV]), quick)
    return OutputDirs(REPO_ROOT / ".quick" if quick else REPO_ROOT, quick)


def find_weights(filename: str, outputs: OutputDirs) -> Path | None:
    """An earlier stage's weights: this run's own output first, then the committed ``weights/``."""
    for folder in (outputs.root / "weights", REPO_ROOT / "weights"):
        candidate = folder / filename
        if candidate.is_file():
            return candidate
    return None
