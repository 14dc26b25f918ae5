"""Live view of 02: per-block L1 filter pruning equals the direct computation on the same subset."""
import pytest
import torch

from helpers.data import Batches
from helpers.live import filters
from helpers.counting import count_macs, count_parameters
from helpers.paths import REPO_ROOT
from helpers.pruning import structured as st
from helpers.training import accuracy
from live_view_checks import assert_unchanged, check_controls, check_draw, small_model, state_dict_copy

N = 200


@pytest.fixture(scope="module")
def state(quick_splits):
    return filters.prepare(small_model(), quick_splits, n=N)


def test_controls_are_well_formed():
    check_controls(filters)
    assert all(c["max"] == 0.9 and c["step"] == 0.05 for c in filters.CONTROLS.values())


def test_point_equals_prune_l1_on_the_same_subset(state, quick_splits):
    before = state_dict_copy(state.model)
    result = filters.point(state, block1=0.5, block2=0.25, block3=0.1)
    direct = st.prune_l1(state.model, [0.5, 0.25, 0.1], filters.CHOSEN_FC_RATIOS).eval()
    assert result["val_accuracy"] == accuracy(direct, Batches(quick_splits.val.head(N), N))
    assert result["params"] == count_parameters(direct) < state.base_params
    assert result["macs"] == count_macs(direct)
    assert result["conv_channels"] == list(direct.config.conv_channels) == [16, 48, 115]
    assert result["fc_features"] == [300, 36]
    lowest = st.conv_filter_l1(state.model)[0].argsort()[:16].sort().values.tolist()
    assert result["removed_filters"]["block1"] == lowest  # the 16 smallest Σ|W| of block 1
    assert_unchanged(state.model, before)


def test_ratio_zero_keeps_every_filter_and_bad_ratios_fail(state):
    result = filters.point(state, block1=0.0, block2=0.0, block3=0.0)
    assert result["conv_channels"] == [32, 64, 128] and not any(result["removed_filters"].values())
    with pytest.raises(ValueError, match="ratio"):
        filters.point(state, block1=1.0, block2=0.0, block3=0.0)


def test_reference_is_02s_fine_tuned_curve(tmp_path):
    ref = filters.reference(REPO_ROOT / "results")
    assert list(ref["name"]) == sorted(ref["name"], reverse=True) and len(ref) >= 1
    assert ref["name"].str.match(r"l1_r\d+$").all() and {"params", "test_accuracy"} <= set(ref)
    assert filters.reference(tmp_path).empty


def test_draw_returns_one_figure(state):
    result = filters.point(state, **{k: c["value"] for k, c in filters.CONTROLS.items()})
    check_draw(filters, result, filters.reference(REPO_ROOT / "results"))


def test_prepare_ranks_with_the_given_scorer(quick_splits):
    model = small_model()
    mine = filters.prepare(model, quick_splits, n=N, scorer=lambda w: w.abs().flatten(1).sum(1))
    default = filters.prepare(model, quick_splits, n=N)
    assert all(torch.allclose(mine.scores[k], default.scores[k]) for k in default.scores)
    assert filters.point(mine, 0.5, 0.25, 0.1)["removed_filters"] == \
        filters.point(default, 0.5, 0.25, 0.1)["removed_filters"]
    opposite = filters.prepare(model, quick_splits, n=N, scorer=lambda w: -w.abs().flatten(1).sum(1))
    assert filters.point(opposite, 0.5, 0.0, 0.0)["removed_filters"]["block1"] != \
        filters.point(default, 0.5, 0.0, 0.0)["removed_filters"]["block1"]
