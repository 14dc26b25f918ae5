"""Notebook 05 (one-shot vs gradual): the cubic AGP schedule, global magnitude masks, and a decision:
per-layer sparsities that reach a model-wide target with the least loss of validation accuracy.

The ``*_reference`` functions carry no docstring: ``solution(name)`` prints their source as it is.
"""
from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from ..data import load_splits
from ..live import block1_output, val_accuracy, val_accuracy_from_block1
from ..pruning import schedules, sweeps, unstructured
from . import masks
from .core import Hint, _call, _mask, _rand, _weight, course_model, exercise


def _sparsity(fn, t, T, final, initial, case: str, note: str = "") -> float:
    """The learner's sparsity at step ``t`` as a float; a Hint when it is not one number."""
    out = _call(fn, t, T, final, initial, case=f"step {t}, {case}", note=note)
    try:
        return float(out)
    except (TypeError, ValueError):
        raise Hint(f"return one number (the sparsity at step {t}), got {type(out).__name__} ({case})") from None


@exercise("agp_sparsity", "05", "cubic AGP: s_f + (s_i - s_f)·(1 - t/T)³, held at s_f after T",
          schedules.cubic_sparsity, (schedules.cubic_sparsity,),
          hints=("agp_sparsity(step, T, final, initial=0.0) -> float",
                 "clip t/T to [0, 1]; T = 0 means the final sparsity at once, at every step (before 0 too)"))
def _check_agp(fn):
    """Two schedules step by step (start, T/2, end, held after T), steps before the start, T = 0
    (at steps 0, 5 and -2: s_f, which comes before the rule for t < 0), then the course's AGP events."""
    for T, final, initial in [(10, 0.9, 0.0), (7, 0.95, 0.2)]:
        case = f"T = {T}, final {final}, initial {initial}"
        got = {t: _sparsity(fn, t, T, final, initial, case) for t in (0, T / 2, T, T + 3, 2 * T) + tuple(range(T))}
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
    for t, T, final, initial in [(-3, 10, 0.9, 0.1), (-1, 7, 0.95, 0.0)]:
        case = f"T = {T}, final {final}, initial {initial}"
        out = _sparsity(fn, t, T, final, initial, case)
        if not math.isclose(out, initial, abs_tol=1e-6):
            raise Hint(f"before the start (step {t}) the sparsity stays at the initial {initial}: clip t/T to [0, 1] "
                       f"from below too, got {out:.4g} ({case})")
    for t, final, initial in [(0, 0.9, 0.0), (5, 0.8, 0.3), (-2, 0.9, 0.1)]:
        case = f"T = 0, final {final}, initial {initial}"
        out = _sparsity(fn, t, 0, final, initial, case, note="T = 0 means the final sparsity at once: don't divide by T")
        if not math.isclose(out, final, abs_tol=1e-6):
            before = (" — a schedule of length 0 has no 'before the start': T = 0 comes first, then the rule for "
                      "t < 0" if t < 0 and math.isclose(out, initial, abs_tol=1e-6) else "")
            raise Hint(f"T = 0 means the final sparsity {final} at once (at every step, negative ones too), got "
                       f"{out:.4g} at step {t}{before} ({case})")
    schedule = schedules.PruningSchedule("agp", 0.95, epochs=6, prune_steps=5, prune_epochs=3)
    for step, s in schedule.events(steps_per_epoch=10):
        out = _sparsity(fn, step / 10, 3, 0.95, 0.0, "the course's AGP events")
        if not math.isclose(out, s, abs_tol=1e-6):
            raise Hint(f"at epoch {step / 10:g} of the course's 5-step AGP to 95% expected {s:.4g}, got {out:.4g}")
    return "starts at s_i (and before), is cubic, reaches s_f at T and stays there, T = 0 at once (at every " \
           "step); matches the course's AGP events"


def global_magnitude_reference(weights: dict[str, Tensor], sparsity: float) -> dict[str, Tensor]:
    flat = torch.cat([w.abs().flatten() for w in weights.values()])
    k = int(sparsity * flat.numel())                      # zeros over all layers together
    keep = torch.ones_like(flat, dtype=torch.bool)
    keep[torch.sort(flat, stable=True).indices[:k]] = False
    sizes = [w.numel() for w in weights.values()]
    return {name: part.reshape(w.shape) for (name, w), part in zip(weights.items(), keep.split(sizes))}


def _where(weights: dict[str, Tensor], flat_index: int) -> str:
    """``name[i, j, …]`` of entry ``flat_index`` of the layers' weights flattened and concatenated in order."""
    for name, w in weights.items():
        if flat_index < w.numel():
            return f"{name}[{', '.join(str(int(i)) for i in torch.unravel_index(torch.tensor(flat_index), w.shape))}]"
        flat_index -= w.numel()
    raise IndexError(flat_index)


@exercise("global_magnitude_masks", "05", "masks removing the floor(s·total) smallest |w| ranked over ALL layers",
          global_magnitude_reference, (unstructured.global_masks,),
          hints=("weights: {name: tensor}; return {name: bool mask of that shape} (True = keep)",
                 "one ranking over all layers: each layer ends up with its own sparsity"))
def _check_global_masks(fn):
    """Small cases (s·total = 33.6, |w| tied at the cut across layers with an all-zero conv layer,
    s = 0) and three real layers: floor(s·total) removed, the smallest |w| over all layers, ties in
    the order of the layers, then position."""
    model, source = course_model()
    small = {"a": _rand(4, 5, seed=14), "b": _rand(3, 6, seed=15) * 0.1, "c": _rand(10, seed=16) * 3}
    tied = {"a": torch.tensor([[0.5, -0.5, 0.1], [0.2, 0.0, 0.0]]), "b": torch.tensor([0.5, 0.0, -0.2, -0.1]),
            "c": torch.zeros(1, 2, 1, 2)}
    real = {name: _weight(name) for name in ("features.block2.conv", "features.block3.conv", "classifier.fc2")}
    for weights, s, case in [(small, 0.5, "3 layers of different scales, s = 0.5"),
                             (small, 0.7, "3 layers, 48 weights, s = 0.7 (s·total = 33.6)"),
                             (tied, 0.4, "|w| tied at the cut (zeros, an all-zero conv layer), s = 0.4"),
                             (small, 0.0, "3 layers, s = 0"),
                             (real, 0.9, f"block2/block3 conv and fc2 of {source}, s = 0.9")]:
        out = _call(fn, weights, s, case=case)
        if not isinstance(out, dict) or set(out) != set(weights):
            raise Hint(f"return a dict with one mask per layer name {sorted(weights)}, got "
                       f"{sorted(out) if isinstance(out, dict) else type(out).__name__} ({case})")
        masks_ = {n: _mask(out[n], w.shape, f"the mask of {n!r}") for n, w in weights.items()}
        flat = torch.cat([w.abs().flatten() for w in weights.values()])[None]
        got = torch.cat([m.flatten() for m in masks_.values()])[None]
        total, k = flat.shape[1], int(s * flat.shape[1])
        problem = masks.count_problem(got, flat, total - k)
        if problem:
            why = f" — you removed round(s·total); remove floor(s·total) = int({s}·{total})" \
                if round(s * total) != k and total - problem[1] == round(s * total) else problem[2]
            raise Hint(f"{total - problem[1]} weights removed; floor(s·total) = {k} of all {total} must be"
                       f"{why} ({case})")
        if masks.order_problem(got, flat):
            if all(torch.equal(masks_[n], unstructured.layer_mask(w.abs(), s)) for n, w in weights.items()):
                raise Hint(f"every layer has sparsity {s}: that is a per-layer ranking; rank |w| of all layers "
                           f"together, so layers with small weights lose more ({case})")
            removed_max, kept_min = float(flat[~got].max()), float(flat[got].min())
            raise Hint(f"a weight with |w| = {removed_max:.4g} was removed while one with |w| = {kept_min:.4g} "
                       f"was kept: rank by |w| over all layers ({case})")
        ref = torch.cat([m.flatten() for m in global_magnitude_reference(weights, s).values()])[None]
        tie = masks.tie_problem(got, ref)
        if tie:
            _, i, j = tie
            raise Hint(masks.tie_text(_where(weights, i), _where(weights, j), flat[0, i]) +
                       f" — all layers' |w| ranked in one sequence, layer after layer in the dict's order ({case})")
    return f"removes exactly the smallest |w| over all layers (round ≠ floor, ties, s = 0), on small cases and on " \
           f"three layers of {source}"


# --------------------------------------------------------------------------- a decision: per-layer sparsities
SCAN_SPARSITIES = (0.5, 0.8, 0.9, 0.95, 0.98)  # the checker's sensitivity scan (0.0 = dense is added)
DECISION_TARGETS = (0.8, 0.9)                  # model-wide sparsities the answer is graded at
DECISION_MARGIN_PP = 2.0                       # the bar: the reference's validation accuracy minus this
DECISION_IMAGES = 500                          # validation images the checker measures on


def layer_sparsities_reference(sizes: dict, scan: dict, target: float) -> dict:
    chosen = {name: 0.0 for name in sizes}
    need = int(target * sum(sizes.values()))             # weights to remove, all layers together
    while sum(int(chosen[n] * sizes[n]) for n in sizes) < need:
        steps = []  # each layer's next step up its scan: (accuracy lost per weight removed, layer, sparsity)
        for name, s in chosen.items():
            higher = [t for t in scan[name] if t > s]
            if higher:
                t = min(higher)
                steps.append(((scan[name][s] - scan[name][t]) / ((t - s) * sizes[name]), name, t))
        if not steps:
            raise ValueError(f"the scan's sparsities cannot reach {target}")
        _, name, chosen[name] = min(steps)               # the cheapest step first
    return chosen


@functools.lru_cache(maxsize=1)
def _decision_setup():
    """(model, source, sizes, scan, score): the course model, its layers' weight counts, its sensitivity
    scan, and ``score(model)`` = validation accuracy on the first ``DECISION_IMAGES`` images (computed once)."""
    model, source = course_model()
    try:
        images, labels = load_splits(quick=True).val.head(DECISION_IMAGES).as_float()
    except FileNotFoundError as err:
        raise Hint(f"this exercise is graded on Fashion-MNIST's validation split, which could not be loaded: {err}")
    first, hidden = model.features.block1.conv.weight.detach().clone(), block1_output(model, images)

    def score(pruned) -> float:  # the first conv unchanged: start from its cached output (same result)
        if torch.equal(pruned.features.block1.conv.weight, first):
            return val_accuracy_from_block1(pruned, hidden, labels)
        return val_accuracy(pruned, images, labels)

    sizes = {name: layer.weight.numel() for name, layer in unstructured.select_layers(model, "all").items()}
    return model, source, sizes, sweeps.sensitivity_scan(model, SCAN_SPARSITIES, score), score


def decision_inputs() -> tuple[dict, dict]:
    """``(sizes, scan)`` the ``layer_sparsities`` checker hands the learner's function: the weight count of
    every prunable layer of the course model, and its sensitivity scan on the first ``DECISION_IMAGES``
    validation images (``{layer: {sparsity: accuracy %}}``, each layer pruned alone by magnitude)."""
    _, _, sizes, scan, _ = _decision_setup()
    return dict(sizes), {name: dict(row) for name, row in scan.items()}


def _choice(out, sizes: dict, case: str) -> dict:
    """The learner's answer as {layer: float sparsity}; a Hint on a missing layer or a value outside [0, 1)."""
    if not isinstance(out, dict):
        raise Hint(f"return a dict {{layer name: sparsity}}, got {type(out).__name__} ({case})")
    missing, unknown = [n for n in sizes if n not in out], [n for n in out if n not in sizes]
    if missing or unknown:
        raise Hint(f"return a sparsity for EVERY layer of sizes (0.0 keeps one dense): missing {missing}"
                   + (f", unknown {unknown}" if unknown else "") + f" ({case})")
    chosen = {}
    for name in sizes:
        try:
            chosen[name] = float(out[name])
        except (TypeError, ValueError):
            raise Hint(f"the sparsity of {name} must be a number, got {type(out[name]).__name__} ({case})") from None
        if not 0.0 <= chosen[name] < 1.0:
            raise Hint(f"the sparsity of {name} must lie in [0, 1) (a fraction: 0.9 removes 90% of the layer), "
                       f"got {chosen[name]:g} ({case})")
    return chosen


def _accuracy_hint(chosen: dict, sizes: dict, scan: dict, got: float, ref: float, case: str) -> str:
    """Why an answer falls below the bar: the uniform choice, or the layer its scan says costs most."""
    bar, total = ref - DECISION_MARGIN_PP, sum(sizes.values())
    head = (f"your choice keeps {got:.1f}% validation accuracy; the bar is {bar:.1f}% (the reference's "
            f"{ref:.1f}% − {DECISION_MARGIN_PP:g} pp) ({case})")
    if len(set(chosen.values())) == 1:
        return (f"{head} — every layer at the same sparsity is the uniform choice: layers differ in how much "
                "they can lose; read the scan and take more from those that hardly notice")
    nearest = {n: min(scan[n], key=lambda t: abs(t - chosen[n])) for n in sizes}
    worst = min((n for n in sizes if chosen[n] > 0), key=lambda n: scan[n][nearest[n]])
    alone, largest = scan[worst][nearest[worst]], max(sizes, key=sizes.get)
    if alone < bar:
        return (f"{head} — by the scan, {worst} pruned alone to {nearest[worst]:g} already falls to {alone:.1f}%; "
                "keep the layers whose scan falls early denser and take more from those that hardly notice "
                f"({largest} holds {sizes[largest] / total:.0%} of the weights)")
    return (f"{head} — no layer alone falls below the bar at your sparsities (the lowest, {worst} near "
            f"{nearest[worst]:g}, keeps {alone:.1f}%), but together the cuts add up: take less from the layers "
            "near the steep end of their scan, and more from those whose scan stays flat")


@exercise("layer_sparsities", "05", "a decision: per-layer sparsities reaching a model-wide target with the least "
          "loss of validation accuracy", layer_sparsities_reference,
          (sweeps.sensitivity_scan, sweeps.removed_weights, unstructured.prune_per_layer),
          hints=("layer_sparsities(sizes, scan, target) -> {layer: sparsity in [0, 1)}",
                 "layer l loses floor(s_l · n_l) weights; together at least floor(target · N)",
                 f"graded: validation accuracy within {DECISION_MARGIN_PP:g} points of the reference's greedy choice"))
def _check_layer_sparsities(fn):
    """At 80% and 90% of all weights: every layer given a sparsity in [0, 1), at least floor(target·N)
    weights removed (a layer loses floor(s·n)), and the validation accuracy of the course model pruned so
    (magnitude per layer, no fine-tuning) within ``DECISION_MARGIN_PP`` of the reference's greedy choice."""
    model, source, sizes, scan, score = _decision_setup()
    total, lines = sum(sizes.values()), []
    for target in DECISION_TARGETS:
        case = f"target {target} of the {total:,} weights of {source}"
        chosen = _choice(_call(fn, sizes, scan, target, case=case), sizes, case)
        need, removed = int(target * total), sweeps.removed_weights(sizes, chosen)
        if removed < need:
            counted = sum(chosen[n] * sizes[n] for n in sizes) >= target * total - 1e-6
            raise Hint(f"your sparsities remove {removed:,} weights; the target needs floor({target}·{total:,}) = "
                       f"{need:,} ({need - removed:,} short)"
                       + (" — you counted s·n, but a layer loses floor(s·n) weights" if counted else "")
                       + f" ({case})")
        got = score(unstructured.prune_per_layer(model, chosen)[0])
        ref = score(unstructured.prune_per_layer(model, layer_sparsities_reference(sizes, scan, target))[0])
        if got < ref - DECISION_MARGIN_PP:
            raise Hint(_accuracy_hint(chosen, sizes, scan, got, ref, case))
        lines.append(f"{got:.1f}% at {removed / total:.1%} (reference {ref:.1f}%)")
    return (f"reaches {' and '.join(f'{t:.0%}' for t in DECISION_TARGETS)} sparsity keeping " + "; ".join(lines)
            + f" on {DECISION_IMAGES} validation images, {source}, magnitude per layer, no fine-tuning")
