"""Exercises a learner writes in the notebooks, and the checkers that grade them.

Every exercise is the core of one method (Wanda's scores, the AGP schedule, a quantizer, ...).
In a notebook::

    from helpers.exercises import check, show, solution

    def wanda_scores(weight, input_norms):
        raise NotImplementedError           # the learner's code
    check("wanda_scores", wanda_scores)     # ✔, or a hint naming the property that failed
    solution("wanda_scores")                # the reference, one call away
    show("wanda_scores")                    # after a pass (or on demand): the implementation in helpers/
    wanda = use("wanda_scores", wanda_scores)  # yours once it passes, else the reference; says which

``check`` runs the learner's function on small fixed cases and on a layer of the course model
(``weights/01_baseline.pt`` when present, else a seeded untrained model) and compares it with the
reference. The small cases hold the traps of each exercise where they apply: ties (the reference's
rule: argmax takes the first class, a mask removes the earlier position first), fractions where round and floor differ, odd shapes, N:M other
than 2:4, the edge values of every parameter, gaps of exactly max_gap. The function gets copies of
its inputs; one it changed in place is named ("your function changed its input scores"). ``check``
never raises for a learner's bug: exceptions become hints, and a stub that raises
``NotImplementedError`` reports "not implemented yet".

``python -m helpers.exercises --list`` prints one line per exercise, beginning with its notebook.

The package: ``core`` (registry, case runner with its copy-and-compare of the inputs, hint
formatting), ``masks`` (grading keep-masks: quota, order, ties) and one module per notebook
(``nb01_baseline`` … ``nb07_storage``) holding that notebook's references and checkers; importing
them here registers their exercises, in notebook order.
"""
from __future__ import annotations

import argparse
import contextlib
import inspect
import io
from typing import Callable

from .core import (BASELINE_WEIGHTS, REGISTRY, Exercise, Hint, NotImplementedYet, _get, _images, course_model,
                   exercise)
from . import nb01_baseline, nb02_filters, nb03_wanda, nb04_slimming  # importing a module registers
from . import nb05_schedules, nb06_quantization, nb07_storage         # its exercises, in notebook order
from . import nb08_comparison
from .nb01_baseline import normalize_reference
from .nb02_filters import filter_l1_reference
from .nb03_wanda import im2col_norms_reference, wanda_reference
from .nb05_schedules import global_magnitude_reference
from .nb06_quantization import _tie_free, fake_quantize_reference, ste_round_reference, symmetric_scales_reference
from .nb07_storage import relative_gaps_reference

__all__ = ["check", "use", "in_use", "show", "solution", "listing", "main", "REGISTRY", "Exercise", "Hint", "NotImplementedYet",
           "exercise", "course_model", "BASELINE_WEIGHTS", "normalize_reference", "filter_l1_reference",
           "wanda_reference", "im2col_norms_reference", "global_magnitude_reference", "symmetric_scales_reference",
           "fake_quantize_reference", "ste_round_reference", "relative_gaps_reference"]


def check(name: str, fn: Callable) -> bool:
    """Grade the learner's ``fn`` for exercise ``name``: prints ✔ or a precise hint; True if right."""
    ex = _get(name)
    if not callable(fn):
        print(f"✘ {name}: pass your function itself, e.g. check({name!r}, {name}), not {type(fn).__name__}")
        return False
    try:
        summary = ex.checker(fn)
    except NotImplementedYet:
        print(f"… {name}: not implemented yet — replace `raise NotImplementedError` with your code "
              f"(solution({name!r}) reveals the reference)")
        return False
    except Hint as hint:
        print(f"✘ {name}: {hint}")
        return False
    except Exception as exc:  # an answer so odd that comparing it failed: still a hint, not a crash
        print(f"✘ {name}: could not compare your result with the reference ({type(exc).__name__}: {exc})")
        return False
    print(f"✔ {name}: {summary}")
    return True


IN_USE: dict[str, str] = {}  # exercise name -> "yours" or "the reference": what the last use() chose


def use(name: str, fn: Callable | None = None) -> Callable:
    """The implementation of ``name`` that the notebook's next cells run: the learner's ``fn`` once
    it passes ``check`` (silently re-run here), else the reference. Prints which one runs, e.g.::

        wanda = use("wanda_scores", wanda_scores)   # ▶ wanda_scores: the cells below run YOUR function
    """
    ex = _get(name)
    passed = False
    if fn is not None:
        with contextlib.redirect_stdout(io.StringIO()):
            passed = check(name, fn)
    IN_USE[name] = "yours" if passed else "the reference"
    if passed:
        print(f"▶ {name}: the cells below run YOUR function (it passed check)")
        return fn
    why = "it has not passed check yet" if fn is not None else "none given"
    print(f"▶ {name}: the cells below run the reference {ex.reference.__module__}.{ex.reference.__qualname__} "
          f"(yours: {why})")
    return ex.reference


def in_use(name: str) -> str:
    """``"yours"`` or ``"the reference"``: what the last ``use(name, ...)`` chose (the reference before any)."""
    _get(name)
    return IN_USE.get(name, "the reference")


def solution(name: str) -> str:
    """Print and return the reference solution's source."""
    source = inspect.getsource(_get(name).reference)
    print(source)
    return source


def show(name_or_function) -> str:
    """Print and return the source of the helpers implementation a notebook displays.

    ``name_or_function``: an exercise name (its implementation(s) in ``helpers/``) or a function.
    """
    functions = (name_or_function,) if callable(name_or_function) else _get(name_or_function).shows
    parts = [f"# {f.__module__}.{f.__qualname__}\n{inspect.getsource(f)}" for f in functions]
    text = "\n".join(parts)
    print(text)
    return text


def listing() -> list[str]:
    """One line per exercise: notebook, name, statement."""
    width = max(len(n) for n in REGISTRY)
    return [f"{ex.notebook}  {ex.name:<{width}}  {ex.statement}"
            for ex in sorted(REGISTRY.values(), key=lambda e: e.notebook)]


def main(argv=None) -> None:
    """``python -m helpers.exercises [--list | --solution NAME]``: the listing, or one reference."""
    parser = argparse.ArgumentParser(prog="python -m helpers.exercises", description=__doc__.split("\n")[0])
    parser.add_argument("--list", action="store_true", help="one line per exercise: notebook, name, statement")
    parser.add_argument("--solution", metavar="NAME", help="print the reference solution of NAME")
    args = parser.parse_args(argv)
    if args.solution:
        solution(args.solution)
    else:
        print("\n".join(listing()))
