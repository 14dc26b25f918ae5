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
