"""Shared fixtures: the real Fashion-MNIST splits (QUICK sizes) and a small trained model."""
import pytest
import torch

from helpers.data import load_splits


@pytest.fixture(scope="session")
def quick_splits():
    return load_splits(quick=True)


@pytest.fixture
def random_model():
    """The default CNN with random weights and non-trivial BatchNorm statistics, in eval mode."""
    from helpers.models import build_model

    torch.manual_seed(0)
    model = build_model()
    for bn in model.bn_layers():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.fixture(scope="module")
def small_trained_model():
    """The committed baseline when present (real accuracies), else a seeded random CNN."""
    from live_view_checks import small_model

    return small_model()


@pytest.fixture(scope="module")
def wanda_state(small_trained_model, quick_splits):
    """notebook 03's live view prepared on ``small_trained_model``: 64 calibration, 300 validation images."""
    from helpers.live import wanda

    return wanda.prepare(small_trained_model, quick_splits, calibration_images=64, val_images=300)
