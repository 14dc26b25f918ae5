"""Re-time every saved model in ``weights/`` against the 01 baseline, in one process, one protocol.

    python -m helpers.benchmark                     # writes results/speed.json (about 7 min)
    python -m helpers.benchmark --only "03_*"       # re-time some files, keep the other records
    python -m helpers.benchmark --check-against old_speed.json   # how far a new run moved

Every file (``.pt``, ``.sparse``, ``.packed``, ``.ccz``, ``.int8``) is loaded through its loader and
timed by ``speed.compare_speed`` in a pair with ``weights/01_baseline.pt`` (one pair at a time:
the reference is timed next to every file, never a whole round of 40 models away), in several passes
over all files whose rounds are pooled (``speed.pool_speed``): interleaved rounds,
process CPU time at a fixed thread count, the median per-round speed-up with its interquartile
range at batch 1 and 256, wall-clock speed-ups beside it. ``results/speed.json`` is a list of
records, one per file: ``weights_file``, ``size_bytes``, ``sha256`` (so ``python -m helpers.results
--check`` sees a re-saved file), ``macs``, ``mac_ratio`` (baseline MACs / model MACs: the ideal
speed-up), ``speedup`` / ``wall_speedup`` (``{"batch_1": {"median", "q1", "q3"}, "batch_256": ...}``),
milliseconds per call on both clocks, ``threads``, ``clock``, ``rounds`` (pooled) and ``passes``.
The file is read and written (atomically) through ``helpers.records``. Nothing is written
when ``--only`` matches no file, when a speed file it reads is broken, or when a file fails to
load or time: the error names the pattern or the file.
"""
from __future__ import annotations

import argparse
import fnmatch
import os
import sys
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from torch import nn

from .counting import count_macs, file_size
from .models import build_model
from .paths import REPO_ROOT
from .quantization.int8 import is_fx_int8
from .speed import (SPEED_BATCHES, SPEED_THREADS, SPEED_WARMUP_S, SpeedComparison, Spread, compare_speed,
                    compile_unavailable, compiled_model, pool_speed)
from .records import format_spread, read_speed_file, sha256_of, write_speed_file
from .storage import FORMATS, load

BASELINE_FILE = "01_baseline.pt"
DEFAULT_OUTPUT = REPO_ROOT / "results" / "speed.json"
INT8_MACS_NOTE = ("FlopCounterMode counts no quantized kernel: MACs of the same architecture in float "
                  "(the file's config)")
PASSES = 4  # passes over all files, alternately forward and backward (see ``time_records()``)
ROUNDS = 4  # rounds per pair and pass: 16 per file in all; 43 files: about 6.5 min on two cores
TOLERANCE = 0.10  # --check-against: the largest relative difference of a b256 ratio called agreement


def load_saved_model(path: str | os.PathLike) -> nn.Module:
    """The model in ``path`` through the front door (``helpers.load``: the format by suffix), in eval mode."""
    model = load(path)
    model.eval()  # (not chained: an exported program's eval() returns None)
    return model


def saved_model_files(weights_dir: str | os.PathLike, only: str | None = None) -> list[Path]:
    """The saved models in ``weights_dir`` (known suffixes), sorted; ``only``: a file-name pattern."""
    weights_dir = Path(weights_dir)
    if not weights_dir.is_dir():
        raise FileNotFoundError(f"no weights folder at {weights_dir}")
    return sorted(p for p in weights_dir.iterdir()
                  if p.is_file() and p.suffix in FORMATS and (only is None or fnmatch.fnmatch(p.name, only)))


def pattern_problem(only: str) -> str | None:
    """Why ``only`` is no usable ``--only`` pattern (None when it is): it is matched against the file
    names in the weights folder, so an empty pattern, spaces around it, a list or a folder never match."""
    if not only.strip():
        return (f"--only: empty pattern {only!r}; give a file-name pattern like '03_*' "
                "(leave --only out to time every file)")
    if only != only.strip():
        return f"--only: pattern {only!r} has spaces around it; write it without them, like '03_*'"
    if "," in only:
        return f"--only: {only!r} is a list; give one file-name pattern, e.g. '0[34]_*' for 03 and 04"
    if "/" in only or os.sep in only:
        return f"--only: {only!r} names a folder; the pattern matches file names in --weights-dir, like '03_*'"
    return None


def model_macs(model: nn.Module) -> tuple[int, str | None]:
    """MACs per image, and a note when they come from the float architecture (int8 graphs)."""
    macs = count_macs(model)
    if macs == 0 and hasattr(model, "config"):
        return count_macs(build_model(model.config)), INT8_MACS_NOTE
    return macs, None


def _spreads(comparison: SpeedComparison, name: str, attribute: str) -> dict:
    out = {}
    for batch in sorted({r.batch_size for r in comparison.results}):
        value = getattr(comparison.get(name, batch), attribute)
        out[f"batch_{batch}"] = ({k: round(getattr(value, k), 4) for k in ("median", "q1", "q3")}
                                 if hasattr(value, "median") else round(value, 4))
    return out


_TIMED = ("speedup", "wall_speedup", "cpu_ms", "wall_ms")
PROTOCOL = ("pairwise, in passes: each file interleaved with the reference in its own rounds (reference, "
            "file, file, reference, ...), so a slow spell of a shared machine hits both sides of every ratio; "
            "the pairs run in several passes over all files, alternately forward and backward, and each "
            "file's rounds are pooled, so every file samples the whole run, not one minute of it")


def _reference_timing(comparisons: list[SpeedComparison], reference: str) -> dict:
    """The reference's own record: speed-up 1 by definition, its time per call the median over the pairs."""
    import numpy as np

    batches = sorted({r.batch_size for c in comparisons for r in c.results})
    one = {"median": 1.0, "q1": 1.0, "q3": 1.0}
    return {"speedup": {f"batch_{b}": dict(one) for b in batches},
            "wall_speedup": {f"batch_{b}": dict(one) for b in batches},
            **{key: {f"batch_{b}": round(float(np.median([getattr(c.get(reference, b), key) for c in comparisons])), 4)
                     for b in batches} for key in ("cpu_ms", "wall_ms")}}


class BenchmarkError(RuntimeError):
    """A file that could not be loaded, counted or timed; the message names it."""


@contextmanager
def naming(what: str) -> Iterator[None]:
    """Re-raise any error inside as a ``BenchmarkError`` saying ``what`` failed (e.g. "timing weights/x.pt")."""
    try:
        yield
    except Exception as err:
        raise BenchmarkError(f"{what} failed ({type(err).__name__}: {err})") from err


def _load_models(paths: list[Path], names: dict[Path, str], progress: bool) -> tuple[dict, dict]:
    """name -> model and name -> (MACs, note) of every file in ``paths``; a failure names its file."""
    from tqdm.auto import tqdm

    models, macs = {}, {}
    for path in tqdm(paths, desc="loading", disable=not progress):
        name = names[path]
        with naming(f"loading {name}"):
            models[name] = load_saved_model(path)
        with naming(f"counting the MACs of {name}"):
            macs[name] = model_macs(models[name])
    return models, macs


COMPILED = " [compiled]"  # the name of a model's torch.compile'd copy in a timed group
FX_NOT_COMPILED = ("an FX int8 graph: torch.compile of it crashes the process (torchao's PT2E is the compiled "
                   "int8 path)")


def _compile_all(paths: list[Path], names: dict[Path, str], models: dict, batch_sizes, progress: bool
                 ) -> tuple[dict, dict]:
    """name -> compiled copy of every model that compiles here, and name -> compile seconds (wall,
    apart from any timed call) or the reason it was not compiled."""
    from tqdm.auto import tqdm

    compiled, notes = {}, {}
    reason = compile_unavailable()
    for path in tqdm(paths, desc="compiling", disable=not progress):
        name = names[path]
        notes[name] = reason or (FX_NOT_COMPILED if is_fx_int8(models[name]) else None)
        if notes[name] is None:
            try:
                compiled[name], notes[name] = compiled_model(models[name], batch_sizes)
            except Exception as err:  # noqa: BLE001 -- recorded: the file is still timed eager
                notes[name] = f"torch.compile failed ({type(err).__name__}: {str(err).splitlines()[0][:200]})"
    return compiled, notes


def _time_pairs(models: dict[str, nn.Module], ref: str, passes: int, progress: bool, compiled: dict | None = None,
                **timing) -> dict[str, SpeedComparison]:
    """Each file timed in a group with ``ref`` (and, where compiled, both compiled copies) in ``passes``
    passes (forward, backward, ...), its rounds pooled; ``timing`` goes to ``compare_speed``. A
    failure names the file."""
    from tqdm.auto import tqdm

    compiled = compiled or {}
    order = [n for n in models if n != ref] or [ref]
    timed = {name: [] for name in order}
    with tqdm(total=passes * len(order), desc="timing pairs", disable=not progress) as bar:
        for k in range(passes):
            for name in order if k % 2 == 0 else order[::-1]:
                group = {ref: models[ref], name: models[name]}
                group.update({n + COMPILED: compiled[n] for n in dict.fromkeys((ref, name)) if n in compiled})
                with naming(f"timing {name} in a pair with {ref}"):
                    timed[name].append(compare_speed(group, ref, **timing))
                bar.update()
    return {name: pool_speed(parts) for name, parts in timed.items()}


def _spread_dict(spreads: dict) -> dict:
    """``{batch_N: Spread}`` as ``{batch_N: {median, q1, q3}}`` rounded for the file."""
    return {b: {k: round(getattr(v, k), 4) for k in ("median", "q1", "q3")} for b, v in spreads.items()}


def _compiled_timing(comparison: SpeedComparison, name: str, ref: str, note) -> dict:
    """What compiling buys: the file eager against the compiled baseline, and the file's compiled
    copy against the eager and the compiled baseline (absent where either was not compiled)."""
    batches = sorted({r.batch_size for r in comparison.results})
    models = {r.model for r in comparison.results}
    if ref + COMPILED not in models:
        return {}
    over = lambda a, b: _spread_dict({f"batch_{n}": comparison.speedup_over(a, b, n) for n in batches})  # noqa: E731
    timing = {"speedup_vs_compiled": over(name, ref + COMPILED)}
    if name + COMPILED in models and name != ref:
        timing["compiled"] = {"speedup": over(name + COMPILED, ref), "speedup_vs_compiled":
                              over(name + COMPILED, ref + COMPILED), "compile_seconds": round(note, 2)}
    else:
        timing["compiled"] = {"not_compiled": note} if isinstance(note, str) else {}
    return timing


def time_records(paths: list[Path], reference: Path, threads: int = SPEED_THREADS,
                  rounds: int = ROUNDS, warmup_s: float = SPEED_WARMUP_S,
                  calls_per_round: int | None = None, batch_sizes=SPEED_BATCHES,
                  progress: bool = True, passes: int = PASSES, compiled: bool = True) -> list[dict]:
    """Load ``paths`` and ``reference``, time each file in a pair with it, and return one record per file.

    Each pair runs ``rounds`` rounds in each of ``passes`` passes over all files; the passes go
    forward and backward in turn, so with an even number of passes every file's rounds sit, on
    average, in the middle of the run. A slow change of the machine during the run (measured here:
    the baseline's CPU time per call at batch 256 fell from 260 to 185 ms within two minutes while
    the small models' stayed) then weighs on every file alike instead of on the files timed during it.
    A file that fails to load or time raises a ``BenchmarkError`` naming it. With ``compiled``, every
    file and the reference are also timed as ``torch.compile`` copies in the same rounds (compile
    time reported apart): ``speedup_vs_compiled`` and ``compiled`` say what a method buys beyond
    compiling; where compiling is impossible the records say why, once per file.
    """
    if not isinstance(passes, int) or isinstance(passes, bool) or passes < 1:
        raise ValueError(f"passes must be an integer >= 1, got {passes!r}")
    paths = [reference] + [p for p in paths if p.resolve() != reference.resolve()]
    names = {p: _relative(p, reference.parent.parent) for p in paths}
    models, macs = _load_models(paths, names, progress)
    ref = names[reference]
    copies, notes = _compile_all(paths, names, models, batch_sizes, progress) if compiled else ({}, {})
    pairs = _time_pairs(models, ref, passes, progress, copies, batch_sizes=batch_sizes, threads=threads,
                        rounds=rounds, calls_per_round=calls_per_round, warmup_s=warmup_s)
    measured = datetime.now(timezone.utc).isoformat(timespec="seconds")
    reference_macs = macs[ref][0]
    any_pair = next(iter(pairs.values()))  # every pair ran at the same threads, clock and rounds
    records = []
    for path in paths:
        name = names[path]
        comparison = pairs.get(name)
        timing = ({key: _spreads(comparison, name, key) for key in _TIMED} if comparison is not None
                  else _reference_timing(list(pairs.values()), ref))
        record = {"weights_file": name, "format": path.suffix.lstrip("."), "size_bytes": file_size(path),
                  "sha256": sha256_of(path), "macs": macs[name][0],
                  "mac_ratio": round(reference_macs / macs[name][0], 4),
                  "speedup": timing["speedup"], "wall_speedup": timing["wall_speedup"],
                  "cpu_ms_per_call": timing["cpu_ms"], "wall_ms_per_call": timing["wall_ms"],
                  "reference": ref, "threads": any_pair.threads, "clock": any_pair.clock,
                  "rounds": any_pair.rounds, "passes": passes, "protocol": PROTOCOL, "measured": measured}
        if macs[name][1]:
            record["macs_note"] = macs[name][1]
        if comparison is not None:
            record.update(_compiled_timing(comparison, name, ref, notes.get(name)))
        elif ref in copies:  # the reference's compiled copy against itself eager, over every pair
            record["compiled"] = {"speedup": _spread_dict({f"batch_{b}": Spread.of([
                t[0] for c in pairs.values() for t in c.get(ref + COMPILED, b).rounds]) for b in batch_sizes}),
                "compile_seconds": round(notes[ref], 2)}
        records.append(record)
    return records


def _relative(path: Path, root: Path) -> str:
    return path.resolve().relative_to(root.resolve()).as_posix()


def merge_records(new: list[dict], old: list[dict], weights_root: Path) -> list[dict]:
    """``new`` plus the ``old`` records of other files that still exist, sorted by file."""
    retimed = {r["weights_file"] for r in new}
    kept = [r for r in old if r["weights_file"] not in retimed and (weights_root / r["weights_file"]).is_file()]
    return sorted(new + kept, key=lambda r: r["weights_file"])


def b256_differences(new: list[dict], old: list[dict]) -> list[tuple[str, float, float, float]]:
    """(file, old ratio, new ratio, new/old - 1) of the batch-256 median speed-ups of files in both."""
    before = {r["weights_file"]: r["speedup"]["batch_256"]["median"] for r in old if "batch_256" in r["speedup"]}
    return [(r["weights_file"], before[r["weights_file"]], r["speedup"]["batch_256"]["median"],
             r["speedup"]["batch_256"]["median"] / before[r["weights_file"]] - 1)
            for r in new if r["weights_file"] in before and "batch_256" in r["speedup"]]


def _print_table(records: list[dict]) -> None:
    print(f"{'weights file':40s} {'MAC ratio':>9s}  {'speed-up b1 (q1–q3)':>22s}  {'speed-up b256 (q1–q3)':>22s}")
    for r in records:
        cells = [format_spread(s["median"], s["q1"], s["q3"]) for s in
                 (r["speedup"].get("batch_1"), r["speedup"].get("batch_256")) if s]
        print(f"{r['weights_file']:40s} {r['mac_ratio']:9.2f}  " + "  ".join(f"{c:>22s}" for c in cells))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights-dir", type=Path, default=REPO_ROOT / "weights")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--threads", type=int, default=SPEED_THREADS)
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="rounds per pair and pass (4)")
    parser.add_argument("--passes", type=int, default=PASSES, help="passes over all files (4)")
    parser.add_argument("--calls-per-round", type=int, default=None, help="default: automatic")
    parser.add_argument("--warmup-s", type=float, default=SPEED_WARMUP_S)
    parser.add_argument("--only", metavar="PATTERN", help="file-name pattern, e.g. '03_*'; other records are kept")
    parser.add_argument("--eager-only", action="store_true",
                        help="skip the torch.compile'd copies (default: time them too, where a C++ compiler exists)")
    parser.add_argument("--check-against", metavar="FILE", type=Path,
                        help="a previous speed.json: print how far each b256 ratio moved")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE,
                        help="--check-against exits 1 when a b256 ratio moved by more than this (0.10)")
    return parser


def _selection(parser: argparse.ArgumentParser, args) -> tuple[list[Path], list[dict] | None, list[dict] | None]:
    """The files to time, the records of ``--output`` to keep (``--only``) and those of
    ``--check-against``: all checked before minutes of timing, any problem a parser error (nothing written)."""
    reference = args.weights_dir / BASELINE_FILE
    if not reference.is_file():
        parser.error(f"the reference {reference} does not exist")
    if args.only is not None and (problem := pattern_problem(args.only)):
        parser.error(problem)
    try:
        previous = read_speed_file(args.check_against) if args.check_against else None
        kept = read_speed_file(args.output) if args.only and args.output.is_file() else None
    except (OSError, ValueError) as err:
        parser.error(f"{err}; {args.output} not written")
    paths = saved_model_files(args.weights_dir, args.only)
    if not paths:
        parser.error(f"--only {args.only!r} matches no saved model in {args.weights_dir}; {args.output} not written")
    return paths, kept, previous


def _report_moves(records: list[dict], previous: list[dict], against: Path, tolerance: float) -> int:
    """Print how far each b256 ratio moved against ``previous``; 1 when one moved beyond ``tolerance``."""
    differences = b256_differences(records, previous)
    print(f"\nbatch-256 speed-ups against {against}:")
    for name, before, now, change in differences:
        flag = "  <-- beyond tolerance" if abs(change) > tolerance else ""
        print(f"{name:40s} {before:6.2f} -> {now:6.2f}  {change:+6.1%}{flag}")
    beyond = sum(abs(change) > tolerance for *_, change in differences)
    print(f"{beyond} of {len(differences)} b256 ratios moved by more than {tolerance:.0%}")
    return 1 if beyond else 0


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    paths, kept, previous = _selection(parser, args)
    try:
        records = time_records(paths, args.weights_dir / BASELINE_FILE, compiled=not args.eager_only,
                               threads=args.threads, rounds=args.rounds, passes=args.passes, warmup_s=args.warmup_s,
                               calls_per_round=args.calls_per_round)
    except BenchmarkError as err:
        print(f"error: {err}; {args.output} not written", file=sys.stderr)
        return 1
    if kept is not None:
        records = merge_records(records, kept, args.weights_dir.parent)
    write_speed_file(args.output, records)
    _print_table(records)
    print(f"wrote {args.output} ({len(records)} records)")
    return 0 if previous is None else _report_moves(records, previous, args.check_against, args.tolerance)


if __name__ == "__main__":
    sys.exit(main())
