"""Pruning schedules: formula endpoints and monotonicity, discrete events, a scheduled training run
that ends at the target with masks fixed, and clear errors for impossible schedules."""
import math

import pytest
import torch

from helpers.data import Batches
from helpers.counting import sparsity
from helpers.pruning.schedules import (PruningSchedule, cubic_sparsity, linear_sparsity,
                                       magnitude_mask_maker, train_with_schedule)


@pytest.mark.parametrize("initial, final", [(0.0, 0.95), (0.2, 0.9), (0.5, 0.5)])
def test_cubic_schedule_endpoints_midpoint_and_monotone(initial, final):
    T = 10.0
    assert cubic_sparsity(0, T, final, initial) == pytest.approx(initial)
    assert cubic_sparsity(T, T, final, initial) == pytest.approx(final)
    assert cubic_sparsity(2 * T, T, final, initial) == pytest.approx(final)  # held after T
    assert cubic_sparsity(T / 2, T, final, initial) == pytest.approx(final - (final - initial) / 8)
    values = [cubic_sparsity(t, T, final, initial) for t in torch.linspace(0, T, 101).tolist()]
    assert all(b >= a for a, b in zip(values, values[1:]))
    steps = [b - a for a, b in zip(values, values[1:])]
    assert all(b <= a + 1e-12 for a, b in zip(steps, steps[1:]))  # prunes fast first, then slower


def test_linear_schedule_endpoints_and_monotone():
    assert linear_sparsity(0, 4, 0.8) == 0.0
    assert linear_sparsity(2, 4, 0.8) == pytest.approx(0.4)
    assert linear_sparsity(4, 4, 0.8) == pytest.approx(0.8)
    values = [linear_sparsity(t, 4, 0.8) for t in range(6)]
    assert values == sorted(values)


def test_events_of_each_kind():
    assert PruningSchedule("oneshot", 0.9, epochs=3).events(100) == [(0, 0.9)]
    agp = PruningSchedule("agp", 0.95, epochs=4, prune_steps=8, prune_epochs=2).events(50)
    steps, values = zip(*agp)
    assert all(b > a for a, b in zip(steps, steps[1:]))
    assert steps[0] == 0 and steps[-1] == 100 and len(agp) == 9
    assert values[0] == 0.0 and values[-1] == pytest.approx(0.95)
    assert list(values) == sorted(values)
    linear = PruningSchedule("linear", 0.8, epochs=2, prune_steps=4).events(10)  # default span: 1 epoch
    assert [s for s, _ in linear] == [0, 2, 5, 8, 10]
    assert [v for _, v in linear] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8])


@pytest.mark.parametrize("kwargs, match", [
    (dict(kind="agp", target=1.0, epochs=2), r"\[0, 1\)"),
    (dict(kind="agp", target=-0.1, epochs=2), r"\[0, 1\)"),
    (dict(kind="linear", target=0.9, epochs=2, prune_epochs=3), "within"),
    (dict(kind="agp", target=0.9, epochs=0), "epochs"),
    (dict(kind="cosine", target=0.9, epochs=2), "kind"),
    (dict(kind="oneshot", target=0.9, epochs=2, prune_steps=3), "once"),
    (dict(kind="agp", target=0.5, epochs=2, initial=0.6), "exceeds"),
    (dict(kind="agp", target=0.5, epochs=2, prune_steps=0), "prune_steps"),
])
def test_impossible_schedules_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PruningSchedule(**kwargs)


def test_more_pruning_steps_than_optimizer_steps_is_rejected():
    schedule = PruningSchedule("agp", 0.9, epochs=2, prune_steps=50, prune_epochs=1)
    with pytest.raises(ValueError, match="do not fit"):
        schedule.events(steps_per_epoch=10)


@pytest.mark.parametrize("kind", ["oneshot", "linear", "agp"])
def test_scheduled_training_reaches_the_target_with_masks_fixed(random_model, quick_splits, kind):
    train = Batches(quick_splits.train.head(320), 32, shuffle=True)  # 10 steps per epoch
    steps = 1 if kind == "oneshot" else 4
    schedule = PruningSchedule(kind, 0.9, epochs=2, prune_steps=steps, prune_epochs=None)
    before = random_model.classifier.fc1.weight.detach().clone()
    run = train_with_schedule(random_model, schedule, train, lr=1e-3, device="cpu",
                              make_masks=magnitude_mask_maker("all", "global"))
    assert torch.equal(random_model.classifier.fc1.weight, before)  # the input model is left alone
    total = sum(m.numel() for m in run.masks.values())
    assert sparsity(run.model) == pytest.approx(math.floor(0.9 * total) / total, abs=1e-6)
    for name, mask in run.masks.items():
        assert (dict(run.model.named_modules())[name].weight[~mask] == 0).all()
    epochs, values = zip(*run.trajectory)
    assert list(values) == sorted(values) and len(values) == steps + (0 if kind == "oneshot" else 1)
    assert values[-1] == pytest.approx(0.9, abs=1e-5)
    assert len(run.history["train_loss"]) == 2


def test_model_wide_global_masks_keep_dense_layers_and_hit_the_model_sparsity(random_model):
    from helpers.pruning.unstructured import apply_masks

    masks = magnitude_mask_maker("inner", "global", model_wide=True)(random_model, 0.95)
    assert "features.block1.conv" not in masks and "classifier.fc3" not in masks
    pruned = apply_masks(random_model, masks)
    assert sparsity(pruned) == pytest.approx(0.95, abs=1e-6)
    with pytest.raises(ValueError, match="may be pruned"):
        magnitude_mask_maker(["classifier.fc3"], "global")(random_model, 0.5)


def test_an_agp_schedule_runs_on_the_curve_it_is_given():
    def halfway(t, T, final, initial=0.0):  # a learner's curve: jumps to the target half way
        return final if t >= T / 2 else initial

    given = PruningSchedule("agp", 0.8, epochs=2, prune_steps=4, prune_epochs=2, agp=halfway)
    assert [s for _, s in given.events(10)] == [0.0, 0.0, 0.8, 0.8, 0.8]
    assert given == PruningSchedule("agp", 0.8, epochs=2, prune_steps=4, prune_epochs=2)  # the curve is no field
    assert PruningSchedule("linear", 0.8, epochs=2, prune_steps=4, agp=halfway).sparsity_at(0.5) == pytest.approx(0.4)
    assert isinstance(PruningSchedule("agp", 0.8, epochs=2, agp=lambda *a: 1).sparsity_at(1), float)
