"""Live view of 04: Network Slimming at any channel share equals slim() on the same subset."""
import pytest

from helpers.data import Batches
from helpers.live import slimming
from helpers.counting import count_parameters
from helpers.paths import REPO_ROOT
from helpers.pruning import slimming as sl
from helpers.training import accuracy
from live_view_checks import assert_unchanged, check_controls, check_draw, state_dict_copy

N = 200


@pytest.fixture(scope="module")
def state(quick_splits):
    import torch
    from helpers.models import build_model

    torch.manual_seed(0)
    model = build_model().eval()
    for bn in model.bn_layers():  # spread |γ| as sparsity training would
        bn.weight.data.uniform_(0.0, 1.5)
    return slimming.prepare(model, quick_splits, n=N)


def test_controls_are_well_formed():
    check_controls(slimming)


def test_point_equals_slim_on_the_same_subset(state, quick_splits):
    before = state_dict_copy(state.model)
    result = slimming.point(state, ratio=0.4)
    direct = sl.slim(state.model, 0.4, slimming.MIN_CHANNELS).eval()
    plan = sl.slimming_plan(state.model, 0.4, slimming.MIN_CHANNELS)
    assert result["val_accuracy"] == accuracy(direct, Batches(quick_splits.val.head(N), N))
    assert result["kept_channels"] == list(direct.config.conv_channels) == list(plan.conv_channels)
    assert result["threshold"] == plan.threshold and result["params"] == count_parameters(direct)
    gammas = [g.abs() for g in (bn.weight.detach() for bn in state.model.bn_layers())]
    for (name, removed), g in zip(result["removed_channels"].items(), gammas):
        assert all(g[i] <= result["threshold"] for i in removed), name  # only channels below the threshold go
    assert abs(sum(result["kept_channels"]) - 0.6 * 224) <= 1
    assert_unchanged(state.model, before)


def test_min_channels_floor_and_bad_ratio(state):
    result = slimming.point(state, ratio=0.9)
    assert min(result["kept_channels"]) >= slimming.MIN_CHANNELS
    with pytest.raises(ValueError, match="ratio"):
        slimming.point(state, ratio=1.0)


def test_reference_is_04s_slim_curve(tmp_path):
    ref = slimming.reference(REPO_ROOT / "results")
    assert len(ref) >= 1 and ref["name"].str.match(r"slim_r\d+$").all()
    assert list(ref["ratio"]) == sorted(ref["ratio"]) and "val_accuracy_pruned" in ref
    assert slimming.reference(tmp_path).empty


def test_draw_returns_one_figure(state):
    check_draw(slimming, slimming.point(state, ratio=0.5), slimming.reference(REPO_ROOT / "results"))


def test_the_threshold_function_given_to_prepare_picks_every_moves_channels(quick_splits, state):
    calls = []

    def halved(gammas, ratio):  # a learner's threshold that is half the reference: fewer channels removed
        calls.append(ratio)
        return sl.global_threshold(gammas, ratio) / 2

    mine = slimming.prepare(state.model, quick_splits, n=N, threshold_fn=halved)
    result, reference = slimming.point(mine, ratio=0.5), slimming.point(state, ratio=0.5)
    assert calls and result["threshold"] == pytest.approx(reference["threshold"] / 2)
    assert sum(result["kept_channels"]) > sum(reference["kept_channels"])
