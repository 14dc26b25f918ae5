"""Run the numbered notebooks in order with papermill.

    python -m helpers.run_notebooks              # FULL: the real experiments, committed outputs
    python -m helpers.run_notebooks --quick      # QUICK: tiny subsets, outputs into .quick/
    python -m helpers.run_notebooks --explore    # explore: a person's path, outputs into .explore/
    python -m helpers.run_notebooks --only 01,03

The mode reaches the notebook without touching the committed text: FULL and explore through the
kernel's environment (``COURSE_MODE``, read by ``helpers.paths.run_mode``), QUICK through an
injected ``QUICK = True`` (QUICK notebooks are never committed). Every run is headless
(``COURSE_HEADLESS``); neither variable leaks into the calling process.

Executed copies go to ``.runs/<mode>/`` (ignored by git), without the stale ``metadata.widgets``.
With ``--in-place`` (FULL only) the executed notebooks atomically replace the sources, so the
committed notebooks carry the outputs of the run that produced the committed results; the
README's generated section, which quotes the notebooks' papermill durations, is then regenerated
from the replaced notebooks (as ``python -m helpers.results --write-readme``). A failing
cell stops a FULL or QUICK run with a non-zero exit that names the notebook and the cell; an
explore run goes on with the next notebook (they are independent) and flags any notebook over
the explore budget of ``EXPLORE_BUDGET_S`` seconds.
"""
from __future__ import annotations

import argparse
import os
import shutil
import stat
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .io_utils import atomic_path, write_text_atomic
from .paths import ENV_MODES, MODE_ENV, MODES, NOTEBOOKS_DIR, REPO_ROOT
from .paths import HEADLESS_ENV

RUNS_DIR = REPO_ROOT / ".runs"
README_ROOT = REPO_ROOT  # the README.md, results/ and notebooks/ an --in-place run keeps in step
EXPLORE_BUDGET_S = 60.0  # a person reaches the first slider within a minute (issue 14)
CELL_TIMEOUT_S = 600     # QUICK and explore: a cell running 10 minutes is hung, not slow
COMPARISON_PREFIX = "08_"  # the notebook that reads every result and results/speed.json


@dataclass
class Outcome:
    """One notebook's run: its name, wall seconds, and status ("ok", "FAILED", "WRITE FAILED")."""

    name: str
    seconds: float
    status: str
    detail: str = ""


def numbered_notebooks(folder: Path = NOTEBOOKS_DIR) -> list[Path]:
    """``NN_*.ipynb`` in ``folder``, in order."""
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def _list_problem(only: str) -> str | None:
    """Why the comma list ``only`` is malformed (None when it is not): empty, an empty item (a stray
    comma) or spaces in an item."""
    items = only.split(",")
    if not "".join(items).strip():
        return f"--only: empty selection {only!r}; name notebooks like --only 01,03 (leave --only out to run them all)"
    if "" in items:
        return f"--only: {only!r} has an empty item (a stray comma); name notebooks like --only 01,03"
    spaced = next((item for item in items if any(c.isspace() for c in item)), None)
    if spaced is not None:
        return f"--only: {only!r} has spaces in {spaced!r}; name notebooks without them, like --only 01,03"
    return None


def select(notebooks: list[Path], only: str | None) -> list[Path]:
    """The notebooks whose number (``01``) or stem is in the comma list ``only``, in order; all when None.

    A malformed list is refused (SystemExit with the reason): see ``_list_problem``, a notebook
    named twice, or a name no notebook has."""
    if only is None:
        return notebooks
    if problem := _list_problem(only):
        raise SystemExit(problem)
    items = only.split(",")
    chosen, unknown = {}, []
    for item in items:
        hits = [nb for nb in notebooks if nb.stem == item or nb.stem.split("_")[0] == item.zfill(2)]
        unknown.extend([] if hits else [item])
        for nb in hits:
            if nb in chosen:
                raise SystemExit(f"--only: {only!r} names {nb.stem} twice ({chosen[nb]} and {item})")
            chosen[nb] = item
    if unknown:
        known = ", ".join(nb.stem for nb in notebooks)
        raise SystemExit(f"--only: no notebook named {', '.join(unknown)} (known: {known})")
    return sorted(chosen)


@contextmanager
def kernel_environment(mode: str) -> Iterator[dict[str, str | None]]:
    """Set the variables a kernel started inside inherits for ``mode``; restore them on exit.

    Headless always; ``COURSE_MODE`` = explore/full, unset for QUICK (``QUICK = True`` decides).
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
    wanted = {HEADLESS_ENV: "1", MODE_ENV: mode if mode in ENV_MODES else None}
    saved = {name: os.environ.get(name) for name in wanted}
    try:
        for name, value in wanted.items():
            _set_env(name, value)
        yield wanted
    finally:
        for name, value in saved.items():
            _set_env(name, value)


def _set_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def drop_widget_state(path: Path) -> bool:
    """Remove ``metadata.widgets`` (widget state saved by a front end) from the notebook at ``path``.

    An executed notebook would otherwise carry the state of widgets that no longer exist, which
    front ends show as "Model not found". Returns whether anything was removed.
    """
    import nbformat

    nb = nbformat.read(str(path), as_version=nbformat.NO_CONVERT)
    if "widgets" not in nb.metadata:
        return False
    del nb.metadata["widgets"]
    write_text_atomic(path, nbformat.writes(nb))
    return True


def run_one(notebook: Path, output: Path, quick: bool = False, log_output: bool = False,
            mode: str | None = None) -> None:
    """Execute ``notebook`` into ``output`` in ``mode`` (default: QUICK if ``quick`` else FULL).

    Papermill raises on a failing cell; the executed copy is written (without widget state) either way.
    """
    import papermill as pm

    mode = mode or ("quick" if quick else "full")
    if quick and mode != "quick":
        raise ValueError(f"run_one: quick=True contradicts mode={mode!r}")
    output.parent.mkdir(parents=True, exist_ok=True)
    # FULL and explore run the notebook as written (QUICK = False there), so no injected cell lands
    # in a committed notebook: the kernel's environment carries the mode.
    try:
        with kernel_environment(mode):
            pm.execute_notebook(str(notebook), str(output),
                                parameters={"QUICK": True} if mode == "quick" else {},
                                kernel_name="python3", cwd=str(notebook.parent), progress_bar=False,
                                log_output=log_output,
                                execution_timeout=None if mode == "full" else CELL_TIMEOUT_S)
    finally:
        if output.is_file():
            drop_widget_state(output)


def replace_notebook(executed: Path, target: Path) -> None:
    """Replace ``target`` with ``executed`` in one step, keeping ``target``'s file mode."""
    mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else None
    with atomic_path(target) as tmp:
        shutil.copyfile(executed, tmp)
        if mode is not None:
            os.chmod(tmp, mode)


def describe_failure(err: Exception) -> str:
    """'cell N (ExceptionName: message)' from a papermill error."""
    cell = getattr(err, "exec_count", None)
    ename, evalue = getattr(err, "ename", type(err).__name__), getattr(err, "evalue", str(err))
    return f"cell {cell if cell is not None else '?'} ({ename}: {evalue})"


def run_series(notebooks: list[Path], mode: str, in_place: bool = False, log_output: bool = False,
               runs_dir: Path | None = None) -> list[Outcome]:
    """Run ``notebooks`` in ``mode``, executed copies into ``<runs_dir>/<mode>/``.

    FULL and QUICK stop at the first failing notebook (later stages need its outputs); explore
    runs them all. With ``in_place`` each executed copy replaces its source once it ran.
    """
    if in_place and mode != "full":
        raise ValueError("in_place is for FULL runs only (QUICK and explore outputs are never committed)")
    runs_dir = runs_dir or RUNS_DIR
    outcomes = []
    for nb in notebooks:
        if mode == "full" and nb.stem.startswith(COMPARISON_PREFIX) and outcomes:
            benchmarked = run_benchmark()  # 08 reads results/speed.json: time this series' files first
            outcomes.append(benchmarked)
            if benchmarked.status != "ok":
                break
        output = runs_dir / mode / nb.name
        start = time.perf_counter()
        print(f"running {nb.name} ({mode}) ...", flush=True)
        try:
            run_one(nb, output, log_output=log_output, mode=mode)
        except Exception as err:  # papermill's PapermillExecutionError, kernel death, ...
            outcomes.append(Outcome(nb.name, time.perf_counter() - start, "FAILED",
                                    f"failed at {describe_failure(err)}; executed copy: {output}"))
            if mode == "explore":
                continue
            break
        outcome = Outcome(nb.name, time.perf_counter() - start, "ok")
        if in_place:
            try:
                replace_notebook(output, nb)
            except OSError as err:
                outcome.status = "WRITE FAILED"
                outcome.detail = f"could not replace {nb} ({err}); executed copy: {output}"
        outcomes.append(outcome)
        if outcome.status != "ok":
            break
    return outcomes


def run_benchmark(argv: list[str] | None = None) -> Outcome:
    """``python -m helpers.benchmark`` (every saved model re-timed into ``results/speed.json``), as a
    step of the series: in a FULL run it comes right before the comparison notebook reads that file."""
    from . import benchmark  # torch: only when a FULL series reaches the comparison

    start = time.perf_counter()
    print("running python -m helpers.benchmark (this series' files, before the comparison) ...", flush=True)
    try:
        code = benchmark.main(argv or [])
    except Exception as err:  # noqa: BLE001 -- the series stops and says why
        code, detail = 1, f"{type(err).__name__}: {err}"
    else:
        detail = "" if code == 0 else f"exited {code}"
    return Outcome("helpers.benchmark", time.perf_counter() - start, "ok" if code == 0 else "FAILED", detail)


def in_place_problem(notebooks: list[Path], chosen: list[Path]) -> str | None:
    """Why an in-place FULL run of ``chosen`` would leave the series inconsistent (each notebook
    reads the outputs of those before it): it must run consecutive notebooks up to the last one."""
    if not chosen:
        return None
    start = notebooks.index(chosen[0])
    if chosen != notebooks[start:]:
        expected = ",".join(nb.stem[:2] for nb in notebooks[start:])
        return (f"--in-place runs the series from one notebook to the last, in order (later notebooks read "
                f"the earlier ones' outputs): use --only {expected}")
    return None


def refresh_readme(root: Path | None = None) -> str | None:
    """Regenerate the README's results section of ``root`` (``README_ROOT``) as ``python -m helpers.results
    --write-readme`` does: after an in-place run it quotes the papermill durations of the notebooks just
    replaced, not of those the run started from. Returns the error, None when it worked."""
    from .results import update_readme  # torch and pandas: only when a run replaced notebooks

    try:
        fresh = update_readme(root=root or README_ROOT)
    except (OSError, ValueError) as err:
        return f"README.md's results table not regenerated ({err}): run python -m helpers.results --write-readme"
    print("README.md's results table " + ("was already up to date" if fresh else "regenerated"))
    return None


def stale_outputs(root: Path | None = None) -> list[str]:
    """What an in-place FULL run left in ``root`` (``README_ROOT``) that does not match it: markdown
    numbers no output shows (``python -m helpers.claims``) and figures not from this run
    (``helpers.provenance``)."""
    from .claims import check_notebook, read_literature
    from .provenance import figure_problems

    root = root or README_ROOT
    literature = read_literature(root / "notebooks" / "literature.md")
    notebooks = sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    found = [str(failure) for nb in notebooks for failure in check_notebook(nb, literature).failures]
    for figure in sorted((root / "figures").glob("[0-9][0-9]_*.png")):
        found += figure_problems(figure, root=root, notebooks_dir=root / "notebooks")
    return found


def run_explore(notebooks: list[Path] | None = None, runs_dir: Path | None = None) -> list[Outcome]:
    """Every notebook (or ``notebooks``) on the explore path, headless: the committed files untouched."""
    return run_series(numbered_notebooks() if notebooks is None else notebooks, "explore",
                      runs_dir=runs_dir)


def over_budget(outcomes: list[Outcome], budget_s: float = EXPLORE_BUDGET_S) -> list[Outcome]:
    """The outcomes that took longer than ``budget_s``."""
    return [o for o in outcomes if o.seconds > budget_s]


def summary(outcomes: list[Outcome], mode: str) -> str:
    """The table printed at the end: seconds and status per notebook, slow explore runs flagged."""
    lines = [f"{'notebook':<40} {'seconds':>8}  status"]
    slow = {o.name for o in over_budget(outcomes)} if mode == "explore" else set()
    for o in outcomes:
        flag = f"  SLOW (> {EXPLORE_BUDGET_S:.0f} s)" if o.name in slow else ""
        lines.append(f"{o.name:<40} {o.seconds:>8.1f}  {o.status}{flag}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Run the course notebooks with papermill.")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--quick", action="store_true", help="tiny subsets, outputs into .quick/")
    which.add_argument("--explore", action="store_true",
                       help="a person's path: committed weights and results, outputs into .explore/; "
                            f"flags notebooks over {EXPLORE_BUDGET_S:.0f} s")
    parser.add_argument("--only", help="comma list of notebook numbers or names, e.g. 01,03")
    parser.add_argument("--in-place", action="store_true",
                        help="FULL only: replace the source notebooks with their executed copies")
    parser.add_argument("--log-output", action="store_true", help="stream cell output to the log")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "explore" if args.explore else "full"
    if args.in_place and mode != "full":
        parser.error(f"--in-place is for FULL runs only ({mode} outputs are never committed)")
    notebooks = select(numbered_notebooks(), args.only)
    if args.in_place and (problem := in_place_problem(numbered_notebooks(), notebooks)):
        parser.error(problem)
    outcomes = run_series(notebooks, mode, in_place=args.in_place, log_output=args.log_output)
    print("\n" + summary(outcomes, mode))
    problems = [o for o in outcomes if o.status != "ok"]
    for o in problems:
        print(f"ERROR: {o.name} {o.detail}", file=sys.stderr)
    readme_error = refresh_readme() if args.in_place and len(problems) < len(outcomes) else None
    if readme_error:
        print(f"ERROR: {readme_error}", file=sys.stderr)
    for stale in stale_outputs() if args.in_place and not problems else []:  # tests/test_claims.py and
        print(f"WARNING: {stale}", file=sys.stderr)                         # test_figure_provenance.py fail on these
    if mode == "explore":
        for o in over_budget(outcomes):
            print(f"WARNING: {o.name} took {o.seconds:.0f} s on the explore path "
                  f"(budget {EXPLORE_BUDGET_S:.0f} s)", file=sys.stderr)
    return 1 if problems or readme_error else 0


if __name__ == "__main__":
    sys.exit(main())
