"""Pruning schedules at a fixed training budget: one-shot, step-by-step (linear) and cubic AGP.

A schedule says which sparsity the model should have at each moment of a training run of
``epochs`` epochs. Pruning happens at discrete *events*: one-shot prunes once, before training,
to the target; the gradual schedules prune ``prune_steps`` times, evenly spread over the first
``prune_epochs`` epochs, to

* linear (step by step): ``s_t = s_i + (s_f - s_i) * t / T``
* AGP (Zhu & Gupta 2017): ``s_t = s_f + (s_i - s_f) * (1 - t / T)^3``

and then keep training with the masks fixed. Between events the masks are re-applied after every
optimizer step (``fit``'s ``after_step``), so pruned weights stay exactly zero. Every schedule of one
comparison gets the same ``epochs``: the fair budget.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from ..counting import prunable_weight_count, sparsity as model_sparsity
from .unstructured import (DATA_FREE, apply_masks, check_method, check_sparsity, compute_scores,
                           masks_from_scores, select_layers)

SCHEDULES = ("oneshot", "linear", "agp")


def linear_sparsity(t: float, T: float, final: float, initial: float = 0.0) -> float:
    """``s_i + (s_f - s_i) * t / T``, held at ``s_f`` after ``T`` (``T = 0``: ``s_f`` at once)."""
    frac = 1.0 if T <= 0 else min(max(t / T, 0.0), 1.0)
    return initial + (final - initial) * frac


def cubic_sparsity(t: float, T: float, final: float, initial: float = 0.0) -> float:
    """AGP: ``s_f + (s_i - s_f) * (1 - t / T)^3``, held at ``s_f`` after ``T``."""
    frac = 1.0 if T <= 0 else min(max(t / T, 0.0), 1.0)
    return final + (initial - final) * (1.0 - frac) ** 3


@dataclass(frozen=True)
class PruningSchedule:
    """When to prune how much, within a training run of ``epochs`` epochs.

    ``kind``: ``"oneshot"`` (prune to ``target`` before training, then fine-tune), ``"linear"`` or
    ``"agp"`` (``prune_steps`` events evenly over the first ``prune_epochs`` epochs, then fine-tune).
    ``agp``: the AGP curve ``(t, T, final, initial) -> sparsity`` (default ``cubic_sparsity``; a learner's
    ``agp_sparsity`` once it passed its check).
    """

    kind: str
    target: float
    epochs: int
    prune_steps: int = 1
    prune_epochs: float | None = None  # default: half of the epochs (gradual), 0 (one-shot)
    initial: float = 0.0
    agp: Callable[[float, float, float, float], float] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if self.kind not in SCHEDULES:
            raise ValueError(f"kind must be one of {SCHEDULES}, got {self.kind!r}")
        check_sparsity(self.target)
        check_sparsity(self.initial)
        if self.initial > self.target:
            raise ValueError(f"initial sparsity {self.initial} exceeds the target {self.target}")
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {self.epochs!r}")
        if not isinstance(self.prune_steps, int) or self.prune_steps < 1:
            raise ValueError(f"prune_steps must be a positive integer, got {self.prune_steps!r}")
        if self.kind == "oneshot" and self.prune_steps != 1:
            raise ValueError("a one-shot schedule prunes once: prune_steps must be 1")
        default = 0.0 if self.kind == "oneshot" else self.epochs / 2
        span = default if self.prune_epochs is None else float(self.prune_epochs)
        if not 0 <= span <= self.epochs:  # NaN fails too
            raise ValueError(f"the pruning phase ({span} epochs) must lie within the {self.epochs} "
                             "training epochs")
        if self.kind != "oneshot" and span == 0:
            raise ValueError("a gradual schedule needs prune_epochs > 0")
        object.__setattr__(self, "prune_epochs", span)

    def sparsity_at(self, epoch: float) -> float:
        """The schedule's sparsity at time ``epoch`` (continuous curve)."""
        if self.kind == "oneshot":
            return self.target
        curve = linear_sparsity if self.kind == "linear" else self.agp or cubic_sparsity
        return float(curve(epoch, self.prune_epochs, self.target, self.initial))

    def events(self, steps_per_epoch: int) -> list[tuple[int, float]]:
        """``(optimizer step, sparsity)`` of every pruning event; step 0 is before training."""
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be at least 1, got {steps_per_epoch}")
        if self.kind == "oneshot":
            return [(0, self.target)]
        span_steps = round(self.prune_epochs * steps_per_epoch)
        if self.prune_steps > span_steps:
            raise ValueError(f"{self.prune_steps} pruning steps do not fit into {span_steps} optimizer "
                             f"steps ({self.prune_epochs} epochs of {steps_per_epoch} steps)")
        return [(round(k * span_steps / self.prune_steps),
                 self.sparsity_at(k * self.prune_epochs / self.prune_steps))
                for k in range(self.prune_steps + 1)]


MaskMaker = Callable[[nn.Module, float], dict]


def mask_maker(method: str = "magnitude", layers="all", group: str = "global",
               model_wide: bool = True) -> MaskMaker:
    """``make(model, s)`` -> masks at sparsity ``s`` from data-free scores (``"magnitude"`` or
    ``"lamp"``); pruned weights score 0, so the masks of a growing schedule nest.

    With ``group="global"`` and ``model_wide``, ``s`` is the sparsity of all prunable layers of the
    model, also when some of them (``layers="inner"``) are kept dense.
    """
    check_method(method, DATA_FREE, " (schedules use data-free scores)")

    def make(model: nn.Module, s: float) -> dict:
        chosen = select_layers(model, layers)
        total = prunable_weight_count(model) if model_wide and group == "global" else None
        return masks_from_scores(compute_scores(model, chosen, method), s, group, total=total)
    return make


def magnitude_mask_maker(layers="all", group: str = "global", model_wide: bool = True) -> MaskMaker:
    """``mask_maker("magnitude", ...)``."""
    return mask_maker("magnitude", layers, group, model_wide)


class SchedulePruner:
    """``after_step`` callback: prunes at the schedule's events and re-applies masks after every step.

    Records the trajectory ``[(epoch, measured sparsity of the model)]`` at every event.
    """

    def __init__(self, schedule: PruningSchedule, steps_per_epoch: int, make_masks: MaskMaker):
        self.schedule, self.steps_per_epoch, self.make_masks = schedule, steps_per_epoch, make_masks
        self.events = dict(schedule.events(steps_per_epoch))
        self.step, self.masks, self.trajectory = 0, {}, []

    @torch.no_grad()
    def _prune(self, model: nn.Module, s: float) -> None:
        new = self.make_masks(model, s)
        self.masks = {name: mask & self.masks[name] if name in self.masks else mask
                      for name, mask in new.items()}
        apply_masks(model, self.masks)
        self.trajectory.append((self.step / self.steps_per_epoch, model_sparsity(model)))

    def start(self, model: nn.Module) -> None:
        """Apply the event at step 0 (before the first optimizer step)."""
        if 0 in self.events:
            self._prune(model, self.events[0])

    def __call__(self, model: nn.Module) -> None:
        self.step += 1
        if self.step in self.events:
            self._prune(model, self.events[self.step])
        elif self.masks:
            apply_masks(model, self.masks)


@dataclass
class ScheduleRun:
    """What a scheduled training run returns: the pruned model, its masks, trajectory and history."""

    model: nn.Module
    masks: dict
    trajectory: list = field(default_factory=list)
    history: dict = field(default_factory=dict)


def train_with_schedule(model: nn.Module, schedule: PruningSchedule, train_batches, *, lr: float = 1e-3,
                        make_masks: MaskMaker | None = None, val_batches=None, copy_model: bool = True,
                        fit_fn: Callable | None = None, **fit_kwargs) -> ScheduleRun:
    """Train ``schedule.epochs`` epochs with ``fit`` while pruning on schedule.

    ``make_masks(model, s)`` gives the masks at sparsity ``s`` (default: global magnitude over all
    prunable layers). The input model is copied unless ``copy_model=False``.
    """
    from ..training import fit

    model = copy.deepcopy(model) if copy_model else model
    pruner = SchedulePruner(schedule, len(train_batches), make_masks or magnitude_mask_maker())
    pruner.start(model)
    history = (fit_fn or fit)(model, train_batches, val_batches, epochs=schedule.epochs, lr=lr,
                              after_step=pruner, desc=fit_kwargs.pop("desc", schedule.kind), **fit_kwargs)
    return ScheduleRun(model.eval(), pruner.masks, pruner.trajectory,
                       history.as_dict() if hasattr(history, "as_dict") else history)
