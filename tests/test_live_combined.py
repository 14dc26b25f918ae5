"""Live view of 07: prune x weight bits, the .ccz bytes encoded in memory equal a written file."""
import copy

import pytest

from helpers.quantization.masked import half_precision_side_tensors, quantize_keeping_masks
from helpers.data import Batches
from helpers.live import combined
from helpers.paths import REPO_ROOT
from helpers.pruning.schedules import mask_maker
from helpers.pruning.unstructured import apply_masks
from helpers.quantization.fake import quant_layers
from helpers import load, save
from helpers.storage.compressed import stage_sizes
from helpers.training import accuracy
from live_view_checks import assert_unchanged, check_controls, check_draw, small_model, state_dict_copy

N = 200


@pytest.fixture(scope="module")
def state(quick_splits):
    return combined.prepare(small_model(), quick_splits, n=N)


def test_controls_are_well_formed():
    check_controls(combined)


def test_point_equals_prune_quantize_encode(state, quick_splits, tmp_path):
    import torch

    before = state_dict_copy(state.model)
    result = combined.point(state, sparsity=0.9, bits=4)
    masks = mask_maker("lamp", layers="inner", group="global", model_wide=True)(state.model, 0.9)
    pruned = apply_masks(copy.deepcopy(state.model), masks)
    direct, _ = quantize_keeping_masks(pruned, 4, quick_splits.train.head(8).as_float()[0])  # no QAT
    direct = half_precision_side_tensors(direct)  # as 07 stores its files
    assert result["val_accuracy"] == accuracy(direct, Batches(quick_splits.val.head(N), N))
    meta = {"bits": 4, "sparsity": 0.9, "live": True}
    save(direct, tmp_path / "direct.ccz", meta=meta)
    stages = stage_sizes(direct, meta=meta)
    assert result["stage_bytes"] == stages and result["bytes"] == (tmp_path / "direct.ccz").stat().st_size
    restored = load(tmp_path / "direct.ccz")
    x = quick_splits.val.head(16).as_float()[0]
    assert torch.equal(restored(x), direct(x))
    assert result["sparsity"] == pytest.approx(0.9, abs=1e-3) and result["weight_bits"] == 4
    assert result["dense_pt_bytes"] > 10 * result["bytes"]
    assert_unchanged(state.model, before)


def test_fewer_bits_and_more_zeros_give_fewer_bytes(state):
    two_bits = combined.point(state, sparsity=0.9, bits=2)["bytes"]
    assert two_bits < combined.point(state, sparsity=0.9, bits=8)["bytes"]
    assert combined.point(state, sparsity=0.98, bits=2)["bytes"] < two_bits
    with pytest.raises(ValueError, match="bits"):
        combined.point(state, sparsity=0.9, bits=9)


def test_reference_is_07s_records(tmp_path):
    ref = combined.reference(REPO_ROOT / "results")
    assert ref["name"].str.contains(".ccz", regex=False).any() and (ref["size_bytes"] > 0).all()
    assert combined.reference(tmp_path).empty


def test_draw_returns_one_figure(state):
    check_draw(combined, combined.point(state, sparsity=0.95, bits=4), combined.reference(REPO_ROOT / "results"))


def test_unknown_weight_clip_is_refused(quick_splits):
    with pytest.raises(ValueError, match="weight_clip"):
        combined.prepare(small_model(), quick_splits, weight_clip="p99")


def test_a_move_equals_its_uncached_computation_and_the_full_forward(state):
    from helpers.live import val_accuracy
    from helpers.quantization.fake import quantize_model

    first = combined.point(state, sparsity=0.8, bits=3)
    assert (0.8, 3) in state.results
    again = combined.point(state, sparsity=0.8, bits=3)
    assert again == first and again is not state.results[(0.8, 3)]  # a copy: the cache stays intact
    uncached = combined.compute_point(state, 0.8, 3)
    assert uncached["bytes"] == first["bytes"] and uncached["val_accuracy"] == first["val_accuracy"]
    # the stored first-block output gives the accuracy of the whole model's forward pass
    pruned = apply_masks(copy.deepcopy(state.model).eval(), state.ranking.masks(0.8))
    qmodel = half_precision_side_tensors(quantize_model(pruned, 3, None))
    assert first["val_accuracy"] == val_accuracy(qmodel, state.images, state.labels)
