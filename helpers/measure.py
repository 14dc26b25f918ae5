"""Measured numbers: parameters, non-zeros, sparsity, MACs, latency and bytes on disk."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from torch.utils import benchmark
from torch.utils.flop_counter import FlopCounterMode

from .models import prunable_layers

LATENCY_THREADS = 2  # the course machine has two cores; every latency is measured with these
LATENCY_BATCHES = (1, 256)


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
    model = model.eval()
    device = next(model.parameters()).device
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(input_shape, device=device))
    return counter.get_total_flops() // 2 // input_shape[0]


def latency_ms(model: nn.Module, batch_size: int, threads: int = LATENCY_THREADS,
               min_run_time: float = 1.0) -> float:
    """Median CPU latency in milliseconds of one forward pass at ``batch_size`` (torch.utils.benchmark).

    The timer first runs for half of ``min_run_time`` unrecorded: at batch 256 the first calls pay
    for oneDNN's primitive set-up and for fresh activation memory, and a few calls did not cover it
    (the same model measured 138 ms, then 46-53 ms, in one process).
    """
    model = model.eval().cpu()
    x = torch.rand(batch_size, 1, 28, 28)
    timer = benchmark.Timer(stmt="model(x)", globals={"model": model, "x": x},
                            num_threads=threads, label="latency")
    with torch.no_grad():
        timer.blocked_autorange(min_run_time=min_run_time / 2)  # warm-up, discarded
        measurement = timer.blocked_autorange(min_run_time=min_run_time)
    return measurement.median * 1e3


def measure_latency(model: nn.Module, batch_sizes=LATENCY_BATCHES, threads: int = LATENCY_THREADS,
                    min_run_time: float = 1.0) -> dict[str, float]:
    """``{"latency_ms_b1": ..., "latency_ms_b256": ...}`` for the given batch sizes."""
    with torch.no_grad():
        return {f"latency_ms_b{b}": latency_ms(model, b, threads, min_run_time) for b in batch_sizes}


def file_size(path: str | os.PathLike) -> int:
    """Bytes on disk of a saved file."""
    return Path(path).stat().st_size
