"""Paired comparisons of two models on the same images, and the one rule that turns them into a
verdict ("a", "b" or "tie").

Two models evaluated on the same images disagree only on some of them: the *discordant* images,
``a_only`` (A right, B wrong) and ``b_only`` (B right, A wrong). Everything a paired comparison
needs follows from the per-image correctness of both models:

- the difference in accuracy, ``100 * (a_only - b_only) / n`` percentage points;
- a 95% interval for it from a **paired bootstrap** over images (``scipy.stats.bootstrap`` with
  ``paired=True``: each resample draws images, both models' results on an image travel together);
- the **exact McNemar** p-value: under "no difference" each discordant image is a fair coin, so
  ``a_only ~ Binomial(a_only + b_only, 1/2)`` (``scipy.stats.binomtest``, two-sided).

The rule (``verdict``): A beats B only when the validation interval lies entirely above 0 **and**
every seed's difference (when the step that differs was re-run with several seeds) is positive;
the same for B; otherwise it is a tie, and a tie keeps the simpler or cheaper method.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy import stats

RESAMPLES = 2000   # bootstrap resamples (the interval's ends move by < 0.05 pp between seeds at n = 5,000)
BOOTSTRAP_SEED = 0
VERDICTS = ("a", "b", "tie")


@dataclass(frozen=True)
class PairedComparison:
    """A against B on the same ``n`` images: difference (pp), its 95% interval, McNemar's p-value."""

    difference_pp: float
    ci95_pp: tuple[float, float]
    p_value: float
    a_only: int
    b_only: int
    n: int

    def as_dict(self) -> dict:
        return {**asdict(self), "ci95_pp": list(self.ci95_pp)}


def _as_bool(correct, what: str) -> np.ndarray:
    array = np.asarray(correct.cpu() if isinstance(correct, torch.Tensor) else correct)
    if array.ndim != 1 or array.size == 0 or not (array.dtype == bool or np.isin(array, (0, 1)).all()):
        raise ValueError(f"{what} must be a non-empty 1-D sequence of per-image right/wrong (bool), "
                         f"got shape {array.shape} of {array.dtype}")
    return array.astype(bool)


def mcnemar_p(a_only: int, b_only: int) -> float:
    """Exact two-sided McNemar p-value of ``a_only`` vs ``b_only`` discordant images (1 when none)."""
    if a_only < 0 or b_only < 0:
        raise ValueError(f"discordant counts must be non-negative, got {a_only} and {b_only}")
    if a_only + b_only == 0:
        return 1.0
    return float(stats.binomtest(a_only, a_only + b_only, 0.5).pvalue)


def paired_comparison(correct_a, correct_b, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED
                      ) -> PairedComparison:
    """Compare two models from their per-image correctness on the same images (same order)."""
    a, b = _as_bool(correct_a, "correct_a"), _as_bool(correct_b, "correct_b")
    if a.shape != b.shape:
        raise ValueError(f"both models must be scored on the same images: {a.size} and {b.size} results")
    if int(resamples) < 1000:
        raise ValueError(f"a bootstrap interval needs at least 1,000 resamples, got {resamples}")
    a_only, b_only = int((a & ~b).sum()), int((b & ~a).sum())
    difference = 100.0 * (a_only - b_only) / a.size
    if a_only + b_only == 0:  # the models agree on every image: nothing to resample
        low = high = 0.0
    else:
        result = stats.bootstrap((a.astype(float), b.astype(float)),
                                 lambda x, y, axis=-1: 100.0 * (x.mean(axis=axis) - y.mean(axis=axis)),
                                 paired=True, vectorized=True, n_resamples=int(resamples), method="percentile",
                                 confidence_level=0.95, rng=np.random.default_rng(seed))
        low, high = (float(v) for v in (result.confidence_interval.low, result.confidence_interval.high))
    return PairedComparison(round(difference, 4), (round(low, 4), round(high, 4)), mcnemar_p(a_only, b_only),
                            a_only, b_only, int(a.size))


def verdict(validation: PairedComparison, seed_differences_pp=()) -> str:
    """``"a"`` when the validation interval lies above 0 and every seed's difference (A - B, pp) is
    positive; ``"b"`` when both lie below 0; else ``"tie"`` (no seeds: the interval decides)."""
    low, high = validation.ci95_pp
    seeds = [float(d) for d in seed_differences_pp]
    if low > 0 and all(d > 0 for d in seeds):
        return "a"
    if high < 0 and all(d < 0 for d in seeds):
        return "b"
    return "tie"


def sentence(question: str, a: str, b: str, comparison: PairedComparison, decided: str, split: str = "validation",
             seed_differences_pp=()) -> str:
    """One line with the numbers behind a verdict, as every notebook prints it."""
    lo, hi = comparison.ci95_pp
    seeds = f"; seeds {', '.join(f'{d:+.2f}' for d in seed_differences_pp)} pp" if len(seed_differences_pp) else ""
    outcome = {"a": f"{a} wins", "b": f"{b} wins", "tie": "a tie (the simpler or cheaper one is kept)"}[decided]
    return (f"{question}: {outcome} — {a} − {b} = {comparison.difference_pp:+.2f} pp on {split} "
            f"(95% paired interval {lo:+.2f} to {hi:+.2f}, McNemar p = {comparison.p_value:.3g}, "
            f"{comparison.a_only} vs {comparison.b_only} discordant of {comparison.n:,}{seeds})")


def spread(values) -> str:
    """Seeds' values as every notebook prints them: ``93.12 ± 0.10 (93.01, 93.12, 93.22)``."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("spread of no values")
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return f"{np.mean(values):.2f} ± {sd:.2f} ({', '.join(f'{v:.2f}' for v in values)})"


def target_status(values, threshold: float, at_least: bool = True) -> str:
    """A target over seeds: ``"met"`` when every seed's value reaches ``threshold`` (``>=``, or
    ``<=`` with ``at_least=False``), ``"missed"`` when none does, else ``"at the edge"``."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("a target needs at least one value")
    reached = [v >= threshold if at_least else v <= threshold for v in values]
    return "met" if all(reached) else "missed" if not any(reached) else "at the edge"
