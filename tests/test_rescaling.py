"""Channel rescaling keeps the function; Wanda's masks do not move, magnitude's do."""
import pytest
import torch

from helpers.pruning.rescaling import compare_pruning, loudest_channels, mask_agreement, rescale_channels
from helpers.pruning.unstructured import input_norms, prune_model, select_layers

CHANNELS = [1, 5, 7, 20]
BLOCK2 = "features.block2.conv"


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(3)
    return torch.rand(32, 1, 28, 28)  # images in [0, 1], as the models take them


@pytest.fixture(scope="module")
def calibration():
    torch.manual_seed(1)
    return torch.rand(64, 1, 28, 28)


@torch.no_grad()
@pytest.mark.parametrize("block", [1, 2, 3])
@pytest.mark.parametrize("c", [10.0, 0.1, 64.0])
def test_rescaled_model_computes_the_same_function(random_model, images, block, c):
    rescaled = rescale_channels(random_model, block, CHANNELS, c)
    assert torch.allclose(rescaled(images), random_model(images), rtol=1e-4, atol=1e-5)
    bn, bn_r = random_model.features[block - 1].bn, rescaled.features[block - 1].bn
    assert torch.allclose(bn_r.weight[CHANNELS], c * bn.weight[CHANNELS])  # the change is real ...
    assert torch.allclose(bn_r.bias[CHANNELS], c * bn.bias[CHANNELS])
    others = [k for k in range(bn.num_features) if k not in CHANNELS]
    assert torch.equal(bn_r.weight[others], bn.weight[others])  # ... and only on those channels
    assert not torch.equal(rescaled.state_dict()[f"features.block{block}.bn.weight"], bn.weight)


@torch.no_grad()
def test_power_of_two_rescaling_is_bitwise_exact(random_model, images):
    rescaled = rescale_channels(random_model, 1, CHANNELS, 64)
    assert torch.equal(rescaled(images), random_model(images))


def test_original_model_is_untouched(random_model):
    before = {k: v.clone() for k, v in random_model.state_dict().items()}
    rescale_channels(random_model, 1, CHANNELS, 10.0)
    assert all(torch.equal(before[k], v) for k, v in random_model.state_dict().items())


def test_input_norms_of_the_next_layer_scale_by_c(random_model, calibration):
    rescaled = rescale_channels(random_model, 1, CHANNELS, 64)
    layer = {BLOCK2: select_layers(random_model, [BLOCK2])[BLOCK2]}
    norms = input_norms(random_model, layer, calibration)[BLOCK2].reshape(32, 9)
    norms_r = input_norms(rescaled, select_layers(rescaled, [BLOCK2]), calibration)[BLOCK2].reshape(32, 9)
    assert torch.allclose(norms_r[CHANNELS], 64 * norms[CHANNELS])
    others = [k for k in range(32) if k not in CHANNELS]
    assert torch.equal(norms_r[others], norms[others])


@pytest.mark.parametrize("layers", ["all", "inner"])
@pytest.mark.parametrize("sparsity", [0.5, 0.9])
def test_wanda_masks_are_identical_and_magnitude_masks_differ(random_model, calibration, layers, sparsity):
    rescaled = rescale_channels(random_model, 1, CHANNELS, 64)
    _, wanda = prune_model(random_model, "wanda", sparsity, layers=layers, calibration=calibration)
    _, wanda_r = prune_model(rescaled, "wanda", sparsity, layers=layers, calibration=calibration)
    assert set(wanda) == set(wanda_r)
    assert all(torch.equal(wanda[name], wanda_r[name]) for name in wanda)
    _, magnitude = prune_model(random_model, "magnitude", sparsity, layers=layers)
    _, magnitude_r = prune_model(rescaled, "magnitude", sparsity, layers=layers)
    assert not torch.equal(magnitude[BLOCK2], magnitude_r[BLOCK2])
    # the weights on the rescaled channels shrank 64-fold: magnitude prunes every one of them
    assert not magnitude_r[BLOCK2][:, CHANNELS].any()
    # and the other layers' magnitude masks do not move (their weights are unchanged)
    assert all(torch.equal(magnitude[n], magnitude_r[n]) for n in magnitude if n != BLOCK2)


def test_wanda_pruned_models_still_compute_the_same_function(random_model, calibration, images):
    rescaled = rescale_channels(random_model, 1, CHANNELS, 64)
    pruned, _ = prune_model(random_model, "wanda", 0.7, layers="inner", calibration=calibration)
    pruned_r, _ = prune_model(rescaled, "wanda", 0.7, layers="inner", calibration=calibration)
    with torch.no_grad():
        assert torch.allclose(pruned_r(images), pruned(images), rtol=1e-4, atol=1e-5)


def test_compare_pruning_rows(random_model, calibration, images):
    rescaled = rescale_channels(random_model, 1, CHANNELS, 64)
    labels = random_model(images).argmax(1)
    score = lambda m: float((m(images).argmax(1) == labels).float().mean())  # noqa: E731
    with torch.no_grad():
        rows = compare_pruning(random_model, rescaled, [0.9], score, calibration, layers="inner", layer=BLOCK2)
    by_method = {r["method"]: r for r in rows}
    assert set(by_method) == {"magnitude", "wanda"}
    assert by_method["wanda"]["mask agreement"] == 1.0
    assert by_method["wanda"][f"mask agreement {BLOCK2}"] == 1.0
    assert by_method["wanda"]["score, original"] == by_method["wanda"]["score, rescaled"]
    assert by_method["magnitude"][f"mask agreement {BLOCK2}"] < 1.0


def test_mask_agreement_counts_equal_entries():
    a = {"x": torch.tensor([True, True, False, False])}
    b = {"x": torch.tensor([True, False, False, True])}
    assert mask_agreement(a, b) == 0.5
    assert mask_agreement(a, a) == 1.0


def test_loudest_channels_rank_channels_by_their_summed_norms():
    norms = torch.ones(4, 9)
    norms[2] *= 5
    norms[0] *= 3
    assert loudest_channels(norms.flatten(), 4, 2) == [2, 0]


@pytest.mark.parametrize("c", [0.0, -2.0, float("inf"), float("nan")])
def test_non_positive_or_non_finite_factor_is_rejected(random_model, c):
    with pytest.raises(ValueError, match="positive"):
        rescale_channels(random_model, 1, CHANNELS, c)


@pytest.mark.parametrize("block, channels", [(0, [1]), (4, [1]), (1, []), (1, [32]), (1, [-1])])
def test_bad_block_or_channels_are_rejected(random_model, block, channels):
    with pytest.raises(ValueError):
        rescale_channels(random_model, block, channels, 2.0)
