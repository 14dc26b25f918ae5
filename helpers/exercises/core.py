"""The machinery every exercise module shares: the registry, the case runner, hint formatting.

An exercise module registers each checker with ``@exercise(...)``. A checker runs the learner's
function through ``_call`` (copies of the arguments; a learner's exception, or a change the function
made to one of its inputs, becomes a ``Hint``),
turns the answer into a tensor with ``_tensor`` / ``_mask``, compares it with ``_close`` and
raises a ``Hint`` naming the failed property; it returns one line saying what it checked.
``course_model`` and ``_images`` give the checkers a layer and activations of the course model.
"""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from .. import load  # helpers.load: any model file by its suffix (here a .pt checkpoint)
from ..models import build_model
from ..paths import REPO_ROOT

BASELINE_WEIGHTS = REPO_ROOT / "weights" / "01_baseline.pt"


class Hint(Exception):
    """A failed property of the learner's answer; the message says which."""


class NotImplementedYet(Exception):
    """The learner's function still raises NotImplementedError."""


@dataclass(frozen=True)
class Exercise:
    """One exercise: what to compute, its reference, its checker and what a notebook shows."""

    name: str
    notebook: str                      # "03"
    statement: str                     # one line: what to compute
    reference: Callable                # the reference solution (helpers' own where it fits)
    checker: Callable[[Callable], str]  # raises Hint; returns what was checked
    shows: tuple[Callable, ...]        # the helpers implementation(s) the notebook displays
    hints: tuple[str, ...] = field(default_factory=tuple)


REGISTRY: dict[str, Exercise] = {}


def exercise(name: str, notebook: str, statement: str, reference: Callable, shows: tuple, hints=()):
    """Register the decorated checker as the exercise ``name``."""
    def register(checker):
        REGISTRY[name] = Exercise(name, notebook, statement, reference, checker, tuple(shows), tuple(hints))
        return checker
    return register


def _get(name: str) -> Exercise:
    """The exercise ``name``; a KeyError listing every exercise when there is none."""
    if name not in REGISTRY:
        raise KeyError(f"no exercise {name!r}; the exercises are {sorted(REGISTRY)}")
    return REGISTRY[name]


def _copy(arg):
    """A copy of ``arg`` sharing no memory with it: tensors, arrays, and dicts, lists, tuples of them."""
    if isinstance(arg, Tensor):
        return arg.detach().clone()
    if isinstance(arg, np.ndarray):
        return arg.copy()
    if isinstance(arg, dict):
        return {k: _copy(v) for k, v in arg.items()}
    if isinstance(arg, (list, tuple)):
        return type(arg)(_copy(v) for v in arg)
    return arg


def _same(now, saved) -> bool:
    """Whether ``now`` still equals ``saved`` entry for entry (NaN equal to NaN, shapes and dtypes too)."""
    if isinstance(saved, Tensor):
        now = now.detach() if isinstance(now, Tensor) else now
        return (isinstance(now, Tensor) and now.shape == saved.shape and now.dtype == saved.dtype
                and bool(((now == saved) | ((now != now) & (saved != saved))).all()))
    if isinstance(saved, np.ndarray):
        return (isinstance(now, np.ndarray) and now.shape == saved.shape and now.dtype == saved.dtype
                and bool(((now == saved) | ((now != now) & (saved != saved))).all()))
    if isinstance(saved, dict):
        return isinstance(now, dict) and list(now) == list(saved) and all(_same(now[k], saved[k]) for k in saved)
    if isinstance(saved, (list, tuple)):
        return len(now) == len(saved) and all(_same(a, b) for a, b in zip(now, saved))
    if isinstance(saved, float) and saved != saved:  # NaN: equal to NaN
        return isinstance(now, float) and now != now
    return now == saved  # a number or string inside a list the function reordered in place


def _input_names(fn: Callable, n: int) -> list[str]:
    """The names the learner gave ``fn``'s first ``n`` parameters ("argument 2" where unknown)."""
    try:
        names = [p.name for p in inspect.signature(fn).parameters.values()
                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):  # builtins such as torch.round may have no signature
        names = []
    return names[:n] + [f"argument {i + 1}" for i in range(len(names), n)]


def _run(fn: Callable, passed: tuple, saved: tuple, case: str = "", note: str = ""):
    """``fn(*passed)``; a learner's exception becomes a Hint (``note`` appended: what the case
    means), and so does a change to an input: ``saved`` holds each of ``passed`` before the call."""
    where = f" (on {case})" if case else ""
    try:
        out = fn(*passed)
    except NotImplementedError:
        raise NotImplementedYet from None
    except Exception as exc:  # the learner's bug, reported, never raised
        note = f" — {note}" if note else ""
        raise Hint(f"your function raised {type(exc).__name__}: {exc}{where}{note}") from None
    for name, now, before in zip(_input_names(fn, len(passed)), passed, saved):
        if not _same(now, before):
            raise Hint(f"your function changed its input {name}{where}: leave the caller's data as it was — "
                       "work on a copy (.clone() / .copy()) or out of place (w.abs(), not w.abs_(); "
                       "x = x + 1, not x += 1)")
    return out


def _call(fn: Callable, *args, case: str = "", note: str = ""):
    """``fn(*args)`` on copies of the arguments, compared with ``args`` after the call (see ``_run``)."""
    return _run(fn, tuple(_copy(a) for a in args), args, case, note)


def _tensor(out, what: str = "the result") -> Tensor:
    """The learner's output as a CPU tensor (from a tensor, array, list or number)."""
    if out is None:
        raise Hint(f"{what} is None: did you forget `return`?")
    try:
        if isinstance(out, Tensor):
            return out.detach().cpu()
        return torch.as_tensor(np.asarray(out))
    except Exception:
        raise Hint(f"{what} must be a tensor, got {type(out).__name__}") from None


def _shape(out: Tensor, shape, what: str = "the result", why: str = "") -> None:
    """Raise a Hint unless ``out`` has ``shape``; ``why`` says what the shape means."""
    if tuple(out.shape) != tuple(shape):
        raise Hint(f"{what} must have shape {tuple(shape)}{why}, got {tuple(out.shape)}")


def _close(out: Tensor, ref: Tensor, rtol=1e-5, atol=1e-6) -> bool:
    """Same shape and all entries close (compared in float64)."""
    return out.shape == ref.shape and torch.allclose(out.double(), ref.double(), rtol=rtol, atol=atol)


def _first_diff(out: Tensor, ref: Tensor, rtol=1e-5, atol=1e-6) -> str:
    """How many entries differ, and the first of them (expected and got), for a hint."""
    bad = ~torch.isclose(out.double(), ref.double(), rtol=rtol, atol=atol)
    bad = bad if bad.any() else out.double() != ref.double()  # within the tolerance: name an exact difference
    idx = tuple(int(i) for i in torch.nonzero(bad)[0]) if bad.any() else (0,) * ref.ndim
    where = f"at index {idx}" if idx else "everywhere"
    return f"{int(bad.sum())} of {ref.numel()} entries differ; {where} expected {ref[idx].item():.6g}, got {out[idx].item():.6g}"


def _mask(out, shape, what="the mask") -> Tensor:
    """The learner's mask as a bool tensor of ``shape`` (0/1 values accepted); a Hint otherwise."""
    out = _tensor(out, what)
    _shape(out, shape, what, " (one entry per weight)")
    if out.dtype != torch.bool:
        if not ((out == 0) | (out == 1)).all():
            raise Hint(f"{what} must be True (keep) / False (remove), got values other than 0 and 1")
        out = out.bool()
    return out


@functools.lru_cache(maxsize=1)
def course_model() -> tuple[torch.nn.Module, str]:
    """The trained baseline (``weights/01_baseline.pt``) when present, else a seeded untrained CNN."""
    if BASELINE_WEIGHTS.exists():
        return load(BASELINE_WEIGHTS).eval(), "the trained course model"
    torch.manual_seed(0)
    return build_model().eval(), "the course model (seeded, untrained: no weights/01_baseline.pt)"


@functools.lru_cache(maxsize=1)
def _images() -> Tensor:
    """16 fixed pseudo-images in [0, 1] for activations of the course model."""
    return torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(7))


def _weight(layer: str) -> Tensor:
    """A copy of the weight of ``layer`` (e.g. ``"classifier.fc2"``) of the course model."""
    return course_model()[0].get_submodule(layer).weight.detach().clone()


def _rand(*shape, seed: int) -> Tensor:
    """Standard-normal values of ``shape``, the same for the same ``seed``."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
