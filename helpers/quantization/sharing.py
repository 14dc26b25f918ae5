"""Weight sharing and per-layer code sensitivity: Deep Compression's k-means shared values beside
the course's uniform codes, and the accuracy each layer keeps when it alone is coded at b bits."""
from __future__ import annotations

import torch
from torch import nn

from ..models import prunable_layers
from .fake import fake_quantize_weight, weight_scales


def uniform_codes_weight(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """The weight as the course stores it: per-channel symmetric ``bits``-bit codes (MSE-clipped)."""
    return fake_quantize_weight(weight.detach().float(), weight_scales(weight.detach(), bits), bits)


def kmeans_shared_weight(weight: torch.Tensor, bits: int, iterations: int = 30) -> torch.Tensor:
    """Deep Compression's weight sharing: the layer's non-zero weights replaced by the nearest of
    ``2^bits - 1`` shared values (1-D k-means, linear initialisation as in Han et al. 2016); zeros
    stay zero (the code ``0`` is reserved for them, as in the course's uniform codes)."""
    w = weight.detach().float()
    values = w[w != 0]
    if values.numel() == 0:
        return w.clone()
    k = min(2 ** bits - 1, values.numel())
    centroids = torch.linspace(float(values.min()), float(values.max()), k)
    for _ in range(iterations):
        nearest = (values[:, None] - centroids[None, :]).abs().argmin(1)
        sums = torch.zeros(k).index_add_(0, nearest, values)
        counts = torch.bincount(nearest, minlength=k).float()
        centroids = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
    shared = w.clone()
    shared[w != 0] = centroids[(values[:, None] - centroids[None, :]).abs().argmin(1)]
    return shared


def layer_code_sensitivity(model: nn.Module, bits_list, batches, coder=uniform_codes_weight):
    """Validation accuracy with one layer's weights coded at ``b`` bits (``coder``) and every other
    layer left float, for each prunable layer and each ``b`` in ``bits_list``: a pandas DataFrame
    (rows: layers, columns: bits). Zeros stay zero, so a pruned model keeps its masks."""
    import copy

    import pandas as pd

    from ..training import accuracy

    table = {}
    for name in prunable_layers(model):
        table[name] = {}
        for bits in bits_list:
            trial = copy.deepcopy(model)
            layer = prunable_layers(trial)[name]
            with torch.no_grad():
                layer.weight.copy_(coder(layer.weight, bits) * (layer.weight != 0))
            table[name][bits] = accuracy(trial, batches)
    return pd.DataFrame(table).T.rename_axis("layer")
