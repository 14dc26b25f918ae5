import pytest
import torch

from helpers.models import CNNConfig, build_model, prunable_layers


def test_default_model_has_the_hand_counted_parameters():
    conv = (1 * 32 * 9 + 2 * 32) + (32 * 64 * 9 + 2 * 64) + (64 * 128 * 9 + 2 * 128)  # no conv bias; BN γ, β
    fc = (1152 * 1000 + 1000) + (1000 * 120 + 120) + (120 * 10 + 10)
    model = build_model()
    assert sum(p.numel() for p in model.parameters()) == conv + fc == 1_367_226


def test_model_takes_unit_range_images_and_normalises_inside():
    model = build_model().eval()
    x = torch.rand(5, 1, 28, 28)
    assert model(x).shape == (5, 10)
    assert torch.isclose(model.normalize(torch.full((1,), 0.2860)), torch.zeros(1), atol=1e-6).all()


def test_config_round_trips_and_rebuilds_pruned_shapes():
    config = CNNConfig(conv_channels=(7, 20, 33), fc_features=(101, 12))
    assert CNNConfig.from_dict(config.to_dict()) == config
    model = build_model(config.to_dict())
    shapes = {name: tuple(m.weight.shape) for name, m in prunable_layers(model).items()}
    assert shapes["features.block3.conv"] == (33, 20, 3, 3)
    assert shapes["classifier.fc1"] == (101, 33 * 3 * 3)
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_a_layer_without_channels_is_rejected():
    with pytest.raises(ValueError, match="at least one channel"):
        CNNConfig(conv_channels=(32, 0, 128))
