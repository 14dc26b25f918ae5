"""Live view of 05: the AGP trajectory and the one-shot mask at step k equal the direct computation."""
import pytest

from helpers.data import Batches
from helpers.live import schedules
from helpers.counting import layer_sparsity, sparsity
from helpers.paths import REPO_ROOT
from helpers.pruning.schedules import cubic_sparsity, mask_maker
from helpers.pruning.unstructured import apply_masks
from helpers.training import accuracy
from live_view_checks import assert_unchanged, check_controls, check_draw, small_model, state_dict_copy

N = 200


@pytest.fixture(scope="module")
def state(quick_splits):
    return schedules.prepare(small_model(), quick_splits, n=N)


def test_controls_are_well_formed():
    check_controls(schedules)
    assert schedules.CONTROLS["step"]["max"] == schedules.PRUNE_STEPS


def test_trajectory_is_the_cubic_agp_formula():
    path = schedules.trajectory(0.9)
    assert len(path) == schedules.PRUNE_STEPS + 1 and path[0] == 0.0 and path[-1] == pytest.approx(0.9)
    assert path == pytest.approx([cubic_sparsity(k, schedules.PRUNE_STEPS, 0.9) for k in range(len(path))])
    assert all(a < b for a, b in zip(path, path[1:]))  # grows, fast first


@pytest.mark.parametrize("score", ["lamp", "magnitude"])
def test_point_equals_05s_mask_maker_on_the_same_subset(state, quick_splits, score):
    import copy

    before = state_dict_copy(state.model)
    result = schedules.point(state, target=0.9, step=4, score=score)
    reached = cubic_sparsity(4, schedules.PRUNE_STEPS, 0.9)
    make = mask_maker(score, layers="inner", group="global", model_wide=True)
    direct = apply_masks(copy.deepcopy(state.model), make(state.model, reached))
    assert result["scheduled_sparsity"] == pytest.approx(reached)
    assert result["val_accuracy"] == accuracy(direct, Batches(quick_splits.val.head(N), N))
    assert result["layer_sparsity"] == layer_sparsity(direct) and result["sparsity"] == sparsity(direct)
    first, *_, last = result["layer_sparsity"].values()
    assert first == 0.0 and last == 0.0  # 05 keeps the first conv and the last layer dense
    assert_unchanged(state.model, before)


def test_step_zero_prunes_nothing_and_bad_controls_fail(state):
    assert schedules.point(state, target=0.95, step=0)["sparsity"] == 0.0
    with pytest.raises(ValueError, match="step"):
        schedules.point(state, target=0.95, step=schedules.PRUNE_STEPS + 1)
    with pytest.raises(ValueError, match="score"):
        schedules.point(state, target=0.95, step=3, score="wanda")


def test_reference_holds_05s_runs(tmp_path):
    ref = schedules.reference(REPO_ROOT / "results")
    assert {"agp", "oneshot", "no fine-tuning"} <= set(ref["kind"])
    assert ref["test_accuracy"].notna().all()
    assert schedules.reference(tmp_path).empty


def test_draw_returns_one_figure(state):
    check_draw(schedules, schedules.point(state, target=0.95, step=6), schedules.reference(REPO_ROOT / "results"))


def _learners_linear(step, T, final, initial=0.0):  # a learner's (wrong) schedule, defined outside helpers
    return initial + (final - initial) * (1.0 if T <= 0 else min(max(step / T, 0.0), 1.0))


def _learners_cubic(step, T, final, initial=0.0):
    return final + (initial - final) * (1 - (1.0 if T <= 0 else min(max(step / T, 0.0), 1.0))) ** 3


def test_the_trajectory_follows_the_learners_agp(quick_splits, state):
    theirs = schedules.prepare(small_model(), quick_splits, n=N, agp=_learners_cubic)
    ours, mine = schedules.point(state, 0.9, 5), schedules.point(theirs, 0.9, 5)
    assert mine["trajectory"] == pytest.approx(ours["trajectory"]) and mine["val_accuracy"] == ours["val_accuracy"]
    assert (ours["agp"], mine["agp"]) == ("the course's", "yours")
    assert schedules.trajectory(0.9, agp=_learners_linear) == pytest.approx(
        [0.9 * k / schedules.PRUNE_STEPS for k in range(schedules.PRUNE_STEPS + 1)])
    curve = dict(schedules.point(schedules.prepare(small_model(), quick_splits, n=N, agp=_learners_linear), 0.9, 5)["curve"])
    assert curve[0.0] == 0.0 and max(curve.values()) == pytest.approx(0.9)
