"""Function-preserving channel rescaling: the exact experiment that shows what Wanda's ‖X‖ term buys.

In a conv block ``conv -> BatchNorm -> ReLU -> max-pool`` multiply BatchNorm's γ and β of some
channels by ``c > 0``: those channels' outputs are multiplied by ``c`` (BatchNorm's affine step is
linear in γ and β), and ReLU and max-pooling pass the factor through (positive homogeneity:
``relu(c·z) = c·relu(z)``, ``max(c·z) = c·max(z)``). Multiplying the next layer's weights on those
input channels by ``1/c`` undoes it: the model computes the same function. Wanda's score
``|W_ij|·‖X_j‖`` of every weight is unchanged (``|W|/c`` times ``c·‖X‖``), so are its masks;
magnitude's ``|W_ij|`` shrinks by ``c`` on those channels, so its masks change.

With ``c`` a power of two the rescaling is exact in floating point as well (multiplying by 2^k only
changes the exponent): outputs, input norms and Wanda scores are then bitwise those of the
original, not just close, and no tie between scores can break differently.
"""
from __future__ import annotations

import copy
from typing import Iterable, Mapping

import torch
from torch import Tensor, nn


def _next_layer(model: nn.Module, block: int) -> tuple[str, nn.Module]:
    """Name and module of the layer that reads block ``block``'s output (1-based): the next block's
    conv, or the classifier's first Linear after the last block."""
    blocks = list(model.features)
    if not 1 <= block <= len(blocks):
        raise ValueError(f"block must be 1..{len(blocks)}, got {block}")
    if block < len(blocks):
        return f"features.block{block + 1}.conv", blocks[block].conv
    first = next(name for name, m in model.classifier.named_children() if isinstance(m, nn.Linear))
    return f"classifier.{first}", getattr(model.classifier, first)


def rescale_channels(model: nn.Module, block: int, channels: Iterable[int], c: float) -> nn.Module:
    """A deep copy of the course CNN that computes the same function, with the output channels
    ``channels`` of block ``block`` (1-based) multiplied by ``c`` and the next layer's weights on
    them divided by ``c``.

    Block ``block``'s BatchNorm γ and β of those channels are multiplied by ``c``; the next layer is
    the next block's conv (its input channels ``channels``) or, after the last block, the
    classifier's first Linear (the flattened features of those channels). ``c`` must be a positive
    finite number (a negative one would not pass through ReLU); a power of two makes it exact.
    """
    c = float(c)
    if not (c > 0 and c != float("inf")):
        raise ValueError(f"c must be a positive finite number (ReLU only passes c > 0), got {c}")
    rescaled = copy.deepcopy(model)
    bn = rescaled.features[block - 1].bn if 1 <= block <= len(rescaled.features) else None
    _, nxt = _next_layer(rescaled, block)
    chosen = sorted({int(k) for k in channels})
    if not chosen or chosen[0] < 0 or chosen[-1] >= bn.num_features:
        raise ValueError(f"channels must be a non-empty list of indices in 0..{bn.num_features - 1}, got {chosen}")
    index = torch.tensor(chosen, device=bn.weight.device)
    with torch.no_grad():
        bn.weight[index] *= c
        bn.bias[index] *= c
        if isinstance(nxt, nn.Conv2d):
            nxt.weight[:, index] /= c
        else:  # Linear after flatten: channel k owns features k*H*W .. (k+1)*H*W - 1
            per_channel = nxt.in_features // bn.num_features
            columns = (index[:, None] * per_channel + torch.arange(per_channel, device=index.device)).flatten()
            nxt.weight[:, columns] /= c
    return rescaled


def channel_norms(norms: Tensor, in_channels: int) -> Tensor:
    """Per input channel of a conv, the norm of its input over all kernel positions:
    ``sqrt(sum_j ||X_j||^2)`` over the channel's columns of Wanda's ``norms`` (length
    ``in_channels * kernel positions``)."""
    return norms.reshape(in_channels, -1).pow(2).sum(dim=1).sqrt()


def loudest_channels(norms: Tensor, in_channels: int, k: int) -> list[int]:
    """The ``k`` input channels of a conv with the largest ``channel_norms``, loudest first."""
    return channel_norms(norms, in_channels).topk(k).indices.tolist()


def mask_agreement(a: Mapping[str, Tensor], b: Mapping[str, Tensor], layers: Iterable[str] | None = None) -> float:
    """Fraction of mask entries (over ``layers``, default all of ``a``) on which two sets of masks agree."""
    names = list(a) if layers is None else list(layers)
    same = sum(int((a[n].cpu() == b[n].cpu()).sum()) for n in names)
    return same / max(sum(a[n].numel() for n in names), 1)


def compare_pruning(model: nn.Module, rescaled: nn.Module, sparsities: Iterable[float], score,
                    calibration, methods: Iterable[str] = ("magnitude", "wanda"), layer: str | None = None,
                    score_name: str = "score", **prune_kwargs) -> list[dict]:
    """Prune ``model`` and its rescaled twin with each method at each sparsity (``prune_model``, no
    fine-tuning) and compare: one row per (sparsity, method) with the fraction of identical mask
    entries over all pruned layers and in ``layer`` (e.g. the layer whose inputs were rescaled),
    and ``score(pruned)`` of both (e.g. an accuracy), in columns ``"<score_name>, original"`` and
    ``"<score_name>, rescaled"``. ``prune_kwargs`` go to ``prune_model``
    (group, layers, ...)."""
    from .unstructured import prune_model

    rows = []
    for s in sparsities:
        for method in methods:
            pruned, masks = prune_model(model, method, s, calibration=calibration, **prune_kwargs)
            pruned_r, masks_r = prune_model(rescaled, method, s, calibration=calibration, **prune_kwargs)
            row = {"sparsity": s, "method": method, "mask agreement": mask_agreement(masks, masks_r)}
            if layer is not None:
                row[f"mask agreement {layer}"] = mask_agreement(masks, masks_r, [layer])
            row.update({f"{score_name}, original": score(pruned), f"{score_name}, rescaled": score(pruned_r)})
            rows.append(row)
    return rows
