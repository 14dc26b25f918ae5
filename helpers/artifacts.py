"""Where a stage's outputs are: what a notebook needs from the stages before it (this run's
outputs first, then the committed ``weights/`` and ``results/``), and from its own committed FULL run.

The explore path (a person running a notebook) loads what the FULL run committed instead of
training it again; when a file is missing it says which one and how to make it, and the notebook
then trains a small stand-in.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

from .paths import REPO_ROOT, OutputDirs, output_dirs, run_mode
from .provenance import begin_run, note_read
from .records import check_record, read_results

COMMITTED_WEIGHTS = REPO_ROOT / "weights"
COMMITTED_RESULTS = REPO_ROOT / "results"
NOTEBOOK_OF = {"01": "01_baseline_training", "02": "02_l1_filter_pruning", "03": "03_wanda",
               "04": "04_network_slimming", "05": "05_oneshot_vs_gradual", "06": "06_quantization",
               "07": "07_combined_compression", "08": "08_comparison"}


class RunContext(NamedTuple):
    """What every notebook's set-up decides: the mode, whether it runs on small subsets, where its
    outputs go, and the device."""

    mode: str        # "explore" (a person running it), "full" (the batch runner), "quick" (tests)
    small: bool      # explore and quick: small subsets and short training
    outputs: OutputDirs
    device: object


def start_run(quick: bool, seed: int) -> RunContext:
    """The run context of a notebook (``QUICK`` from its parameters), with every generator seeded."""
    from .training import pick_device, seed_everything

    mode = run_mode(quick)
    begin_run(mode)  # the figures this run saves say which run they come from
    outputs, device = output_dirs(mode), pick_device()
    seed_everything(seed)
    return RunContext(mode, mode != "full", outputs, device)


def how_to_make(filename: str) -> str:
    """The command that makes the committed file ``filename`` (``NN_what.ext``)."""
    number = filename[:2]
    if number not in NOTEBOOK_OF:
        raise ValueError(f"{filename!r} is not named after a notebook (NN_what.ext, NN in 01..08)")
    return f"python -m helpers.run_notebooks --only {number} --in-place  (the FULL run of {NOTEBOOK_OF[number]})"


def _shown(path: Path) -> Path:
    return path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path


def committed_file(filename: str, mode: str, folder: Path = COMMITTED_WEIGHTS,
                   instead: str = "Training a small stand-in here instead.") -> Path | None:
    """On the explore path, the committed FULL file ``folder/filename`` when it is there; None on the
    other paths (they compute it) and, with a message saying how to make it, when it is missing."""
    if mode != "explore":
        return None
    path = Path(folder) / filename
    if path.is_file():
        return path
    print(f"explore: {_shown(path)} is missing; make it with `{how_to_make(filename)}`. {instead}")
    return None


def committed_records(stage: str, mode: str, folder: Path = COMMITTED_RESULTS) -> list[dict] | None:
    """On the explore path, the records of the committed FULL run's ``folder/<stage>.json`` (a
    message says so); None on the other paths, and (saying how to make it) when the file is missing,
    holds no FULL records or does not parse: the notebook then computes them on small subsets."""
    instead = "Computing its numbers on small subsets here instead."
    path = committed_file(f"{stage}.json", mode, folder, instead=instead)
    if path is None:
        return None
    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        records = err
    try:
        for index, record in enumerate(records if isinstance(records, list) else []):
            check_record(record, f"{path}, record {index}")
    except (ValueError, KeyError, TypeError) as err:
        records = err
    if not isinstance(records, list) or not records or any(
            not isinstance(r, dict) or r.get("quick") is not False for r in records):
        print(f"explore: {_shown(path)} holds no FULL-run records; make it with `{how_to_make(path.name)}`. {instead}")
        return None
    print(f"explore: {len(records)} records of {_shown(path)} loaded: the numbers marked FULL below are the "
          f"committed FULL run's (full test set), not recomputed here")
    return records


def record_named(records: list[dict] | None, prefix: str) -> dict | None:
    """The first of ``records`` (from ``committed_records``) whose name starts with ``prefix``;
    None when there is none or ``records`` is None (the FULL and QUICK paths)."""
    return next((r for r in records or [] if r["name"].startswith(prefix)), None)


def stage_records(results_dir: str | Path, stage: str) -> list[dict]:
    """The records of ``<results_dir>/<stage>.json`` (an empty list when the file is missing)."""
    path = Path(results_dir) / f"{stage}.json"
    if not path.is_file():
        return []
    note_read(path)
    return json.loads(path.read_text())


def find_weights(filename: str, outputs: OutputDirs) -> Path | None:
    """An earlier stage's weights: this run's own output first, then the committed ``weights/``."""
    for folder in (outputs.root / "weights", COMMITTED_WEIGHTS):
        candidate = folder / filename
        if candidate.is_file():
            return candidate
    return None


def saved_model_of(stage_prefix: str, outputs: OutputDirs, prefer: str = "sparsity", name: str | None = None):
    """(record, model) of the saved model of notebook ``stage_prefix`` (e.g. "05") named ``name``, or
    else the one with the highest ``prefer`` value (e.g. sparsity), from this run's results or the
    committed ones; None if there is none."""
    from .storage import load

    for root in dict.fromkeys([outputs.root, REPO_ROOT]):
        records = [r for r in read_results(root / "results")
                   if r["stage"].startswith(stage_prefix) and str(r.get("weights_file", "")).endswith(".pt")
                   and (root / r["weights_file"]).is_file() and name in (None, r["name"])]
        if records:
            best = max(records, key=lambda r: r[prefer])
            return best, load(root / best["weights_file"])
    return None


def load_or_train_baseline(outputs: OutputDirs, splits, quick: bool, epochs: int | None = None, device=None):
    """(model, path): notebook 01's ``01_baseline.pt`` when present (this run's outputs first, then
    the committed ``weights/``), else a baseline trained here (1 epoch QUICK, 12 FULL) and saved as
    ``trained_baseline.pt`` in this run's weights folder. The model is in eval mode on the CPU."""
    from .data import Batches
    from .models import build_model
    from .storage import load, save
    from .training import fit

    path = find_weights("01_baseline.pt", outputs)
    if path is not None:
        return load(path), path
    model = build_model()
    fit(model, Batches(splits.train, 128, shuffle=True, augment=True), epochs=epochs or (1 if quick else 12),
        device=device, desc="baseline")
    model = model.cpu().eval()
    return model, save(model, outputs.weights / "trained_baseline.pt", meta={"trained_in": "fallback"})
