"""Why the checkers matter: a subtly wrong answer that looks almost right, had it passed its check,
would change the result it drives downstream — the live views' masks, sparsity trajectory and
accuracy, and the notebooks' measured points. Each test shows the checker refusing the answer and
what it would have changed."""
import math

import pytest
import torch
from torch.nn import functional as F

from helpers import exercises as ex
from helpers.live import schedules as live_schedules, val_accuracy
from helpers.live import wanda as live_wanda
from helpers.pruning import unstructured
from helpers.pruning.unstructured import Implementation
from live_view_checks import small_model


def _refused(name, fn, capsys) -> str:
    assert ex.check(name, fn) is False
    out = capsys.readouterr().out
    assert out.startswith(f"✘ {name}: ")
    return out


def wanda_with_squared_norms(weight, input_norms):  # |W|·Σx²/N: the norm without its square root
    return (weight.reshape(len(weight), -1).abs() * input_norms.pow(2)).reshape(weight.shape)


def im2col_without_sqrt(x, kernel_size, padding):  # the mean of squares, not its square root
    return F.unfold(x, kernel_size, padding=padding).pow(2).sum(dim=(0, 2)).div(len(x))


def row_mask_rounding(scores, sparsity):  # round(s·fan_in) weights per row instead of floor
    rows = scores.reshape(len(scores), -1)
    mask = torch.ones_like(rows, dtype=torch.bool)
    mask.scatter_(1, rows.argsort(dim=1, stable=True)[:, :round(sparsity * rows.shape[1])], False)
    return mask.reshape(scores.shape)


def agp_linear(step, T, final, initial=0.0):  # the linear schedule instead of the cubic one
    frac = 1.0 if T <= 0 else min(max(step / T, 0.0), 1.0)
    return initial + (final - initial) * frac


@pytest.fixture(scope="module")
def model(small_trained_model):
    return small_trained_model


@pytest.fixture(scope="module")
def course_state(wanda_state):
    return wanda_state


def _point(model, splits, impl, sparsity=0.7):
    state = live_wanda.prepare(model, splits, calibration_images=64, val_images=300, impl=impl)
    return live_wanda.point(state, sparsity=sparsity, method="wanda")


@pytest.mark.parametrize("name, wrong, words", [
    ("wanda_scores", wanda_with_squared_norms, "its square ||X_j||²"),
    ("im2col_input_norms", im2col_without_sqrt, "take the square root"),
])
def test_norms_without_the_square_root_would_change_the_live_masks_and_accuracy(
        model, quick_splits, course_state, name, wrong, words, capsys):
    assert words in _refused(name, wrong, capsys)
    right = live_wanda.point(course_state, sparsity=0.7, method="wanda")
    forced = _point(model, quick_splits, Implementation(**{name: wrong}))
    changed = (forced["mask"] != right["mask"]).float().mean().item()
    assert changed > 0.01, changed  # block2.conv's mask moves: a squared norm reweighs the input channels
    assert forced["val_accuracy"] != right["val_accuracy"]


def test_a_rounding_row_mask_would_remove_more_than_the_slider_says(model, quick_splits, course_state, capsys):
    assert "you removed round(s·fan_in)" in _refused("row_mask", row_mask_rounding, capsys)
    s = 0.7  # block2.conv: fan_in 288, s·fan_in = 201.6: floor removes 201 per row, round 202
    right = live_wanda.point(course_state, sparsity=s, method="magnitude")
    forced = _point(model, quick_splits, Implementation(row_mask=row_mask_rounding), sparsity=s)
    assert right["mask_sparsity"] == pytest.approx(math.floor(s * 288) / 288)
    assert forced["mask_sparsity"] == pytest.approx(round(s * 288) / 288) != right["mask_sparsity"]


def test_a_linear_agp_would_change_the_live_trajectory_and_what_it_measures(quick_splits, capsys):
    assert "linear schedule" in _refused("agp_sparsity", agp_linear, capsys)
    model = small_model()
    right = live_schedules.point(live_schedules.prepare(model, quick_splits, n=300), target=0.95, step=4)
    forced = live_schedules.point(live_schedules.prepare(model, quick_splits, n=300, agp=agp_linear), target=0.95, step=4)
    steps = live_schedules.PRUNE_STEPS
    assert right["scheduled_sparsity"] == pytest.approx(0.95 * (1 - (1 - 4 / steps) ** 3))
    assert forced["scheduled_sparsity"] == pytest.approx(0.95 * 4 / steps)  # far behind the cubic one early on
    assert forced["sparsity"] < right["sparsity"] - 0.3 and forced["agp"] == "yours"
    assert any(abs(a - b) > 0.05 for a, b in zip(forced["trajectory"], right["trajectory"]))


def test_a_per_layer_ranking_would_change_05s_global_one_shot_point(model, quick_splits, capsys):
    def per_layer(weights, sparsity):
        return {name: unstructured.layer_mask(w.abs(), sparsity) for name, w in weights.items()}

    assert "per-layer ranking" in _refused("global_magnitude_masks", per_layer, capsys)
    right, right_masks = unstructured.prune_model(model, "magnitude", 0.8, group="global", layers="inner")
    forced, forced_masks = unstructured.prune_model(model, "magnitude", 0.8, group="global", layers="inner",
                                                    impl=Implementation(global_masks=per_layer))
    share = {name: (~mask).float().mean().item() for name, mask in right_masks.items()}
    assert all(abs((~mask).float().mean().item() - 0.8) < 2e-3 for mask in forced_masks.values())
    assert max(abs(s - 0.8) for s in share.values()) > 0.1, share  # the global ranking spreads them unevenly
    images, labels = quick_splits.val.head(300).as_float()
    assert val_accuracy(forced, images, labels) != val_accuracy(right, images, labels)
