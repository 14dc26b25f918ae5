"""Notebook 08 (comparison): the Pareto front of records, and the verdict rule on an interval and seeds."""
from __future__ import annotations

import functools

import numpy as np

from .. import comparison
from ..records import is_saved_model, read_results
from .core import Hint, _call, _mask, _tensor, exercise


def _point(sizes, accuracies, k: int) -> str:
    return f"record {k} (size {sizes[k]:g}, accuracy {accuracies[k]:g})"


def _front_mistake(out: np.ndarray, sizes: np.ndarray, accuracies: np.ndarray, case: str) -> str:
    """What the learner's front ``out`` gets wrong on one case, in words (the first record it misplaces)."""
    ref = comparison.pareto_mask(sizes, accuracies)
    if (out == comparison.pareto_mask(-sizes, accuracies)).all():
        return ("smaller is better: a record is dominated by one at least as SMALL and as accurate, "
                f"not by a larger one ({case})")
    order = np.argsort(sizes, kind="stable")
    if (out == ref[order]).all():
        return f"your mask follows the records sorted by size: return one entry per record, in the input's order ({case})"
    k = int(np.flatnonzero(out != ref)[0])
    if ref[k]:
        twins = [j for j in range(len(sizes)) if j != k and sizes[j] == sizes[k] and accuracies[j] == accuracies[k]]
        if twins:
            return (f"{_point(sizes, accuracies, k)} has an identical twin, record {twins[0]}: identical records do "
                    f"not dominate each other (neither is better in anything), so both stay on the front ({case})")
        return (f"{_point(sizes, accuracies, k)} is not dominated: no other record is at least as small and at "
                f"least as accurate with one of the two strictly better, so it is on the front ({case})")
    j = next(j for j in range(len(sizes)) if sizes[j] <= sizes[k] and accuracies[j] >= accuracies[k]
             and (sizes[j] < sizes[k] or accuracies[j] > accuracies[k]))
    why = ("the same size and more accurate" if sizes[j] == sizes[k] else
           "the same accuracy and smaller" if accuracies[j] == accuracies[k] else "smaller and more accurate")
    return (f"{_point(sizes, accuracies, k)} is dominated by {_point(sizes, accuracies, j)}: {why} — equal in one "
            f"and better in the other is enough to dominate, so {k} is off the front ({case})")


@functools.lru_cache(maxsize=1)
def _course_records() -> tuple[np.ndarray, np.ndarray, str]:
    """Sizes (smallest file) and validation accuracies of the saved models in ``results/`` (empty without)."""
    try:
        records = [r for r in read_results() if is_saved_model(r) and r.get("val_accuracy") is not None]
    except (OSError, ValueError):
        records = []
    sizes = [min(v for v in (r["size_bytes"], r.get("sparse_size_bytes")) if v is not None) for r in records]
    return np.asarray(sizes, float), np.asarray([r["val_accuracy"] for r in records], float), \
        f"the {len(records)} saved models of results/ (smallest file, validation accuracy)"


@exercise("pareto_front", "08", "which records are not dominated on size (smaller is better) and accuracy",
          comparison.pareto_mask, (comparison.pareto_mask, comparison.pareto_front),
          hints=("sizes, accuracies: 1-D float arrays of one length N >= 1 (records in no particular order)",
                 "returns N booleans in the input's order: True where no other record is at least as small and "
                 "at least as accurate with one of the two strictly better; identical records both stay"))
def _check_front(fn):
    """Records in no order, equal sizes, equal accuracies, identical twins, one record, and the course's
    saved models; the misplaced record and its dominator (or twin) are named."""
    cases = [([5, 1, 3, 4, 2], [91, 80, 85, 90, 85], "5 records in no particular order"),
             ([2, 2, 3], [88, 90, 89], "two records of equal size"),
             ([1, 2, 3], [90, 90, 90], "three records of equal accuracy"),
             ([3, 1, 3, 2], [92, 80, 92, 85], "two identical records (same size, same accuracy)"),
             ([4], [70], "one record")]
    sizes, accuracies, source = _course_records()
    if len(sizes):
        cases.append((sizes, accuracies, source))
    for s, a, case in cases:
        s, a = np.asarray(s, float), np.asarray(a, float)
        raw = _call(fn, s, a, case=case)
        if _tensor(raw, "your front").shape != s.shape:
            raise Hint(f"return one True/False per record ({len(s)} here, in the input's order), not the indices "
                       f"or the rows of the front; got shape {tuple(_tensor(raw).shape)} ({case})")
        out = _mask(raw, s.shape, "your front").numpy()
        if (out != comparison.pareto_mask(s, a)).any():
            raise Hint(_front_mistake(out, s, a, case))
    return "right on records in no order, equal sizes and accuracies, identical twins, one record" + \
        (f" and {source}" if len(sizes) else "")


VERDICTS = ("a", "b", "tie")


def _verdict_mistake(out: str, expected: str, ci: tuple, seeds: list, case: str) -> str:
    """Why ``out`` is not the rule's ``expected`` for ``ci`` and ``seeds``, in words."""
    low, high = ci
    interval = f"[{low:+.2f}, {high:+.2f}]"
    if expected == "tie" and low <= 0 <= high:
        if low == 0 or high == 0:
            return (f"the interval {interval} touches 0: an end AT 0 still holds 0, and \"A beats B\" needs it "
                    f"entirely beyond 0 (low > 0, or high < 0 for B) — a tie ({case})")
        return f"the interval {interval} holds 0: a tie, wherever its middle lies ({case})"
    if expected == "tie":
        side = 1 if low > 0 else -1
        bad = next(i for i, d in enumerate(seeds) if not d * side > 0)
        if seeds[bad] == 0:
            return (f"seed {bad}'s difference is exactly 0: it does not say that {'A' if side > 0 else 'B'} is "
                    f"better, so the seeds do not all agree — a tie ({case})")
        return (f"seed {bad}'s difference is {seeds[bad]:+.2f}, against the interval {interval}: EVERY seed must "
                f"agree (the same sign), not their mean or most of them — a tie ({case})")
    if out == "tie" and not seeds:
        return f"with no seeds the interval {interval} decides alone ({case})"
    if out == "tie":
        return f"the interval {interval} lies beyond 0 and every seed agrees: {expected!r} wins ({case})"
    return (f"the interval is of A − B: above 0 means A is better ('a'), below 0 means B ('b'); "
            f"{interval} gives {expected!r} ({case})")


@exercise("verdict_rule", "08", "the course's verdict ('a', 'b' or 'tie') from a paired interval and the seeds",
          comparison.interval_verdict, (comparison.interval_verdict, comparison.frontier_walk),
          hints=("ci95_pp: (low, high) of A − B in pp; seed_differences_pp: A − B of each seed (may be empty)",
                 "returns 'a', 'b' or 'tie'; an interval that touches 0 holds 0; every seed must agree"))
def _check_verdict(fn):
    """Intervals beyond, holding and touching 0, no seeds, agreeing seeds, one disagreeing seed, a seed
    at exactly 0, seeds against the interval, and a model against itself ([0, 0])."""
    cases = [((0.2, 0.9), [], "interval above 0, no seeds"), ((-0.9, -0.2), [], "interval below 0, no seeds"),
             ((-0.3, 0.5), [], "interval holding 0"), ((-0.1, 1.5), [], "a wide interval holding 0, its middle +0.70"),
             ((0.0, 0.6), [], "interval touching 0 from above"),
             ((-0.6, 0.0), [], "interval touching 0 from below"), ((0.0, 0.0), [], "a model against itself"),
             ((0.1, 0.7), [0.3, 0.2, 0.4], "three seeds agreeing"),
             ((0.1, 0.7), [0.5, -0.1, 0.4], "one seed of three disagreeing (their mean is positive)"),
             ((0.1, 0.7), [0.3, 0.0, 0.2], "a seed at exactly 0"),
             ((-0.8, -0.1), [-0.2, -0.3, -0.1], "below 0, seeds agreeing"),
             ((-0.8, -0.1), [0.2, 0.3, 0.1], "seeds against the interval")]
    for ci, seeds, case in cases:
        expected = comparison.interval_verdict(ci, seeds)
        out = _call(fn, ci, list(seeds), case=case, note="" if seeds else "no seeds: the interval decides alone")
        if out not in VERDICTS:
            raise Hint(f"return one of 'a', 'b' or 'tie', got {out!r} ({case})")
        if out != expected:
            raise Hint(_verdict_mistake(out, expected, ci, list(seeds), case))
    return "right on intervals beyond, holding and touching 0, no seeds, seeds agreeing, disagreeing and at 0"
