"""helpers.live.wanda: a live point equals prune_model + accuracy on the same subset; one figure."""
import inspect

import matplotlib

matplotlib.use("Agg")
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from helpers.data import calibration_batch  # noqa: E402
from helpers.paths import REPO_ROOT  # noqa: E402
from helpers.live import check_controls, val_accuracy  # noqa: E402
from helpers.live import wanda  # noqa: E402
from helpers.pruning.unstructured import prune_model, recalibrate_batchnorm, select_layers  # noqa: E402


@pytest.fixture(scope="module")
def model(small_trained_model):
    return small_trained_model


@pytest.fixture(scope="module")
def state(wanda_state):
    return wanda_state


def direct(model, splits, state, **spec):
    calibration = calibration_batch(splits.train, 64, seed=0)
    pruned, masks = prune_model(model, calibration=calibration, sequential=False, **spec)
    return val_accuracy(pruned, state.images, state.labels), pruned, masks


@pytest.mark.parametrize("method, group", [("wanda", "row"), ("magnitude", "row"), ("lamp", "global")])
def test_unstructured_point_equals_prune_model_on_the_same_subset(model, quick_splits, state, method, group):
    result = wanda.point(state, sparsity=0.8, method=method, batchnorm="as trained")
    accuracy, pruned, masks = direct(model, quick_splits, state, method=method, sparsity=0.8, group=group,
                                     layers="inner")
    assert result["val_accuracy"] == accuracy
    assert torch.equal(result["mask"], masks[wanda.MASK_LAYER].cpu())
    assert result["sparsity"] == pytest.approx(0.8, abs=0.01)
    assert result["dense_val_accuracy"] == val_accuracy(model, state.images, state.labels)


@pytest.mark.parametrize("pattern, nm", [("2:4", (2, 4)), ("4:8", (4, 8))])
def test_nm_point_equals_prune_model_and_ignores_the_sparsity_slider(model, quick_splits, state, pattern, nm):
    layers = list(select_layers(model, "all"))[1:]
    accuracy, _, masks = direct(model, quick_splits, state, method="wanda", nm=nm, layers=layers)
    for s in (0.1, 0.9):
        result = wanda.point(state, sparsity=s, method="wanda", pattern=pattern, batchnorm="as trained")
        assert result["val_accuracy"] == accuracy and torch.equal(result["mask"], masks[wanda.MASK_LAYER])
        assert result["target_sparsity"] is None and result["mask_sparsity"] == 0.5


def test_a_point_leaves_the_model_alone_and_bad_values_are_clear_errors(model, state):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    wanda.point(state, sparsity=0.95, method="lamp")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="method"):
        wanda.point(state, method="random")
    with pytest.raises(ValueError, match="pattern"):
        wanda.point(state, pattern="1:3")
    with pytest.raises(ValueError, match="sparsity"):
        wanda.point(state, sparsity=1.0)
    with pytest.raises(ValueError, match="batchnorm"):
        wanda.point(state, batchnorm="frozen")


@pytest.mark.parametrize("method, group", [("wanda", "row"), ("lamp", "global")])
def test_re_estimated_batchnorm_equals_prune_model_with_recalibration(model, quick_splits, state, method, group):
    result = wanda.point(state, sparsity=0.8, method=method)  # the default: BN re-estimated
    accuracy, _, masks = direct(model, quick_splits, state, method=method, sparsity=0.8, group=group,
                                layers="inner", recalibrate_bn=True)
    assert result["batchnorm"] == "re-estimated" and result["val_accuracy"] == accuracy
    assert torch.equal(result["mask"], masks[wanda.MASK_LAYER].cpu())
    stale = wanda.point(state, sparsity=0.8, method=method, batchnorm="as trained")
    assert torch.equal(stale["mask"], result["mask"]) and stale["val_accuracy"] != result["val_accuracy"]


def test_draw_returns_one_figure_and_redraws_into_it(state):
    reference = wanda.reference(REPO_ROOT / "results")
    result = wanda.point(state, sparsity=0.5, method="magnitude")
    fig = wanda.draw(result, reference)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert wanda.draw(wanda.point(state, pattern="2:4"), reference, fig=fig) is fig and len(fig.axes) == 2
    assert isinstance(wanda.draw(result, wanda.reference(REPO_ROOT / "no-such-folder")), Figure)


def test_reference_holds_the_runs_curves(tmp_path):
    reference = wanda.reference(REPO_ROOT / "results")
    if reference.empty:
        pytest.skip("results/03_wanda.json is not committed")
    for method in ("wanda", "magnitude", "lamp"):
        curve = reference[reference["variant"] == wanda.VARIANT_OF[method]]
        assert set(curve["fine_tune_epochs"]) == {0, 1} and curve["test_accuracy"].between(0, 100).all()
    assert wanda.reference(tmp_path).empty


def test_controls_follow_the_contract():
    check_controls(wanda.CONTROLS)
    assert set(wanda.CONTROLS) == set(inspect.signature(wanda.point).parameters) - {"state"}
    assert wanda.CONTROLS["sparsity"]["max"] == 0.99


def _learners_wanda(weight, norms):  # a learner's function: defined here, not in helpers
    return weight.abs() * norms.reshape(1, *weight.shape[1:])


def test_the_learners_functions_drive_the_view_and_give_the_courses_result(model, quick_splits, state):
    from helpers.pruning.unstructured import Implementation

    theirs = wanda.prepare(model, quick_splits, calibration_images=64, val_images=300,
                           impl=Implementation(wanda_scores=_learners_wanda))
    for pattern in ("unstructured", "2:4"):
        ours, mine = wanda.point(state, 0.8, "wanda", pattern), wanda.point(theirs, 0.8, "wanda", pattern)
        assert torch.equal(ours["mask"], mine["mask"]) and ours["val_accuracy"] == mine["val_accuracy"]
    wrong = wanda.prepare(model, quick_splits, calibration_images=64, val_images=300,
                          impl=Implementation(wanda_scores=lambda w, n: w.abs()))  # |W| alone: magnitude's mask
    assert torch.equal(wanda.point(wrong, 0.8, "wanda")["mask"], wanda.point(state, 0.8, "magnitude")["mask"])


def test_sequential_calibration_equals_prune_model_layer_by_layer(model, quick_splits):
    sequential = wanda.prepare(model, quick_splits, calibration_images=64, val_images=300, sequential=True)
    result = wanda.point(sequential, sparsity=0.7, method="wanda")
    calibration = calibration_batch(quick_splits.train, 64, seed=0)
    pruned, masks = prune_model(model, "wanda", 0.7, layers="inner", calibration=calibration, sequential=True)
    assert torch.equal(result["mask"], masks[wanda.MASK_LAYER].cpu())
    recalibrate_batchnorm(pruned, calibration)  # the view's default
    assert result["val_accuracy"] == val_accuracy(pruned, sequential.images, sequential.labels)
    assert result["wanda_order"] == "sequential"
    assert wanda.point(sequential, sparsity=0.7, method="magnitude")["wanda_order"] == "n/a"
