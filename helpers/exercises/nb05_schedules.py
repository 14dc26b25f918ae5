"""Notebook 05 (one-shot vs gradual): the cubic AGP schedule, and global magnitude masks.

The ``*_reference`` functions carry no docstring: ``solution(name)`` prints their source as it is.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..pruning import schedules, unstructured
from .core import Hint, _call, _mask, _rand, _weight, course_model, exercise


@exercise("agp_sparsity", "05", "cubic AGP: s_f + (s_i - s_f)·(1 - t/T)³, held at s_f after T",
          schedules.cubic_sparsity, (schedules.cubic_sparsity,),
          hints=("agp_sparsity(step, T, final, initial=0.0) -> float",
                 "clip t/T to [0, 1]; T = 0 means the final sparsity at once"))
def _check_agp(fn):
    """Two schedules step by step (start, T/2, end, held after T), then the course's AGP events."""
    for T, final, initial in [(10, 0.9, 0.0), (7, 0.95, 0.2)]:
        case = f"T = {T}, final {final}, initial {initial}"
        got = {}
        for t in (0, T / 2, T, T + 3, 2 * T) + tuple(range(T)):
            try:
                got[t] = float(_call(fn, t, T, final, initial, case=f"step {t}, {case}"))
            except (TypeError, ValueError):
                raise Hint(f"return one number (the sparsity at step {t}) ({case})") from None
        if not math.isclose(got[0], initial, abs_tol=1e-6):
            raise Hint(f"at step 0 the sparsity must be the initial {initial}, got {got[0]:.4g} ({case})")
        if not math.isclose(got[T], final, abs_tol=1e-6):
            raise Hint(f"the schedule must reach the final sparsity at step T, got {got[T]:.4g} ({case})")
        mid = schedules.cubic_sparsity(T / 2, T, final, initial)
        if not math.isclose(got[T / 2], mid, abs_tol=1e-6):
            linear = schedules.linear_sparsity(T / 2, T, final, initial)
            what = " (that is the linear schedule)" if math.isclose(got[T / 2], linear, abs_tol=1e-6) else ""
            raise Hint(f"at t = T/2 the cubic schedule gives s_f + (s_i - s_f)/8 = {mid:.4g}, got {got[T / 2]:.4g}{what} ({case})")
        for t in (T + 3, 2 * T):
            if not math.isclose(got[t], final, abs_tol=1e-6):
                raise Hint(f"after step T the sparsity must stay at the final {final}, got {got[t]:.4g} at step {t} ({case})")
        for t in range(T):
            ref = schedules.cubic_sparsity(t, T, final, initial)
            if not math.isclose(got[t], ref, abs_tol=1e-6):
                raise Hint(f"at step {t} expected {ref:.4g}, got {got[t]:.4g} ({case})")
    schedule = schedules.PruningSchedule("agp", 0.95, epochs=6, prune_steps=5, prune_epochs=3)
    for step, s in schedule.events(steps_per_epoch=10):
        out = float(_call(fn, step / 10, 3, 0.95, 0.0, case="the course's AGP events"))
        if not math.isclose(out, s, abs_tol=1e-6):
            raise Hint(f"at epoch {step / 10:g} of the course's 5-step AGP to 95% expected {s:.4g}, got {out:.4g}")
    return "starts at s_i, is cubic, reaches s_f at T and stays there; matches the course's AGP events"


def global_magnitude_reference(weights: dict[str, Tensor], sparsity: float) -> dict[str, Tensor]:
    flat = torch.cat([w.abs().flatten() for w in weights.values()])
    k = int(sparsity * flat.numel())                      # zeros over all layers together
    keep = torch.ones_like(flat, dtype=torch.bool)
    keep[torch.sort(flat, stable=True).indices[:k]] = False
    sizes = [w.numel() for w in weights.values()]
    return {name: part.reshape(w.shape) for (name, w), part in zip(weights.items(), keep.split(sizes))}


@exercise("global_magnitude_masks", "05", "masks removing the floor(s·total) smallest |w| ranked over ALL layers",
          global_magnitude_reference, (unstructured.global_masks,),
          hints=("weights: {name: tensor}; return {name: bool mask of that shape} (True = keep)",
                 "one ranking over all layers: each layer ends up with its own sparsity"))
def _check_global_masks(fn):
    """A small and a real 3-layer case: floor(s·total) removed, the smallest |w| over all layers."""
    model, source = course_model()
    small = {"a": _rand(4, 5, seed=14), "b": _rand(3, 6, seed=15) * 0.1, "c": _rand(10, seed=16) * 3}
    real = {name: _weight(name) for name in ("features.block2.conv", "features.block3.conv", "classifier.fc2")}
    for weights, s, case in [(small, 0.5, "3 layers of different scales, s = 0.5"),
                             (real, 0.9, f"block2/block3 conv and fc2 of {source}, s = 0.9")]:
        out = _call(fn, weights, s, case=case)
        if not isinstance(out, dict) or set(out) != set(weights):
            raise Hint(f"return a dict with one mask per layer name {sorted(weights)}, got "
                       f"{sorted(out) if isinstance(out, dict) else type(out).__name__} ({case})")
        masks = {n: _mask(out[n], w.shape, f"the mask of {n!r}") for n, w in weights.items()}
        total = sum(w.numel() for w in weights.values())
        removed = sum(int((~m).sum()) for m in masks.values())
        if removed != int(s * total):
            raise Hint(f"{removed} weights removed; floor(s·total) = {int(s * total)} of all {total} must be ({case})")
        kept_min = min(float(w.abs()[m].min()) for w, m in zip(weights.values(), masks.values()) if m.any())
        removed_max = max(float(w.abs()[~m].max()) for w, m in zip(weights.values(), masks.values()) if (~m).any())
        if removed_max > kept_min:
            if all(torch.equal(m, unstructured.layer_mask(w.abs(), s)) for w, m in zip(weights.values(), masks.values())):
                raise Hint(f"every layer has sparsity {s}: that is a per-layer ranking; rank |w| of all layers "
                           f"together, so layers with small weights lose more ({case})")
            raise Hint(f"a weight with |w| = {removed_max:.4g} was removed while one with |w| = {kept_min:.4g} "
                       f"was kept: rank by |w| over all layers ({case})")
    return f"removes exactly the smallest |w| over all layers, on a small case and on three layers of {source}"
