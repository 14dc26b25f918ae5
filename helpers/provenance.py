"""Where a figure comes from: PNG text metadata written by ``helpers.plots.save_fig`` and checked
against the committed notebooks and results.

A saved figure carries (PNG ``tEXt`` chunks):

* ``Course-Mode``: the run that saved it (``full``, ``quick``, ``explore``; ``start_run`` sets it);
* ``Course-Saved-At``: when (UTC, ISO 8601);
* ``Course-Records``: JSON ``{"results/03_wanda.json": sha256, ...}``: every results file whose
  records the figure drew, hashed when it was drawn (``{}``: drawn from this run's computations only).

``figure_problems`` says why a committed figure is not from the run that made the committed
notebook: no provenance, not a FULL run, saved outside that notebook's papermill run, or drawn from
a results file whose committed bytes differ (an earlier run's records).

Readers of results files call ``note_read``; code inside ``with reading() as drew:`` learns which
files it read (``helpers.widgets.live_view`` names its reference's files that way).
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

from .io_utils import file_digest
from .paths import NOTEBOOKS_DIR, REPO_ROOT

MODE_KEY, SAVED_KEY, RECORDS_KEY = "Course-Mode", "Course-Saved-At", "Course-Records"
RESULTS_PATTERNS = ("[0-9][0-9]_*.json", "speed.json", "verdicts.json")
_run = {"mode": None}
_captures: list[dict[str, str]] = []


def begin_run(mode: str) -> None:
    """Remember the mode of this process's run (``helpers.artifacts.start_run`` calls it)."""
    _run["mode"] = mode


def current_mode() -> str | None:
    """The mode of this process's run: what ``begin_run`` was told, else ``$COURSE_MODE``, else None."""
    return _run["mode"] or os.environ.get("COURSE_MODE") or None


def record_key(path: str | os.PathLike) -> str:
    """How a results file is named in provenance: its folder and name (``results/03_wanda.json``),
    the same whichever root the run wrote to."""
    path = Path(path)
    return f"{path.parent.name}/{path.name}"


def digests(records: str | os.PathLike | Iterable[str | os.PathLike] | None) -> dict[str, str]:
    """``{record_key: sha256}`` of the results files ``records`` names: files, or folders (their
    ``NN_*.json``, ``speed.json`` and ``verdicts.json``). A missing file is an error: a figure
    cannot have drawn it."""
    if records is None:
        return {}
    items = [records] if isinstance(records, (str, os.PathLike)) else list(records)
    found = {}
    for item in map(Path, items):
        files = sorted(f for p in RESULTS_PATTERNS for f in item.glob(p)) if item.is_dir() else [item]
        for file in files:
            if not file.is_file():
                raise FileNotFoundError(f"{file}: a figure cannot have drawn a results file that does not exist")
            found[record_key(file)] = file_digest(file, "sha256")
    return found


def note_read(path: str | os.PathLike) -> None:
    """Tell the open ``reading()`` blocks that the results file ``path`` was read (its bytes now)."""
    if _captures and Path(path).is_file():
        digest = file_digest(path, "sha256")
        for capture in _captures:
            capture[record_key(path)] = digest


@contextmanager
def reading() -> Iterator[dict[str, str]]:
    """``{record_key: sha256}`` of the results files read (``note_read``) inside the block."""
    capture: dict[str, str] = {}
    _captures.append(capture)
    try:
        yield capture
    finally:
        _captures.remove(capture)


def png_metadata(records: dict[str, str], mode: str | None = None) -> dict[str, str]:
    """The text chunks ``save_fig`` writes: the run's mode, the time, the records drawn."""
    return {MODE_KEY: mode or current_mode() or "unknown",
            SAVED_KEY: datetime.now(timezone.utc).isoformat(timespec="microseconds"),
            RECORDS_KEY: json.dumps(records, sort_keys=True)}


def read_provenance(png: str | os.PathLike) -> dict | None:
    """``{"mode", "saved_at", "records"}`` of a PNG written by ``save_fig``; None when it has none."""
    from PIL import Image

    with Image.open(png) as image:
        text = dict(getattr(image, "text", {}) or {})
    if RECORDS_KEY not in text:
        return None
    return {"mode": text.get(MODE_KEY), "saved_at": text.get(SAVED_KEY), "records": json.loads(text[RECORDS_KEY])}


def _notebook_run(number: str, notebooks_dir: Path) -> tuple[Path, datetime, datetime] | None:
    """(notebook, papermill start, end) of notebook ``number`` (None when there is none or it was not run)."""
    notebook = next(iter(sorted(Path(notebooks_dir).glob(f"{number}_*.ipynb"))), None)
    if notebook is None:
        return None
    meta = json.loads(notebook.read_text()).get("metadata", {}).get("papermill", {})
    if not meta.get("start_time") or not meta.get("end_time"):
        return None
    return notebook, datetime.fromisoformat(meta["start_time"]), datetime.fromisoformat(meta["end_time"])


def figure_problems(png: str | os.PathLike, root: str | os.PathLike = REPO_ROOT,
                    notebooks_dir: str | os.PathLike = NOTEBOOKS_DIR) -> list[str]:
    """Why the figure ``png`` (``NN_what.png``) is not from the FULL run that made the committed
    notebook ``NN`` and drew the committed records under ``root``; empty when it is."""
    png = Path(png)
    provenance = read_provenance(png)
    if provenance is None:
        return [f"{png.name}: no provenance (saved before save_fig recorded it, or not by save_fig)"]
    problems = []
    if provenance["mode"] != "full":
        problems.append(f"{png.name}: saved by a {provenance['mode']} run, not the FULL run")
    run = _notebook_run(png.name[:2], Path(notebooks_dir))
    saved = datetime.fromisoformat(provenance["saved_at"]) if provenance["saved_at"] else None
    if run is None:
        problems.append(f"{png.name}: no papermill-run notebook {png.name[:2]}_*.ipynb to have made it")
    elif saved is None or not run[1] <= saved <= run[2]:
        problems.append(f"{png.name}: saved at {provenance['saved_at']}, outside the run of {run[0].name} "
                        f"({run[1].isoformat()} to {run[2].isoformat()})")
    for key, digest in sorted(provenance["records"].items()):
        committed = Path(root) / key
        if not committed.is_file():
            problems.append(f"{png.name}: drew {key}, which is not committed")
        elif file_digest(committed, "sha256") != digest:
            problems.append(f"{png.name}: drew {key} as it was before (sha256 {digest[:12]}…), not the "
                            f"committed file (an earlier run's records)")
    return problems
