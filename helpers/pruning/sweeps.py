"""Sweeps over sparsities: prune a copy per variant and sparsity and score it (notebooks 03 and
05), the same rows read back from a run's records, and a per-layer sensitivity scan."""
from __future__ import annotations

from typing import Callable, Iterable, Mapping

from torch import nn

from ..counting import sparsity as model_sparsity
from .unstructured import COURSE, Implementation, prune_model, prune_per_layer, select_layers


def sweep(model: nn.Module, sparsities: Iterable[float], variants: Mapping[str, dict],
          score: Callable[[nn.Module], float], calibration=None,
          keep_masks_of: str | None = None,
          on_point: Callable[[nn.Module, dict], None] | None = None,
          impl: Implementation = COURSE) -> list[dict]:
    """Prune a copy of ``model`` for every variant and sparsity (no fine-tuning) and score it.

    ``variants``: label -> keyword arguments of ``prune_model`` (method, group, layers, ...).
    Returns one row per point: variant, its arguments, target and measured sparsity, ``score``,
    and (with ``keep_masks_of``) that layer's mask, e.g. for mask images. ``on_point(pruned, row)``
    is called for every point (e.g. to write a results record). ``impl``: the learner's functions
    the pruning runs through (``Implementation``).
    """
    rows = []
    for label, kwargs in variants.items():
        for s in sparsities:
            pruned, masks = prune_model(model, sparsity=s, calibration=calibration, impl=impl, **kwargs)
            row = {"variant": label, **{k: str(v) for k, v in kwargs.items()}, "target": s,
                   "sparsity": model_sparsity(pruned), "accuracy": score(pruned)}
            if keep_masks_of is not None:
                row["mask"] = masks.get(keep_masks_of)
            if on_point is not None:
                on_point(pruned, row)
            rows.append(row)
    return rows


def rows_from_records(records: Iterable[dict], variants: Iterable[str], kind: str = "no fine-tuning") -> list[dict]:
    """``sweep``-like rows (variant, target, sparsity, accuracy = test accuracy) of ``variants`` from
    results records whose method is ``"<variant>, <kind>"`` (as notebook 03 writes them), in the
    order of ``variants`` and then of the target sparsity."""
    wanted = list(variants)
    rows = [{"variant": r["method"][:-len(f", {kind}")], "target": r["target_sparsity"],
             "sparsity": r["sparsity"], "accuracy": r["test_accuracy"]}
            for r in records if r["method"] in {f"{v}, {kind}" for v in wanted}]
    return sorted(rows, key=lambda row: (wanted.index(row["variant"]), row["target"]))


def sensitivity_scan(model: nn.Module, sparsities: Iterable[float], score: Callable[[nn.Module], float],
                     layers="all") -> dict[str, dict[float, float]]:
    """``{layer: {sparsity: score}}``: each chosen layer pruned ALONE (magnitude, layer-wise, every other
    layer dense) at every sparsity, and scored; sparsity 0.0 (the dense model) is in every row."""
    dense = score(model)
    grid = sorted({float(s) for s in sparsities} - {0.0})
    return {name: {0.0: dense, **{s: score(prune_per_layer(model, {name: s})[0]) for s in grid}}
            for name in select_layers(model, layers)}


def removed_weights(sizes: Mapping[str, int], sparsities: Mapping[str, float]) -> int:
    """How many weights per-layer sparsities remove: ``sum floor(s_l * n_l)`` (as ``layer_mask`` does)."""
    return sum(int(float(sparsities[name]) * n) for name, n in sizes.items())
