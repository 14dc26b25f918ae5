"""Run the numbered notebooks in order with papermill.

    python -m helpers.run_notebooks              # FULL: the real experiments, committed outputs
    python -m helpers.run_notebooks --quick      # QUICK: tiny subsets, outputs into .quick/
    python -m helpers.run_notebooks --only 01,03

Executed copies go to ``.runs/<mode>/`` (ignored by git). With ``--in-place`` (FULL only) the
executed notebooks replace the sources, so the committed notebooks carry the outputs of the run
that produced the committed results. A failing cell stops the run with a non-zero exit that names
the notebook and the cell.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from .paths import NOTEBOOKS_DIR, REPO_ROOT
from .widgets import HEADLESS_ENV

RUNS_DIR = REPO_ROOT / ".runs"


def numbered_notebooks(folder: Path = NOTEBOOKS_DIR) -> list[Path]:
    """``NN_*.ipynb`` in ``folder``, in order."""
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def select(notebooks: list[Path], only: str | None) -> list[Path]:
    """The notebooks whose number (``01``) or stem is in the comma list ``only``; all when None."""
    if not only:
        return notebooks
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    chosen, unknown = [], []
    for w in wanted:
        hits = [nb for nb in notebooks if nb.stem == w or nb.stem.split("_")[0] == w.zfill(2)]
        (chosen.extend(hits) if hits else unknown.append(w))
    if unknown:
        known = ", ".join(nb.stem for nb in notebooks)
        raise SystemExit(f"--only: no notebook named {', '.join(unknown)} (known: {known})")
    return sorted(set(chosen))


def run_one(notebook: Path, output: Path, quick: bool, log_output: bool = False) -> None:
    """Execute ``notebook`` into ``output`` with ``QUICK`` set; papermill raises on a failing cell."""
    import papermill as pm

    output.parent.mkdir(parents=True, exist_ok=True)
    os.environ[HEADLESS_ENV] = "1"  # the kernel inherits it: sliders are not created headless
    # FULL runs the notebook as written (QUICK = False there), so no injected-parameters cell lands
    # in a committed notebook; a QUICK cell that takes 10 minutes is hung, not slow.
    pm.execute_notebook(str(notebook), str(output), parameters={"QUICK": True} if quick else {},
                        kernel_name="python3", cwd=str(notebook.parent), progress_bar=False,
                        log_output=log_output, execution_timeout=600 if quick else None)


def describe_failure(err: Exception) -> str:
    """'cell N (ExceptionName: message)' from a papermill error."""
    cell = getattr(err, "exec_count", None)
    ename, evalue = getattr(err, "ename", type(err).__name__), getattr(err, "evalue", str(err))
    return f"cell {cell if cell is not None else '?'} ({ename}: {evalue})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Run the course notebooks with papermill.")
    parser.add_argument("--quick", action="store_true", help="tiny subsets, outputs into .quick/")
    parser.add_argument("--only", help="comma list of notebook numbers or names, e.g. 01,03")
    parser.add_argument("--in-place", action="store_true",
                        help="FULL only: replace the source notebooks with their executed copies")
    parser.add_argument("--log-output", action="store_true", help="stream cell output to the log")
    args = parser.parse_args(argv)
    if args.in_place and args.quick:
        parser.error("--in-place is for FULL runs only (QUICK outputs are never committed)")
    notebooks = select(numbered_notebooks(), args.only)
    mode = "quick" if args.quick else "full"
    summary, failed = [], None
    for nb in notebooks:
        output = RUNS_DIR / mode / nb.name
        start = time.perf_counter()
        print(f"running {nb.name} ({mode}) ...", flush=True)
        try:
            run_one(nb, output, args.quick, args.log_output)
        except Exception as err:  # papermill's PapermillExecutionError, kernel death, ...
            failed = f"{nb.name} failed at {describe_failure(err)}; executed copy: {output}"
            summary.append((nb.name, time.perf_counter() - start, "FAILED"))
            break
        summary.append((nb.name, time.perf_counter() - start, "ok"))
        if args.in_place:
            shutil.copyfile(output, nb)
    print(f"\n{'notebook':<40} {'seconds':>8}  status")
    for name, seconds, status in summary:
        print(f"{name:<40} {seconds:>8.1f}  {status}")
    if failed:
        print(f"\nERROR: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
