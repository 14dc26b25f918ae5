"""The exercise registry: references pass, plausible wrong answers fail with the right hint,
stubs report "not implemented yet", and the references agree with the helpers the notebooks run."""
import importlib.util
import inspect
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from helpers import exercises as ex, training
from helpers.paths import REPO_ROOT
from helpers.pruning import slimming, structured, unstructured
from helpers.quantization import fake
from helpers.storage import packed, sparse

def _stub(*args):
    raise NotImplementedError


# --------------------------------------------------------------------------- wrong answers
# Plausible learner mistakes, one small function each, grouped by exercise. The table WRONG below
# pairs each with the distinctive words of the hint it must get; its ids name the mistake's category.
def _acc_ties_count_as_right(logits, labels):
    label_logit = logits.gather(1, labels[:, None]).squeeze(1)
    return 100.0 * (label_logit == logits.amax(1)).float().mean().item()  # a tie for the max counts as right


def _acc_shift_in_place(logits, labels):
    logits -= logits.amax(1, keepdim=True)  # "stabilise" as before a softmax: changes the caller's logits
    return 100.0 * (logits.argmax(1) == labels).float().mean().item()


def _fc1_scale_in_place(kept, spatial):
    kept *= spatial  # each channel's first column — written into the caller's tensor
    return (kept[:, None] + torch.arange(spatial)).flatten()


def _wanda_in_place(w, norms):
    rows = w.reshape(len(w), -1)  # a view of w
    rows.abs_().mul_(norms)
    return w


def _im2col_square_in_place(x, k, p):
    x.mul_(x)  # square first (zero padding stays zero): right values, but x is changed
    return F.unfold(x, k, padding=p).sum(dim=(0, 2)).div(len(x)).sqrt()


def _row_mask_round(scores, s):
    rows = scores.reshape(len(scores), -1)
    k = round(s * rows.shape[1])  # round, not floor
    mask = torch.ones_like(rows, dtype=torch.bool)
    mask.scatter_(1, rows.argsort(dim=1, stable=True)[:, :k], False)
    return mask.reshape(scores.shape)


def _row_mask_threshold(scores, s):
    rows = scores.reshape(len(scores), -1)
    k = int(s * rows.shape[1])
    cut = rows.sort(1).values[:, k - 1:k]  # the k-th lowest score of each row
    return (rows > cut).reshape(scores.shape)  # removes every score tied with it


def _row_mask_keep_highest_first(scores, s):
    rows = scores.reshape(len(scores), -1)
    n_keep = rows.shape[1] - int(s * rows.shape[1])
    mask = torch.zeros_like(rows, dtype=torch.bool)
    mask.scatter_(1, rows.argsort(dim=1, descending=True, stable=True)[:, :n_keep], True)  # ties: keeps the earlier
    return mask.reshape(scores.shape)


def _row_mask_fill_in_place(scores, s):
    rows = scores.reshape(len(scores), -1)  # a view: writing to it writes to scores
    for _ in range(int(s * rows.shape[1])):
        rows[torch.arange(len(rows)), rows.argmin(1)] = float("inf")
    return ~torch.isinf(rows).reshape(scores.shape)


def _row_mask_drop_last_k(scores, s):
    rows = scores.reshape(len(scores), -1)
    k = int(s * rows.shape[1])
    highest_first = rows.argsort(dim=1, stable=True).flip(1)
    mask = torch.zeros_like(rows, dtype=torch.bool)
    mask.scatter_(1, highest_first[:, :-k], True)  # all but the k lowest; at k = 0, [:, :-0] is empty
    return mask.reshape(scores.shape)


def _nm_remove_n(scores, n, m):
    groups = scores.reshape(-1, m)
    mask = torch.ones_like(groups, dtype=torch.bool)
    mask.scatter_(1, groups.argsort(dim=1, stable=True)[:, :n], False)  # removes n: right only when n = m - n
    return mask.reshape(scores.shape)


def _nm_threshold(scores, n, m):
    groups = scores.reshape(-1, m)
    cut = groups.sort(1).values[:, m - n - 1:m - n]  # the largest score to remove
    return (groups > cut).reshape(scores.shape)


def _nm_keep_highest_first(scores, n, m):
    groups = scores.reshape(-1, m)
    mask = torch.zeros_like(groups, dtype=torch.bool)
    mask.scatter_(1, groups.argsort(dim=1, descending=True, stable=True)[:, :n], True)  # ties: keeps the earlier
    return mask.reshape(scores.shape)


def _nm_mark_in_place(scores, n, m):
    groups = scores.view(-1, m)  # a view of scores
    groups.scatter_(1, groups.argsort(dim=1, stable=True)[:, :m - n], -1.0)  # mark the removed ones …
    return (groups >= 0).reshape(scores.shape)  # … keep the rest


def _gaps_from_zero(pos, max_gap=255):
    return np.diff(np.concatenate([[0], pos]))


def _gaps_without_fillers(pos, max_gap=255):
    return np.diff(np.concatenate([[-1], pos]))


def _gaps_fill_at_equal(pos, max_gap=255):
    gaps, previous = [], -1
    for p in pos:
        gap = int(p) - previous
        while gap >= max_gap:  # >=: a gap of exactly max_gap gets a filler too
            gaps.append(max_gap)
            gap -= max_gap
        gaps.append(gap)
        previous = int(p)
    return np.array(gaps, dtype=np.int64)


def _gaps_divmod(pos, max_gap=255):
    gaps = []
    for gap in np.diff(np.concatenate([[-1], pos])):
        fillers, rest = divmod(int(gap), max_gap)
        gaps += [max_gap] * fillers + [rest]  # 510 becomes 255, 255, 0
    return np.array(gaps, dtype=np.int64)


def _gaps_shift_in_place(pos, max_gap=255):
    pos += 1  # count from index -1: shift every position by one (the caller's array)
    gaps, previous = [], 0
    for p in pos:
        gap = int(p) - previous
        gaps += [max_gap] * ((gap - 1) // max_gap) + [gap - max_gap * ((gap - 1) // max_gap)]
        previous = int(p)
    return np.array(gaps, dtype=np.int64)


def _gaps_first_apart(pos, max_gap=255):
    gaps = [int(pos[0]) + 1] + np.diff(pos).tolist()  # pos[0]: fails on no positions
    out = []
    for gap in gaps:
        out += [max_gap] * ((gap - 1) // max_gap) + [gap - max_gap * ((gap - 1) // max_gap)]
    return np.array(out, dtype=np.int64)


def _pack_lsb_first(values, bits):
    as_bits = np.unpackbits(np.asarray(values, np.uint8)[:, None], axis=1, bitorder="little")[:, :bits]
    return np.packbits(as_bits.ravel(), bitorder="little").tobytes()


def _pack_always_pads(values, bits):
    stream = "".join(format(int(v), f"0{bits}b") for v in values)
    stream += "0" * (8 - len(stream) % 8)  # a whole zero byte when the stream already fills its bytes
    return bytes(int(stream[i:i + 8], 2) for i in range(0, len(stream), 8))


def _pack_shifting_in_place(values, bits):
    values = np.asarray(values)  # no copy: still the caller's array
    planes = []
    for _ in range(bits):  # least significant bit plane first …
        planes.append(values & 1)
        values >>= 1
    as_bits = np.stack(planes[::-1], axis=1)  # … reversed: MSB first
    return np.packbits(as_bits.ravel().astype(np.uint8)).tobytes()


def _global_threshold_signed(gammas, ratio):
    values = torch.cat(gammas).sort().values  # forgot the abs
    n = int(round(ratio * len(values)))
    return 0.0 if n == 0 else float((values[n - 1] + values[n]) / 2)


def _global_threshold_no_midpoint(gammas, ratio):
    values = torch.cat(gammas).abs().sort().values
    n = int(round(ratio * len(values)))
    return 0.0 if n == 0 else float(values[n])


def _global_threshold_per_layer(gammas, ratio):
    return float(np.mean([slimming.global_threshold([g], ratio) for g in gammas]))


def _global_threshold_floor(gammas, ratio):
    values = torch.cat(gammas).abs().sort().values
    n = int(ratio * len(values))  # floor, not round
    return 0.0 if n == 0 else float((values[n - 1] + values[n]) / 2)


def _global_threshold_next_pair(gammas, ratio):
    values = torch.cat(gammas).abs().sort().values
    n = int(round(ratio * len(values)))
    return 0.0 if n == 0 else float((values[n] + values[n + 1]) / 2)  # one past the cut


def _global_threshold_no_zero_case(gammas, ratio):
    values = torch.cat(gammas).abs().sort().values
    n = int(round(ratio * len(values)))
    return float((values[n - 1] + values[n]) / 2)  # at n = 0: values[-1], the largest


def _global_threshold_abs_in_place(gammas, ratio):
    values = torch.cat([g.abs_() for g in gammas]).sort().values  # abs_ changes the caller's γ
    n = int(round(ratio * len(values)))
    return 0.0 if n == 0 else float((values[n - 1] + values[n]) / 2)


def _agp_off_by_one(t, T, final, initial=0.0):
    frac = min(max(t / (T + 1), 0.0), 1.0)
    return final + (initial - final) * (1 - frac) ** 3


def _agp_not_held(t, T, final, initial=0.0):
    return final + (initial - final) * (1 - t / T) ** 3


def _agp_linear(t, T, final, initial=0.0):
    return initial + (final - initial) * min(t / T, 1.0)


def _agp_no_lower_clip(t, T, final, initial=0.0):
    frac = 1.0 if T == 0 else min(t / T, 1.0)  # no max(…, 0): t < 0 runs below the start
    return final + (initial - final) * (1 - frac) ** 3


def _agp_divides_by_T(t, T, final, initial=0.0):
    frac = min(max(t / T, 0.0), 1.0)  # T = 0: ZeroDivisionError
    return final + (initial - final) * (1 - frac) ** 3


def _global_round(weights, s):
    flat = torch.cat([w.abs().flatten() for w in weights.values()])
    keep = torch.ones_like(flat, dtype=torch.bool)
    keep[torch.sort(flat, stable=True).indices[:round(s * flat.numel())]] = False  # round, not floor
    return dict(zip(weights, (p.reshape(w.shape) for w, p in zip(weights.values(), keep.split(
        [w.numel() for w in weights.values()])))))


def _global_kth_threshold(weights, s):
    flat = torch.cat([w.abs().flatten() for w in weights.values()])
    cut = flat.kthvalue(int(s * flat.numel())).values  # removes every |w| tied with the cut
    return {name: w.abs() > cut for name, w in weights.items()}


def _global_keep_highest_first(weights, s):
    flat = torch.cat([w.abs().flatten() for w in weights.values()])
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[flat.argsort(descending=True, stable=True)[:flat.numel() - int(s * flat.numel())]] = True
    return dict(zip(weights, (p.reshape(w.shape) for w, p in zip(weights.values(), keep.split(
        [w.numel() for w in weights.values()])))))


def _global_abs_in_place(weights, s):
    return ex.global_magnitude_reference({n: w.abs_() for n, w in weights.items()}, s)  # abs_: in place


def _scales_asymmetric(w, bits):
    rows = w.reshape(len(w), -1)
    return (rows.amax(1) - rows.amin(1)) / (2 ** bits - 1)


def _scales_zero_guard(w, bits):
    scales = w.reshape(len(w), -1).abs().amax(1) / (2 ** (bits - 1) - 1)
    scales[scales == 0] = 1.0  # "avoid a zero scale"
    return scales


def _fq_no_clamp(w, s, bits):
    s = s.reshape(-1, *[1] * (w.ndim - 1))
    return torch.round(w / s) * s


def _fq_floor(w, s, bits):
    q = 2 ** (bits - 1) - 1
    s = s.reshape(-1, *[1] * (w.ndim - 1))
    return torch.floor(w / s).clamp(-q, q) * s


def _fq_codes(w, s, bits):
    q = 2 ** (bits - 1) - 1
    return torch.round(w / s.reshape(-1, *[1] * (w.ndim - 1))).clamp(-q, q)


def _fq_clamp_to_largest_scale(w, s, bits):
    q = 2 ** (bits - 1) - 1
    levels = torch.round(w / s.reshape(-1, *[1] * (w.ndim - 1))) * s.reshape(-1, *[1] * (w.ndim - 1))
    return levels.clamp(-q * s.max(), q * s.max())  # one range for all rows: the largest scale's


def _fq_half_up(w, s, bits):
    q = 2 ** (bits - 1) - 1
    s = s.reshape(-1, *[1] * (w.ndim - 1))
    return torch.floor(w / s + 0.5).clamp(-q, q) * s  # halves round up, not to even


def _fq_clip_only(w, s, bits):
    q = 2 ** (bits - 1) - 1
    s = s.reshape(-1, *[1] * (w.ndim - 1))
    return torch.maximum(torch.minimum(w, q * s), -q * s)  # clipped to the range, never rounded


def _fq_asymmetric_range(w, s, bits):
    s = s.reshape(-1, *[1] * (w.ndim - 1))
    return torch.round(w / s).clamp(-2 ** (bits - 1), 2 ** (bits - 1) - 1) * s  # [-8, 7]: not narrow


def _fq_in_place(w, s, bits):
    q = 2 ** (bits - 1) - 1
    s = s.reshape(-1, *[1] * (w.ndim - 1))
    return w.div_(s).round_().clamp_(-q, q).mul_(s)


def _ste_clipped(x):
    inside = x.clamp(-1.0, 1.0)  # a clipped straight-through estimator: gradient 0 where |x| > 1
    return inside + (torch.round(x) - inside).detach()


def _ste_half_up(x):
    return x + (torch.floor(x + 0.5) - x).detach()


def _ste_rounds_x_in_place(x):
    x.data.round_()  # rounds the caller's tensor, behind autograd's back
    return x


WRONG = [
    ("accuracy_from_logits", "fraction", lambda lg, lb: (lg.argmax(1) == lb).float().mean().item(), "percentage"),
    ("accuracy_from_logits", "argmin", lambda lg, lb: 100.0 * (lg.argmin(1) == lb).float().mean().item(),
     "expected 50.00% (rows whose argmax"),
    ("accuracy_from_logits", "ties", _acc_ties_count_as_right, "argmax takes the FIRST (class 0)"),
    ("accuracy_from_logits", "floor", lambda lg, lb: 100 * int((lg.argmax(1) == lb).sum()) // len(lb),
     "got the whole number 33"),
    ("accuracy_from_logits", "in-place", _acc_shift_in_place, "your function changed its input logits"),
    ("normalize", "mean-only", lambda x: x - 0.2860, "divide by the std"),
    ("normalize", "inverse", lambda x: x * 0.3530 + 0.2860, "inverse"),
    ("normalize", "swapped", lambda x: (x - 0.3530) / 0.2860, "mean and std are swapped"),
    ("normalize", "batch-stats", lambda x: (x - x.mean()) / x.std(), "the batch's own mean and std"),
    ("normalize", "in-place", lambda x: x.sub_(0.2860).div_(0.3530), "your function changed its input x"),
    ("filter_l1_scores", "signed", lambda w: w.sum(dim=(1, 2, 3)), "absolute values"),
    ("filter_l1_scores", "L2", lambda w: w.flatten(1).norm(dim=1), "L2 norm"),
    ("filter_l1_scores", "wrong-dim", lambda w: w.abs().sum(dim=(0, 2, 3)), "one score per output filter"),
    ("filter_l1_scores", "mean", lambda w: w.abs().mean(dim=(1, 2, 3)), "that is the mean |W|"),
    ("filter_l1_scores", "3x3-only", lambda w: w.abs().reshape(len(w), -1, 9).sum(dim=(1, 2)),
     "(on a 1x1 conv weight (3, 4, 1, 1))"),
    ("filter_l1_scores", "in-place", lambda w: w.abs_().sum(dim=(1, 2, 3)), "your function changed its input w"),
    ("fc1_kept_columns", "count", lambda kept, spatial: kept * spatial, "columns (9 per kept channel)"),
    ("fc1_kept_columns", "off-by-one",
     lambda kept, spatial: (kept[:, None] * spatial + torch.arange(1, spatial + 1)).flatten(), "owns columns"),
    ("fc1_kept_columns", "order",
     lambda kept, spatial: (kept[None, :] * spatial + torch.arange(spatial)[:, None]).flatten(), "wrong order"),
    ("fc1_kept_columns", "float", lambda kept, spatial: torch.cat(
        [torch.linspace(c * spatial, c * spatial + spatial - 1, spatial) for c in kept.tolist()]),
     "return integer indices"),
    ("fc1_kept_columns", "in-place", _fc1_scale_in_place, "your function changed its input kept"),
    ("wanda_scores", "magnitude", lambda w, n: w.abs(), "magnitude"),
    ("wanda_scores", "signed", lambda w, n: (w.reshape(len(w), -1) * n).reshape(w.shape), "non-negative"),
    ("wanda_scores", "linear-only", lambda w, n: w.abs() * n, "raised RuntimeError"),
    ("wanda_scores", "rows", lambda w, n: (w.reshape(len(w), -1).abs() * n[:, None]).reshape(w.shape),
     "the norm belongs to input COLUMN j"),
    ("wanda_scores", "in-place", _wanda_in_place, "your function changed its input w"),
    ("im2col_input_norms", "no-sqrt", lambda x, k, p: F.unfold(x, k, padding=p).pow(2).sum(dim=(0, 2)) / len(x),
     "square root"),
    ("im2col_input_norms", "per-position", lambda x, k, p: F.unfold(x, k, padding=p).pow(2).mean(dim=(0, 2)).sqrt(),
     "patch positions"),
    ("im2col_input_norms", "channels", lambda x, k, p: x.pow(2).sum(dim=(0, 2, 3)).div(len(x)).sqrt(),
     "one norm per weight column"),
    ("im2col_input_norms", "no-mean", lambda x, k, p: F.unfold(x, k, padding=p).pow(2).sum(dim=(0, 2)).sqrt(),
     "average over the 2 images"),
    ("im2col_input_norms", "k=3-only", lambda x, k, p: F.unfold(x, 3, padding=p).pow(2).sum(dim=(0, 2)).div(
        len(x)).sqrt(), "C_in·k·k = 3·1"),
    ("im2col_input_norms", "in-place", _im2col_square_in_place, "your function changed its input x"),
    ("row_mask", "per-layer", unstructured.layer_mask, "each row must keep exactly"),
    ("row_mask", "highest", lambda scores, s: unstructured.row_mask(-scores, s), "LOWEST"),
    ("row_mask", "round", _row_mask_round, "you removed round(s·fan_in) = 5; remove floor(s·fan_in)"),
    ("row_mask", "ties-threshold", _row_mask_threshold, "scores tie at 0.5, right at the cut"),
    ("row_mask", "ties-order", _row_mask_keep_highest_first, "remove the EARLIER position first"),
    ("row_mask", "in-place", _row_mask_fill_in_place, "your function changed its input scores"),
    ("row_mask", "s=0", _row_mask_drop_last_k, "floor(s·fan_in) = 0 removes nothing"),
    ("nm_mask", "per-row", lambda scores, n, m: unstructured.row_mask(scores, 1 - n / m), "must keep exactly 2"),
    ("nm_mask", "lowest", lambda scores, n, m: unstructured.nm_mask(-scores, n, m), "HIGHEST"),
    ("nm_mask", "2:4-only", _nm_remove_n, "n is how many to KEEP of every m"),
    ("nm_mask", "ties-threshold", _nm_threshold, "scores tie at 0, right at the cut"),
    ("nm_mask", "ties-order", _nm_keep_highest_first, "remove the EARLIER position first"),
    ("nm_mask", "in-place", _nm_mark_in_place, "your function changed its input scores"),
    ("gamma_subgradient", "L2", lambda g, gamma, s: g + s * gamma, "L2 penalty"),
    ("gamma_subgradient", "no-grad", lambda g, gamma, s: s * torch.sign(gamma), "ADDED"),
    ("gamma_subgradient", "abs", lambda g, gamma, s: g + s * gamma.abs(), "s·sign(γ)"),
    ("gamma_subgradient", "sign(0)=1", lambda g, gamma, s: g + s * torch.where(gamma >= 0, 1.0, -1.0),
     "at γ = 0 the subgradient adds nothing"),
    ("gamma_subgradient", "0/0", lambda g, gamma, s: g + s * gamma / gamma.abs(), "got nan"),
    ("gamma_subgradient", "in-place", lambda g, gamma, s: g.add_(s * torch.sign(gamma)),
     "your function changed its input g"),
    ("global_threshold", "signed", _global_threshold_signed, "absolute values |γ|"),
    ("global_threshold", "no-midpoint", _global_threshold_no_midpoint, "midpoint"),
    ("global_threshold", "per-layer", _global_threshold_per_layer, "lie below your threshold"),
    ("global_threshold", "floor", _global_threshold_floor, "not the floor 5"),
    ("global_threshold", "off-by-one", _global_threshold_next_pair, "off by one"),
    ("global_threshold", "ratio=0", _global_threshold_no_zero_case, "nothing is removed, so return 0.0"),
    ("global_threshold", "in-place", _global_threshold_abs_in_place, "your function changed its input gammas"),
    ("agp_sparsity", "linear", _agp_linear, "linear schedule"),
    ("agp_sparsity", "T+1", _agp_off_by_one, "must reach the final sparsity at step T, got 0.8"),
    ("agp_sparsity", "not-held", _agp_not_held, "stay at the final"),
    ("agp_sparsity", "t<0", _agp_no_lower_clip, "before the start (step -3) the sparsity stays at the initial"),
    ("agp_sparsity", "T=0", _agp_divides_by_T, "T = 0 means the final sparsity at once: don't divide by T"),
    ("global_magnitude_masks", "per-layer",
     lambda ws, s: {n: unstructured.layer_mask(w.abs(), s) for n, w in ws.items()}, "per-layer ranking"),
    ("global_magnitude_masks", "signed", lambda ws, s: unstructured.global_masks(ws, s), "rank by |w|"),
    ("global_magnitude_masks", "round", _global_round, "you removed round(s·total)"),
    ("global_magnitude_masks", "ties-threshold", _global_kth_threshold, "scores tie at 0, right at the cut"),
    ("global_magnitude_masks", "ties-order", _global_keep_highest_first, "remove the EARLIER position first"),
    ("global_magnitude_masks", "in-place", _global_abs_in_place, "your function changed its input weights"),
    ("symmetric_scales", "one-scale", lambda w, bits: w.abs().max() / (2 ** (bits - 1) - 1),
     "one scale per output channel"),
    ("symmetric_scales", "asymmetric", _scales_asymmetric, "(max - min) / (2^b - 1) is the asymmetric scale"),
    ("symmetric_scales", "2^(b-1)", lambda w, bits: w.reshape(len(w), -1).abs().amax(1) / 2 ** (bits - 1),
     "stops at 2^(b-1) - 1 = 7, not 2^(b-1)"),
    ("symmetric_scales", "unsigned", lambda w, bits: w.reshape(len(w), -1).abs().amax(1) / (2 ** bits - 1),
     "2^b - 1 = 15 counts the unsigned levels"),
    ("symmetric_scales", "signed-max", lambda w, bits: w.reshape(len(w), -1).amax(1) / (2 ** (bits - 1) - 1),
     "the largest MAGNITUDE"),
    ("symmetric_scales", "zero-row", _scales_zero_guard, "an all-zero row has max|w| = 0, so its scale is 0"),
    ("symmetric_scales", "in-place", lambda w, bits: w.abs_().reshape(len(w), -1).amax(1) / (2 ** (bits - 1) - 1),
     "your function changed its input w"),
    ("fake_quantize", "no-clamp", _fq_no_clamp, "beyond its row's largest level ±7·s_c = ±0.7"),
    ("fake_quantize", "floor", _fq_floor, "NEAREST"),
    ("fake_quantize", "codes", _fq_codes, "integer codes"),
    ("fake_quantize", "one-range", _fq_clamp_to_largest_scale,
     "entry (0, 0, 0, 0) is 0.5, beyond its row's largest level ±1·s_c = ±0.3"),
    ("fake_quantize", "ties", _fq_half_up, "halfway between two codes: torch.round rounds halves to the EVEN"),
    ("fake_quantize", "off-grid", _fq_clip_only, "off the grid of levels"),
    ("fake_quantize", "range[-8,7]", _fq_asymmetric_range, "is -0.8, beyond its row's largest level ±7·s_c"),
    ("fake_quantize", "in-place", _fq_in_place, "your function changed its input w"),
    ("ste_round", "round", torch.round, "got 0 for every x: torch.round's own gradient is 0"),
    ("ste_round", "detached", lambda x: torch.round(x).detach(), "no gradient flows"),
    ("ste_round", "identity", lambda x: x * 1.0, "forward value must be round(x)"),
    ("ste_round", "clipped", _ste_clipped, "got 0 at x = -1.6 (entry 2)"),
    ("ste_round", "no-detach", lambda x: x + (torch.round(x) - x), "got 0 for every x"),
    ("ste_round", "ties", _ste_half_up, "x = 2.5 lies exactly halfway: torch.round rounds halves to the EVEN"),
    ("ste_round", "in-place", _ste_rounds_x_in_place, "your function changed its input x"),
    ("pack_bits", "byte-each", lambda values, bits: np.asarray(values, np.uint8).tobytes(), "need ceil"),
    ("pack_bits", "lsb", _pack_lsb_first, "least-significant bit first"),
    ("pack_bits", "pad-at-multiple", _pack_always_pads, "n·bits is a multiple of 8, so no padding byte"),
    ("pack_bits", "in-place", _pack_shifting_in_place, "your function changed its input values"),
    ("relative_gaps", "from-0", _gaps_from_zero, "counts from index -1"),
    ("relative_gaps", "no-fillers", _gaps_without_fillers, "filler entries"),
    ("relative_gaps", "at-255", _gaps_fill_at_equal, "a gap of exactly 255 = 1·max_gap is 1 entry of 255 and no 0"),
    ("relative_gaps", "divmod", _gaps_divmod, "a gap of exactly 255 = 1·max_gap is 1 entry of 255"),
    ("relative_gaps", "empty", _gaps_first_apart, "no non-zeros give no gaps: return an empty array"),
    ("relative_gaps", "in-place", _gaps_shift_in_place, "your function changed its input pos"),
]


def _every_wrong_answer() -> list[tuple]:
    """This file's WRONG table and those of the per-notebook files (tests/test_exercises_nb*.py)."""
    rows = list(WRONG)
    for path in sorted(Path(__file__).parent.glob("test_exercises_nb*.py")):
        spec = importlib.util.spec_from_file_location(f"_wrong_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        rows += getattr(module, "WRONG", [])
    return rows


ALL_WRONG = _every_wrong_answer()  # every table of wrong answers, this file's and the per-notebook ones
NUMERIC_INPUTS = {"agp_sparsity"}  # exercises whose inputs are numbers: nothing to change in place


def test_every_exercise_has_three_wrong_answers_and_one_that_mutates_its_input():
    rows = ALL_WRONG
    counts = Counter(name for name, *_ in rows)
    assert set(counts) == set(ex.REGISTRY) and min(counts.values()) >= 3, counts
    mutating = {name for name, category, *_ in rows if category == "in-place"}
    assert mutating >= set(ex.REGISTRY) - NUMERIC_INPUTS, set(ex.REGISTRY) - mutating - NUMERIC_INPUTS


# These four checkers compare an answer with the very helper that is their reference, so "the
# reference passes" would hold whatever the helper computed: their tests further down check the
# helper against hand-computed values and grade an independent implementation instead.
SELF_REFERENCED = {"accuracy_from_logits", "fc1_kept_columns", "gamma_subgradient", "pack_bits"}


@pytest.mark.parametrize("name", sorted(set(ex.REGISTRY) - SELF_REFERENCED))
def test_reference_passes(name, capsys):
    assert ex.check(name, ex.REGISTRY[name].reference) is True
    assert capsys.readouterr().out.startswith(f"✔ {name}: ")


@pytest.mark.parametrize("name, fn, words", [pytest.param(name, fn, words, id=f"{name}-{category}")
                                             for name, category, fn, words in ALL_WRONG])
def test_wrong_answer_fails_with_its_hint(name, fn, words, capsys):
    assert ex.check(name, fn) is False
    out = capsys.readouterr().out
    assert out.startswith(f"✘ {name}: ") and words in out, out


def test_self_referenced_checkers_compare_with_their_reference():
    # should one of them get an independent reference, move it back to test_reference_passes
    assert all(ex.REGISTRY[name].reference in ex.REGISTRY[name].shows for name in SELF_REFERENCED)


def test_accuracy_on_a_hand_computed_case(capsys):
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.5, 0.2, 0.9], [1.0, 0.0, 4.0]])
    labels = torch.tensor([0, 2, 2, 1])  # argmax per row 0, 1, 2, 2: rows 0 and 2 are right
    assert training.accuracy_from_logits(logits, labels) == 50.0

    def by_hand(lg, lb):
        rows = lg.tolist()
        return 100.0 * sum(row.index(max(row)) == label for row, label in zip(rows, lb.tolist())) / len(rows)

    assert ex.check("accuracy_from_logits", by_hand) is True
    capsys.readouterr()
    assert ex.check("accuracy_from_logits", lambda lg, lb: by_hand(lg, lb) + 100.0 / len(lb)) is False
    assert "expected 50.00% (rows whose argmax" in capsys.readouterr().out


def test_fc1_columns_on_hand_computed_cases(capsys):
    assert structured.fc1_columns(torch.tensor([0, 2]), 9).tolist() == [*range(0, 9), *range(18, 27)]
    assert structured.fc1_columns(torch.tensor([1, 3, 4]), 4).tolist() == [4, 5, 6, 7, 12, 13, 14, 15, 16, 17, 18, 19]

    def by_hand(kept, spatial):
        return torch.tensor([c * spatial + i for c in kept.tolist() for i in range(spatial)])

    assert ex.check("fc1_kept_columns", by_hand) is True
    capsys.readouterr()
    position_major = lambda kept, spatial: by_hand(kept, spatial).reshape(len(kept), spatial).T.flatten()
    assert ex.check("fc1_kept_columns", position_major) is False
    assert "right columns, wrong order" in capsys.readouterr().out


def test_gamma_subgradient_on_a_hand_computed_case(capsys):
    grad, gamma = torch.tensor([0.1, -0.2, 0.3, 0.0]), torch.tensor([0.5, -2.0, 0.0, 1.5])
    assert torch.allclose(slimming.gamma_subgradient(grad, gamma, 0.01), torch.tensor([0.11, -0.21, 0.3, 0.01]))

    def by_hand(g, gm, s):
        return torch.tensor([gi + s * ((gmi > 0) - (gmi < 0)) for gi, gmi in zip(g.tolist(), gm.tolist())])

    assert ex.check("gamma_subgradient", by_hand) is True
    capsys.readouterr()
    zero_pushed_up = lambda g, gm, s: g + s * torch.where(gm >= 0, 1.0, -1.0)  # sign(0) taken as +1
    assert ex.check("gamma_subgradient", zero_pushed_up) is False
    assert "at γ = 0 the subgradient adds nothing (sign(0) = 0, use torch.sign): channel 2 expected 0.3, got 0.31" \
        in capsys.readouterr().out


def _pack_by_hand(values, bits, pad="0"):
    """The bits of every value, MSB first, in one string; the last byte filled up with ``pad``."""
    stream = "".join(format(int(v), f"0{bits}b") for v in values)
    stream += pad * (-len(stream) % 8)
    return bytes(int(stream[i:i + 8], 2) for i in range(0, len(stream), 8))


def test_pack_bits_on_hand_computed_cases(capsys):
    assert packed.pack_bits(np.array([1, 2, 3]), 2) == bytes([0b01101100])  # 01 10 11 + 00 padding
    assert packed.pack_bits(np.array([5, 0, 7, 1, 6]), 3) == bytes([0b10100011, 0b10011100])

    assert ex.check("pack_bits", _pack_by_hand) is True
    capsys.readouterr()
    assert ex.check("pack_bits", lambda values, bits: _pack_by_hand(values, bits, pad="1")) is False
    assert "[1, 2, 3] at 2 bits must give 6c…, got 6f…" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(ex.REGISTRY))
def test_stub_reports_not_implemented(name, capsys):
    assert ex.check(name, _stub) is False
    assert "not implemented yet" in capsys.readouterr().out


def test_learner_bugs_become_hints_not_exceptions(capsys):
    assert ex.check("wanda_scores", lambda w, n: 1 / 0) is False
    assert "raised ZeroDivisionError: division by zero" in capsys.readouterr().out
    assert ex.check("row_mask", lambda scores, s: None) is False
    assert "forget `return`" in capsys.readouterr().out
    assert ex.check("pack_bits", "not a function") is False
    assert "pass your function itself" in capsys.readouterr().out


def test_a_changed_input_is_named_and_the_callers_data_stays_intact(capsys):
    scores = torch.tensor([[0.3, 0.1, 0.2, 0.4]])
    with pytest.raises(ex.Hint, match=r"^your function changed its input scores \(on a case\): leave the caller's"):
        ex.core._call(_row_mask_fill_in_place, scores, 0.5, case="a case")
    assert torch.equal(scores, torch.tensor([[0.3, 0.1, 0.2, 0.4]]))  # the learner only got a copy
    nested = {"a": [np.array([1.0, np.nan])], "b": torch.tensor([np.nan])}
    assert ex.core._call(lambda d: len(d), nested) == 2  # NaN equals NaN: reading is not changing

    def pops(weights, s):
        weights.pop("b")  # the dict itself changed: a layer gone
        return {}

    with pytest.raises(ex.Hint, match="changed its input weights"):
        ex.core._call(pops, nested, 0.5)
    ex.check("relative_gaps", _gaps_shift_in_place)
    assert capsys.readouterr().out == (
        "✘ relative_gaps: your function changed its input pos (on positions [0, 3, 4]): leave the caller's data as "
        "it was — work on a copy (.clone() / .copy()) or out of place (w.abs(), not w.abs_(); x = x + 1, not x += 1)\n")


def test_hints_that_contradicted_themselves_now_say_what_differs(capsys):
    # before: "must be 1 (straight-through), got 1": the first entry's gradient, 1, printed for another's 0
    ex.check("ste_round", _ste_clipped)
    out = capsys.readouterr().out
    assert "got 0 at x = -1.6 (entry 2)" in out and "got 1 " not in out
    # before: "got 0.5 where the largest level is 0.5": the largest value and level of two different rows
    ex.check("fake_quantize", _fq_clamp_to_largest_scale)
    out = capsys.readouterr().out
    assert "entry (0, 0, 0, 0) is 0.5, beyond its row's largest level ±1·s_c = ±0.3 (s_c = 0.3)" in out


def test_precise_row_hint(capsys):
    # layer-wise quota: rows keep different counts; the hint names the row and the quota
    ex.check("row_mask", unstructured.layer_mask)
    out = capsys.readouterr().out
    assert "row " in out and "keeps" in out and "each row must keep exactly 5" in out


def test_solution_and_show_print_real_sources(capsys):
    assert ex.solution("wanda_scores") == inspect.getsource(ex.wanda_reference)
    assert "def wanda_reference" in capsys.readouterr().out
    shown = ex.show("wanda_scores")
    assert inspect.getsource(unstructured.wanda_scores) in shown and "def wanda_scores" in capsys.readouterr().out
    assert ex.show(structured.fc1_columns).endswith(inspect.getsource(structured.fc1_columns))
    for exercise in ex.REGISTRY.values():  # what a notebook shows is the code helpers/ runs
        assert exercise.shows and all(f.__module__.startswith("helpers.")
                                      and not f.__module__.startswith("helpers.exercises")
                                      for f in exercise.shows), exercise.name


def test_each_exercise_lives_in_its_notebooks_module():
    for exercise in ex.REGISTRY.values():
        module = exercise.checker.__module__
        assert module.startswith(f"helpers.exercises.nb{exercise.notebook}_"), (exercise.name, module)
        if exercise.reference.__module__.startswith("helpers.exercises"):
            assert exercise.reference.__module__ == module, exercise.name


def test_list_prints_one_line_per_exercise_with_its_notebook(capsys):
    ex.main(["--list"])  # what `python -m helpers.exercises --list` runs
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(ex.REGISTRY) >= 13
    for line in out:
        notebook, name = line.split()[:2]
        assert ex.REGISTRY[name].notebook == notebook
    counts = Counter(line[:2] for line in out)
    assert counts["01"] >= 1 and all(counts[f"0{n}"] >= 2 for n in range(2, 8)), counts


def test_python_dash_m_lists_the_exercises():
    run = subprocess.run([sys.executable, "-m", "helpers.exercises", "--list"], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "\n".join(ex.listing()) + "\n"


# --------------------------------------------------------------------------- references = helpers
@pytest.fixture(scope="module")
def model():
    return ex.course_model()[0]


def test_short_references_equal_the_helpers_on_the_course_model(model):
    x = ex._images()
    assert torch.allclose(ex.normalize_reference(x), model.normalize(x))
    for conv, l1 in zip(model.conv_layers(), structured.conv_filter_l1(model)):
        assert torch.allclose(ex.filter_l1_reference(conv.weight.detach()), l1)
    for layer in unstructured.prunable_layers(model).values():
        w = layer.weight.detach()
        assert torch.allclose(ex.symmetric_scales_reference(w, 4), fake.weight_scales(w, 4, clip="max"))


def test_wanda_and_im2col_references_equal_the_helpers(model):
    layers = unstructured.select_layers(model, "all")
    norms = unstructured.input_norms(model, layers, ex._images())
    inputs = {}

    def keep_input(name):
        def hook(module, args, output):
            inputs[name] = args[0]
        return hook

    hooks = [m.register_forward_hook(keep_input(n)) for n, m in layers.items()]
    try:
        with torch.no_grad():
            model(ex._images())
    finally:
        for h in hooks:
            h.remove()
    for name, layer in layers.items():
        assert torch.allclose(ex.wanda_reference(layer.weight.detach(), norms[name]),
                              unstructured.wanda_scores(layer, norms[name]))
        if isinstance(layer, torch.nn.Conv2d):
            assert torch.allclose(ex.im2col_norms_reference(inputs[name], 3, 1), norms[name], rtol=1e-4)


def test_global_magnitude_reference_equals_global_masks(model):
    weights = {n: m.weight.detach() for n, m in unstructured.select_layers(
        model, ["features.block2.conv", "features.block3.conv", "classifier.fc2"]).items()}
    ref = ex.global_magnitude_reference(weights, 0.9)
    masks = unstructured.global_masks({n: w.abs() for n, w in weights.items()}, 0.9)
    assert all(torch.equal(ref[n], masks[n]) for n in weights)


def test_fake_quantize_and_ste_references_equal_the_course_quantizer(model):
    for layer in (model.features.block2.conv, model.classifier.fc2, model.classifier.fc3):
        w = layer.weight.detach()
        scales = fake.weight_scales(w, 4, clip="mse")
        s = scales.reshape(-1, *[1] * (w.ndim - 1))
        ties = ~ex._tie_free(w, s)
        same = ex.fake_quantize_reference(w, scales, 4) == fake.fake_quantize_weight(w, scales, 4)
        assert bool(same[~ties].all()) and ties.float().mean() < 1e-3
    w = model.classifier.fc2.weight.detach().clone().requires_grad_(True)
    scales = fake.weight_scales(w, 4, clip="max")  # nothing clipped: the STE gradient is 1 everywhere
    grad_course = torch.autograd.grad(fake.fake_quantize_weight(w, scales, 4).sum(), w)[0]
    grad_ref = torch.autograd.grad((ex.ste_round_reference(w / scales[:, None]) * scales[:, None]).sum(), w)[0]
    assert torch.allclose(grad_course, torch.ones_like(w)) and torch.allclose(grad_ref, grad_course)


def test_relative_gaps_reference_equals_the_sparse_format(model):
    for s in (0.5, 0.99, 0.999):  # at 0.999 the gaps run to the thousands: filler entries
        positions = np.flatnonzero(unstructured.layer_mask(model.classifier.fc2.weight.detach().abs(), s).numpy())
        assert np.array_equal(ex.relative_gaps_reference(positions), sparse._relative_gaps(positions)[0])
    assert ex.relative_gaps_reference(np.array([254, 255 + 255, 1200])).tolist() == [255, 255, 1, 255, 255, 180]


def test_gamma_hooks_use_gamma_subgradient(model):
    import copy

    x = ex._images()[:2]
    m = copy.deepcopy(model)
    with slimming.gamma_l1_penalty(m, 0.1):
        m(x).sum().backward()
    bn = m.features.block1.bn
    plain = copy.deepcopy(model)
    plain(x).sum().backward()
    expected = slimming.gamma_subgradient(plain.features.block1.bn.weight.grad, bn.weight.detach(), 0.1)
    assert torch.allclose(bn.weight.grad, expected, atol=1e-6)
