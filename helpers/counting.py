"""Counted numbers of a model: parameters, non-zeros, sparsity, MACs, and bytes on disk.

MACs come from ``torch.utils.flop_counter.FlopCounterMode`` (FLOPs / 2), not a hand formula.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .models import prunable_layers


def count_parameters(model: nn.Module) -> int:
    """All parameters (weights, biases, BatchNorm affine), zero or not."""
    return sum(p.numel() for p in model.parameters())


def count_nonzero_parameters(model: nn.Module) -> int:
    return sum(int(torch.count_nonzero(p)) for p in model.parameters())


def layer_sparsity(model: nn.Module) -> dict[str, float]:
    """Fraction of zero weights in each prunable (Conv2d/Linear) layer."""
    return {name: float((m.weight == 0).sum()) / m.weight.numel()
            for name, m in prunable_layers(model).items()}


def sparsity(model: nn.Module) -> float:
    """Fraction of zero weights over all prunable layers' weights (biases and BN excluded)."""
    layers = prunable_layers(model).values()
    zeros = sum(int((m.weight == 0).sum()) for m in layers)
    total = sum(m.weight.numel() for m in layers)
    return zeros / total


def prunable_weight_count(model: nn.Module) -> int:
    return sum(m.weight.numel() for m in prunable_layers(model).values())


def count_macs(model: nn.Module, input_shape=(1, 1, 28, 28)) -> int:
    """Multiply-accumulates of one forward pass (dense: zeros count), by ``FlopCounterMode``."""
    model.eval()  # (not chained: an exported program's eval() returns None)
    device = next(model.parameters(), torch.empty(0)).device  # an int8 graph holds no nn.Parameter
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(input_shape, device=device))
    return counter.get_total_flops() // 2 // input_shape[0]


def file_size(path: str | os.PathLike) -> int:
    """Bytes on disk of a saved file."""
    return Path(path).stat().st_size
