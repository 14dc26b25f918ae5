"""helpers.live.quantization: a live point equals ptq + accuracy on the same subset; one figure."""
import inspect

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from helpers.data import calibration_batch  # noqa: E402
from helpers.paths import REPO_ROOT  # noqa: E402
from live_view_checks import small_model  # noqa: E402
from helpers.live import check_controls, val_accuracy  # noqa: E402
from helpers.live import quantization as live  # noqa: E402
from helpers.quantization.fake import ptq, quant_layers  # noqa: E402


@pytest.fixture(scope="module")
def model():
    """The committed baseline when present (real accuracies), else a seeded random CNN."""
    return small_model()


@pytest.fixture(scope="module")
def state(model, quick_splits):
    return live.prepare(model, quick_splits, calibration_images=64, val_images=300, precompute=())


@pytest.mark.parametrize("w, a, granularity, keep_float", [
    (4, 4, "per-channel", "none"), (2, 6, "per-tensor", "none"), (3, 8, "per-channel", "weights"),
    (5, 2, "per-tensor", "activations")])
def test_point_equals_ptq_on_the_same_subset(model, quick_splits, state, w, a, granularity, keep_float):
    result = live.point(state, weight_bits=w, act_bits=a, granularity=granularity, keep_float=keep_float)
    w_bits, a_bits = (None if keep_float == "weights" else w), (None if keep_float == "activations" else a)
    qmodel = ptq(model, calibration_batch(quick_splits.train, 64, seed=0), w_bits, a_bits, edge_bits=8,
                 weight_granularity="tensor" if granularity == "per-tensor" else "channel")
    assert result["val_accuracy"] == val_accuracy(qmodel, state.images, state.labels)
    assert (result["weight_bits"], result["act_bits"]) == (w_bits, a_bits)
    fc1 = quant_layers(qmodel)["classifier.fc1"]
    if w_bits is None:
        assert result["fc1_levels"] is None
    else:
        assert len(result["fc1_levels"]) == 2 ** w_bits - 1
        assert result["fc1_step"] == pytest.approx(float(fc1.weight_scale[0]))


def test_per_tensor_steps_are_coarser_than_the_smallest_channels(model, quick_splits, state):
    """Per-tensor: one step for all of fc1's rows; per-channel: each row its own, the smallest finer.
    (Channel 0, the one the live view plots, can go either way: MSE clipping picks each scale.)"""
    calibration = calibration_batch(quick_splits.train, 64, seed=0)
    scales = {g: quant_layers(ptq(model, calibration, 4, 4, edge_bits=8, weight_granularity=g))["classifier.fc1"]
              .weight_scale.flatten() for g in ("tensor", "channel")}
    assert torch.all(scales["tensor"] == scales["tensor"][0]) and scales["channel"].unique().numel() > 1
    assert scales["tensor"][0] > scales["channel"].min()
    for granularity, g in (("per-tensor", "tensor"), ("per-channel", "channel")):
        result = live.point(state, weight_bits=4, granularity=granularity)
        assert result["fc1_step"] == pytest.approx(float(scales[g][0]))
    assert live.point(state, weight_bits=4, granularity="per-tensor")["label"].endswith("per-tensor")


def test_a_point_leaves_the_model_alone_and_bad_values_are_clear_errors(model, state):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    live.point(state, weight_bits=2, act_bits=2)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="weight.bits"):
        live.point(state, weight_bits=1)
    with pytest.raises(ValueError, match="granularity"):
        live.point(state, granularity="per-row")
    with pytest.raises(ValueError, match="keep_float"):
        live.point(state, keep_float="both")


def test_draw_returns_one_figure_and_redraws_into_it(state):
    reference = live.reference(REPO_ROOT / "results")
    fig = live.draw(live.point(state), reference)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert live.draw(live.point(state, keep_float="weights"), reference, fig=fig) is fig and len(fig.axes) == 2
    assert isinstance(live.draw(live.point(state), live.reference(REPO_ROOT / "no-such-folder")), Figure)


def test_reference_grid_places_the_runs_cells():
    reference = live.reference(REPO_ROOT / "results")
    if reference.empty:
        pytest.skip("results/06_quantization_grid.json is not committed")
    grid = live._grid(reference)
    row = reference[(reference.kind == "PTQ") & (reference.weight_bits == 4) & (reference.activation_bits == 8)]
    assert grid[live.BITS.index(4), live.BITS.index(8)] == row["test_accuracy"].iloc[0]
    assert np.isnan(grid[live.BITS.index(3)]).all()  # 3 bits was not part of the run


def test_controls_follow_the_contract():
    check_controls(live.CONTROLS)
    assert set(live.CONTROLS) == set(inspect.signature(live.point).parameters) - {"state"}
    assert (live.CONTROLS["weight_bits"]["min"], live.CONTROLS["weight_bits"]["max"]) == (2, 8)


def test_a_repeated_point_comes_from_the_cache_and_equals_the_first(state):
    first = live.point(state, weight_bits=3, act_bits=5, granularity="per-tensor")
    assert (3, 5, "per-tensor") in state.results
    again = live.point(state, weight_bits=3, act_bits=5, granularity="per-tensor")
    assert again["val_accuracy"] == first["val_accuracy"] and again["fc1_step"] == first["fc1_step"]
    assert again is not state.results[(3, 5, "per-tensor")]  # a copy: the caller cannot corrupt the cache


def test_the_weights_follow_the_given_quantizer(model, quick_splits, state):
    def floor(w, s, bits):
        s = s.reshape(-1, *[1] * (w.ndim - 1))
        return torch.floor(w / s).clamp(-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1) * s

    floored = live.prepare(model, quick_splits, calibration_images=64, val_images=300, precompute=(), quantize_fn=floor)
    ours = live.quantized(state, 3, 8, "channel").classifier.fc1
    theirs = live.quantized(floored, 3, 8, "channel").classifier.fc1
    assert torch.equal(theirs.quantized_weight(), floor(theirs.weight, theirs.weight_scale, 3))
    assert not torch.equal(theirs.quantized_weight(), ours.quantized_weight())
