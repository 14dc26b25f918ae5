"""Bad inputs are clear errors: fractions, keep indices, schedules, NaN weights and images."""
import pytest
import torch

from helpers.inputs import check_fraction, image_batches
from helpers.models import CNNConfig, build_model
from helpers.pruning.schedules import PruningSchedule
from helpers.pruning.structured import check_ratio, remove_channels
from helpers.pruning.unstructured import check_sparsity, input_norms, select_layers
from helpers.quantization.fake import calibrate, quantize_model


@pytest.mark.parametrize("value", ["0.5", b"0.5", True, float("nan"), float("inf"), -0.1, 1.0, None, [0.5]])
def test_one_fraction_checker_refuses_what_is_not_a_fraction(value):
    for check in (check_fraction, check_ratio, check_sparsity):
        with pytest.raises(ValueError, match=r"must (be a number in|lie in) \[0, 1\)"):
            check(value)


def test_fractions_in_range_pass_as_floats():
    assert check_ratio(0.5) == 0.5 and check_sparsity(0) == 0.0 and check_fraction(torch.tensor(0.25)) == 0.25


def test_check_ratio_rejects_strings_as_check_sparsity_does():
    with pytest.raises(ValueError, match="ratio must be a number in \\[0, 1\\).*got '0.5'"):
        check_ratio("0.5")


def test_remove_channels_rejects_non_integer_indices():
    model = build_model(CNNConfig(conv_channels=(4, 4, 4), fc_features=(8,)))
    with pytest.raises(ValueError, match="keep indices must be integers, got torch.float32"):
        remove_channels(model, [[0, 1.7], None, None])
    with pytest.raises(ValueError, match="keep indices must be integers"):
        remove_channels(model, [[True, False, True, True], None, None])
    assert remove_channels(model, [[0, 2], None, None]).config.conv_channels == (2, 4, 4)


def test_pruning_schedule_rejects_nan():
    with pytest.raises(ValueError, match="sparsity must lie in"):
        PruningSchedule("agp", float("nan"), epochs=4)
    with pytest.raises(ValueError, match="pruning phase \\(nan epochs\\)"):
        PruningSchedule("agp", 0.5, epochs=4, prune_epochs=float("nan"))


def test_calibration_refuses_nan_weights_and_nan_images():
    model = build_model(CNNConfig(conv_channels=(4, 4, 4), fc_features=(8,))).eval()
    images = torch.rand(8, 1, 28, 28)
    broken = build_model(model.config).eval()
    with torch.no_grad():
        broken.features[0].conv.weight[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or infinite values in features.block1.conv.weight"):
        calibrate(quantize_model(broken, 4, 4), images)
    with pytest.raises(ValueError, match="NaN or infinite values in features.block1.conv.weight"):
        input_norms(broken, select_layers(broken), images)
    bad_images = images.clone()
    bad_images[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="calibration images hold NaN"):
        calibrate(quantize_model(model, 4, 4), bad_images)


def test_image_batches_accepts_tensors_and_pairs_and_refuses_empty_data():
    images = torch.rand(10, 1, 28, 28)
    assert [len(b) for b in image_batches(images, 4)] == [4, 4, 2]
    assert [len(b) for b in image_batches([(images, None), images[:3]])] == [10, 3]
    with pytest.raises(ValueError, match="at least one image"):
        image_batches(images[:0])
    with pytest.raises(ValueError, match="at least one image"):
        list(image_batches([]))
    with pytest.raises(ValueError, match="needs images"):
        image_batches(None)
