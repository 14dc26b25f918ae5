"""Combined compression (notebook 07): take a pruned model from an earlier stage, quantize it
with its masks kept, and find the earlier stages' chosen models from their records."""
from __future__ import annotations

import torch
from torch import nn

from .storage import load
from .models import prunable_layers
from .paths import REPO_ROOT, OutputDirs
from .pruning.unstructured import MaskKeeper
from .quantization.fake import calibrate, qat, quant_layers, quantize_model
from .results import read_results


def saved_model_of(stage_prefix: str, outputs: OutputDirs, prefer: str = "sparsity", name: str | None = None):
    """(record, model) of the saved model of notebook ``stage_prefix`` (e.g. "05") named ``name``, or
    else the one with the highest ``prefer`` value (e.g. sparsity), from this run's results or the
    committed ones; None if there is none."""
    for root in dict.fromkeys([outputs.root, REPO_ROOT]):
        records = [r for r in read_results(root / "results")
                   if r["stage"].startswith(stage_prefix) and str(r.get("weights_file", "")).endswith(".pt")
                   and (root / r["weights_file"]).is_file() and name in (None, r["name"])]
        if records:
            best = max(records, key=lambda r: r[prefer])
            return best, load(root / best["weights_file"])
    return None


def masks_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """The pruning masks a model carries in its zeros (True = kept), per prunable layer."""
    return {name: layer.weight.detach() != 0 for name, layer in prunable_layers(model).items()}


def quantize_keeping_masks(model: nn.Module, weight_bits: int, calibration_images: torch.Tensor,
                           train_batches=None, qat_epochs: int = 0, lr: float = 5e-4, **fit_kwargs):
    """Weight-only quantization of a pruned model (PTQ, then QAT when ``qat_epochs`` > 0) with the
    pruned weights kept at exactly zero: symmetric codes have zero-point 0, and the masks are
    re-applied after every QAT step. Returns (quantized model, QAT history or None)."""
    masks = masks_of(model)
    qmodel = calibrate(quantize_model(model, weight_bits, None), calibration_images)
    history = None
    if qat_epochs > 0:
        history = qat(qmodel, train_batches, epochs=qat_epochs, lr=lr, after_step=MaskKeeper(masks), **fit_kwargs)
    for name, layer in quant_layers(qmodel).items():
        if layer.weight_bits is not None and bool((layer.weight_codes()[~masks[name]] != 0).any()):
            raise AssertionError(f"{name}: a pruned weight was revived by quantization")
    return qmodel.eval(), history


@torch.no_grad()
def half_precision_side_tensors(qmodel: nn.Module) -> nn.Module:
    """Round every coded layer's per-channel weight scales and biases to values float16 holds
    exactly (in place; relative change at most 2^-11), so that a ``.ccz`` file stores them in two
    bytes instead of four without losing a bit. A channel with no surviving weight gets scale 1:
    its codes are all 0, so the scale never touches the output. Returns ``qmodel``."""
    for layer in quant_layers(qmodel).values():
        if layer.weight_bits is None:
            continue
        scale = layer.weight_scale
        if layer.weight_granularity != "tensor":
            empty = (layer.weight.detach().reshape(len(scale), -1) == 0).all(1)
            scale = torch.where(empty, torch.ones_like(scale), scale)
        half = scale.half().float()
        if bool(torch.isfinite(half).all()) and bool((half > 0).all()):
            layer.weight_scale.copy_(half)
        if layer.bias is not None and bool(torch.isfinite(layer.bias.half()).all()):
            layer.bias.copy_(layer.bias.half().float())
    return qmodel


def entropy_bytes(symbols) -> float:
    """Order-0 Shannon bound of a symbol sequence, in bytes: what an ideal symbol-by-symbol coder
    (Huffman within 1 bit per symbol, an ANS or arithmetic coder within a few bytes) would need."""
    values = torch.as_tensor(symbols).reshape(-1)
    if values.numel() == 0:
        return 0.0
    counts = torch.unique(values, return_counts=True)[1].double()
    p = counts / counts.sum()
    return float(-(counts * p.log2()).sum() / 8)


def byte_breakdown(qmodel: nn.Module):
    """Where the bytes of a ``.ccz`` file go, per coded layer: non-zero weights, bits, the positions
    (one-byte gaps) and the codes, each LZMA-coded on its own and as its order-0 entropy bound
    (a pandas DataFrame; the last row sums the columns)."""
    import lzma

    import pandas as pd

    from .storage.compressed import sparse_codes

    rows = []
    for name, layer in quant_layers(qmodel).items():
        if layer.weight_bits is None:
            continue
        codes = layer.weight_codes().cpu().numpy()
        gaps, packed, entries = sparse_codes(codes, layer.weight_bits)
        flat = codes.reshape(-1)
        rows.append({"layer": name, "weights": flat.size, "nonzero": int((flat != 0).sum()),
                     "bits": layer.weight_bits, "gap_entries": entries,
                     "positions_lzma": len(lzma.compress(gaps, preset=9 | lzma.PRESET_EXTREME)),
                     "positions_entropy": round(entropy_bytes(list(gaps))),
                     "codes_lzma": len(lzma.compress(packed, preset=9 | lzma.PRESET_EXTREME)),
                     "codes_entropy": round(entropy_bytes(flat[flat != 0]))})
    table = pd.DataFrame(rows)
    total = table.drop(columns=["layer", "bits"]).sum().to_dict()
    return pd.concat([table, pd.DataFrame([{"layer": "total", "bits": None, **total}])], ignore_index=True)


def uniform_codes_weight(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """The weight as the course stores it: per-channel symmetric ``bits``-bit codes (MSE-clipped)."""
    from .quantization.fake import fake_quantize_weight, weight_scales

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

    from .training import accuracy

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
