"""Quantizing a pruned model without reviving its pruned weights, and rounding its side tensors
(scales, biases) to float16 so that a ``.ccz`` file stores them in two bytes (notebook 07)."""
from __future__ import annotations

import torch
from torch import nn

from ..pruning.unstructured import MaskKeeper, masks_from_zeros
from .fake import calibrate, qat, quant_layers, quantize_model


def quantize_keeping_masks(model: nn.Module, weight_bits: int, calibration_images: torch.Tensor,
                           train_batches=None, qat_epochs: int = 0, lr: float = 5e-4, **fit_kwargs):
    """Weight-only quantization of a pruned model (PTQ, then QAT when ``qat_epochs`` > 0) with the
    pruned weights kept at exactly zero: symmetric codes have zero-point 0, and the masks are
    re-applied after every QAT step. Returns (quantized model, QAT history or None)."""
    masks = masks_from_zeros(model)
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
