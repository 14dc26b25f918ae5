import torch
from torch import nn

from helpers.measure import (count_macs, count_nonzero_parameters, file_size, layer_sparsity,
                             measure_latency, sparsity)
from helpers.models import build_model


def test_sparsity_counts_zero_weights_of_prunable_layers_only():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, bias=False), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2 * 26 * 26, 4))
    with torch.no_grad():
        model[0].weight.zero_()              # 18 zeros of 18
        model[3].weight.fill_(1.0)
        model[3].weight[0, :100] = 0.0       # 100 zeros of 5408
        model[3].bias.zero_()                # biases do not count
    assert layer_sparsity(model) == {"0": 1.0, "3": 100 / 5408}
    assert sparsity(model) == 118 / (18 + 5408)
    assert count_nonzero_parameters(model) == 5408 - 100 + 2  # BN γ = 1, β = 0


def test_macs_match_the_hand_formula():
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert count_macs(conv, (1, 3, 10, 10)) == 8 * 10 * 10 * 3 * 9
    linear = nn.Linear(20, 7)
    assert count_macs(linear, (4, 20)) == 20 * 7  # per image
    convs = 28 * 28 * 32 * 9 + 14 * 14 * 64 * 32 * 9 + 7 * 7 * 128 * 64 * 9
    fcs = 1152 * 1000 + 1000 * 120 + 120 * 10
    assert count_macs(build_model()) == convs + fcs


def test_latency_is_positive_and_grows_with_batch():
    latency = measure_latency(build_model(), batch_sizes=(1, 256), min_run_time=0.1)
    assert 0 < latency["latency_ms_b1"] < latency["latency_ms_b256"]  # 256x the work


def test_file_size_is_bytes_on_disk(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 1234)
    assert file_size(path) == 1234
