"""Exercises a learner writes in the notebooks, and the checkers that grade them.

Every exercise is the core of one method (Wanda's scores, the AGP schedule, a quantizer, ...).
In a notebook::

    from helpers.exercises import check, show, solution

    show("wanda_scores")                    # the implementation in helpers/ the notebook runs
    def wanda_scores(weight, input_norms):
        raise NotImplementedError           # the learner's code
    check("wanda_scores", wanda_scores)     # ✔, or a hint naming the property that failed
    solution("wanda_scores")                # the reference, one call away

``check`` runs the learner's function on small fixed cases and on a layer of the course model
(``weights/01_baseline.pt`` when present, else a seeded untrained model) and compares it with the
reference. It never raises for a learner's bug: exceptions become hints, and a stub that raises
``NotImplementedError`` reports "not implemented yet".

``python -m helpers.exercises --list`` prints one line per exercise, beginning with its notebook.
"""
from __future__ import annotations

import argparse
import functools
import inspect
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from .checkpoints import load_model
from .models import FASHION_MNIST_MEAN, FASHION_MNIST_STD, build_model
from .paths import REPO_ROOT
from .pruning import schedules, slimming, structured, unstructured
from .quantization import fake
from .storage import packed, sparse
from . import models, training

BASELINE_WEIGHTS = REPO_ROOT / "weights" / "01_baseline.pt"


# ================================================================================ machinery
class Hint(Exception):
    """A failed property of the learner's answer; the message says which."""


class NotImplementedYet(Exception):
    """The learner's function still raises NotImplementedError."""


@dataclass(frozen=True)
class Exercise:
    name: str
    notebook: str                      # "03"
    statement: str                     # one line: what to compute
    reference: Callable                # the reference solution (helpers' own where it fits)
    checker: Callable[[Callable], str]  # raises Hint; returns what was checked
    shows: tuple[Callable, ...]        # the helpers implementation(s) the notebook displays
    hints: tuple[str, ...] = field(default_factory=tuple)


REGISTRY: dict[str, Exercise] = {}


def exercise(name: str, notebook: str, statement: str, reference: Callable, shows: tuple, hints=()):
    """Register the decorated checker as the exercise ``name``."""
    def register(checker):
        REGISTRY[name] = Exercise(name, notebook, statement, reference, checker, tuple(shows), tuple(hints))
        return checker
    return register


def _get(name: str) -> Exercise:
    if name not in REGISTRY:
        raise KeyError(f"no exercise {name!r}; the exercises are {sorted(REGISTRY)}")
    return REGISTRY[name]


def _call(fn: Callable, *args, case: str = ""):
    """``fn(*args)`` on copies of the arguments; a learner's exception becomes a Hint."""
    args = tuple(a.clone() if isinstance(a, Tensor) else
                 {k: v.clone() for k, v in a.items()} if isinstance(a, dict) else
                 [v.clone() for v in a] if isinstance(a, list) and a and isinstance(a[0], Tensor) else
                 a.copy() if isinstance(a, np.ndarray) else a for a in args)
    try:
        return fn(*args)
    except NotImplementedError:
        raise NotImplementedYet from None
    except Exception as exc:  # the learner's bug, reported, never raised
        raise Hint(f"your function raised {type(exc).__name__}: {exc}" + (f" (on {case})" if case else "")) from None


def _tensor(out, what: str = "the result") -> Tensor:
    """The learner's output as a CPU tensor (from a tensor, array, list or number)."""
    if out is None:
        raise Hint(f"{what} is None: did you forget `return`?")
    try:
        if isinstance(out, Tensor):
            return out.detach().cpu()
        return torch.as_tensor(np.asarray(out))
    except Exception:
        raise Hint(f"{what} must be a tensor, got {type(out).__name__}") from None


def _shape(out: Tensor, shape, what: str = "the result", why: str = "") -> None:
    if tuple(out.shape) != tuple(shape):
        raise Hint(f"{what} must have shape {tuple(shape)}{why}, got {tuple(out.shape)}")


def _close(out: Tensor, ref: Tensor, rtol=1e-5, atol=1e-6) -> bool:
    return out.shape == ref.shape and torch.allclose(out.double(), ref.double(), rtol=rtol, atol=atol)


def _first_diff(out: Tensor, ref: Tensor, rtol=1e-5, atol=1e-6) -> str:
    bad = ~torch.isclose(out.double(), ref.double(), rtol=rtol, atol=atol)
    idx = tuple(int(i) for i in torch.nonzero(bad)[0]) if bad.any() else ()
    where = f"at index {idx}" if idx else "everywhere"
    return f"{int(bad.sum())} of {ref.numel()} entries differ; {where} expected {ref[idx].item():.6g}, got {out[idx].item():.6g}"


def _mask(out, shape, what="the mask") -> Tensor:
    out = _tensor(out, what)
    _shape(out, shape, what, " (one entry per weight)")
    if out.dtype != torch.bool:
        if not ((out == 0) | (out == 1)).all():
            raise Hint(f"{what} must be True (keep) / False (remove), got values other than 0 and 1")
        out = out.bool()
    return out


@functools.lru_cache(maxsize=1)
def course_model() -> tuple[torch.nn.Module, str]:
    """The trained baseline (``weights/01_baseline.pt``) when present, else a seeded untrained CNN."""
    if BASELINE_WEIGHTS.exists():
        return load_model(BASELINE_WEIGHTS).eval(), "the trained course model"
    torch.manual_seed(0)
    return build_model().eval(), "the course model (seeded, untrained: no weights/01_baseline.pt)"


@functools.lru_cache(maxsize=1)
def _images() -> Tensor:
    """16 fixed pseudo-images in [0, 1] for activations of the course model."""
    return torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(7))


def _weight(layer: str) -> Tensor:
    return course_model()[0].get_submodule(layer).weight.detach().clone()


def _rand(*shape, seed: int) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ================================================================================ public API
def check(name: str, fn: Callable) -> bool:
    """Grade the learner's ``fn`` for exercise ``name``: prints ✔ or a precise hint; True if right."""
    ex = _get(name)
    if not callable(fn):
        print(f"✘ {name}: pass your function itself, e.g. check({name!r}, {name}), not {type(fn).__name__}")
        return False
    try:
        summary = ex.checker(fn)
    except NotImplementedYet:
        print(f"… {name}: not implemented yet — replace `raise NotImplementedError` with your code "
              f"(solution({name!r}) reveals the reference)")
        return False
    except Hint as hint:
        print(f"✘ {name}: {hint}")
        return False
    except Exception as exc:  # an answer so odd that comparing it failed: still a hint, not a crash
        print(f"✘ {name}: could not compare your result with the reference ({type(exc).__name__}: {exc})")
        return False
    print(f"✔ {name}: {summary}")
    return True


def solution(name: str) -> str:
    """Print and return the reference solution's source."""
    source = inspect.getsource(_get(name).reference)
    print(source)
    return source


def show(name_or_function) -> str:
    """Print and return the source of the helpers implementation a notebook displays.

    ``name_or_function``: an exercise name (its implementation(s) in ``helpers/``) or a function.
    """
    functions = (name_or_function,) if callable(name_or_function) else _get(name_or_function).shows
    parts = [f"# {f.__module__}.{f.__qualname__}\n{inspect.getsource(f)}" for f in functions]
    text = "\n".join(parts)
    print(text)
    return text


def listing() -> list[str]:
    """One line per exercise: notebook, name, statement."""
    width = max(len(n) for n in REGISTRY)
    return [f"{ex.notebook}  {ex.name:<{width}}  {ex.statement}"
            for ex in sorted(REGISTRY.values(), key=lambda e: e.notebook)]


# ================================================================================ 01 baseline
def normalize_reference(images: Tensor) -> Tensor:
    return (images - FASHION_MNIST_MEAN) / FASHION_MNIST_STD


@exercise("accuracy_from_logits", "01", "percent of rows whose argmax over the classes is the label",
          training.accuracy_from_logits, (training.accuracy_from_logits, training.evaluate),
          hints=("logits: (N, 10) float, labels: (N,) int64; return a Python float in [0, 100]",))
def _check_accuracy(fn):
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.5, 0.2, 0.9], [1.0, 0.0, 4.0]])
    labels = torch.tensor([0, 2, 2, 1])
    cases = [(logits, labels, "4 rows, 3 classes")]
    model, source = course_model()
    with torch.no_grad():
        model_logits = model(_images())
    cases.append((model_logits, torch.arange(16) % 10, f"logits of {source} on 16 images"))
    for lg, lb, case in cases:
        ref = training.accuracy_from_logits(lg, lb)
        out = _call(fn, lg, lb, case=case)
        try:
            value = float(_tensor(out).reshape(()).item())
        except Exception:
            raise Hint(f"return one number (the accuracy in percent), got {out!r} on {case}") from None
        if math.isclose(value, ref / 100, abs_tol=1e-6) and ref:
            raise Hint(f"return a percentage in [0, 100]: expected {ref:.2f}, got the fraction {value:.4f} on {case}")
        if not math.isclose(value, ref, abs_tol=1e-4):
            raise Hint(f"expected {ref:.2f}% (rows whose argmax over the classes, dim 1, equals the label), "
                       f"got {value:.4g} on {case}")
    return f"matches on a 4-row case and on {source}"


@exercise("normalize", "01", "(x - 0.2860) / 0.3530: what the model does first to every image",
          normalize_reference, (models.Normalize,),
          hints=("images: (N, 1, 28, 28) in [0, 1]; mean 0.2860 and std 0.3530 of Fashion-MNIST",))
def _check_normalize(fn):
    x = torch.tensor([[[[0.0, 0.2860], [1.0, 0.5]]]])
    out = _tensor(_call(fn, x, case="a 2x2 image"))
    _shape(out, x.shape, why=" (the image's shape)")
    ref = normalize_reference(x)
    if not _close(out, ref, atol=1e-4):
        if _close(out, x - FASHION_MNIST_MEAN, atol=1e-4):
            raise Hint("you subtracted the mean; also divide by the std 0.3530")
        if _close(out, x * FASHION_MNIST_STD + FASHION_MNIST_MEAN, atol=1e-4):
            raise Hint("that is the inverse (x·std + mean); normalising is (x - mean) / std")
        raise Hint(f"pixel 1.0 must become (1 - 0.2860) / 0.3530 = {ref[0, 0, 1, 0]:.4f}, got {out[0, 0, 1, 0]:.4f}")
    model, source = course_model()
    x = _images()
    out = _tensor(_call(fn, x, case="16 images"))
    with torch.no_grad():
        if not _close(out, model.normalize(x), atol=1e-5):
            raise Hint(f"differs from {source}'s normalize layer: {_first_diff(out, model.normalize(x), atol=1e-5)}")
    return f"matches the normalize layer of {source}"


# ================================================================================ 02 L1 filters
def filter_l1_reference(weight: Tensor) -> Tensor:
    return weight.abs().sum(dim=(1, 2, 3))


@exercise("filter_l1_scores", "02", "sum |W| over each conv filter: one L1 score per output channel",
          filter_l1_reference, (structured.conv_filter_l1, structured.keep_top),
          hints=("weight: (C_out, C_in, k, k); return (C_out,)", "s_j = Σ_{c,u,v} |W[j, c, u, v]|"))
def _check_filter_l1(fn):
    w = _rand(5, 3, 3, 3, seed=2)
    model, source = course_model()
    cases = [(w, "a (5, 3, 3, 3) weight"), (_weight("features.block2.conv"), f"features.block2.conv of {source}")]
    for weight, case in cases:
        out = _tensor(_call(fn, weight, case=case))
        ref = filter_l1_reference(weight)
        _shape(out, ref.shape, why=" (one score per output filter, dim 0)")
        if _close(out, ref, rtol=1e-4):
            continue
        if _close(out, weight.sum(dim=(1, 2, 3)), rtol=1e-4):
            raise Hint("the scores can be negative: sum the absolute values |W| (L1 norm), not W")
        if _close(out, weight.flatten(1).norm(dim=1), rtol=1e-4):
            raise Hint("that is the L2 norm; the L1 score is Σ|W| over the filter")
        raise Hint(f"on {case}: {_first_diff(out, ref, rtol=1e-4)}")
    return f"matches on a small weight and on features.block2.conv of {source}"


@exercise("fc1_kept_columns", "02", "fc1 input columns that survive when only some last-conv channels are kept",
          structured.fc1_columns, (structured.fc1_columns, structured._copy_classifier),
          hints=("kept_channels: sorted int64 (k,); spatial = H·W of the last feature map (3·3 = 9)",
                 "flatten puts channel c's H·W values at columns c·spatial … c·spatial + spatial - 1"))
def _check_fc1_columns(fn):
    model, source = course_model()
    kept = structured.keep_by_ratio(structured.conv_filter_l1(model)[-1], 0.5)
    cases = [(torch.tensor([0, 2]), 9, "kept channels [0, 2], spatial 9"),
             (torch.tensor([1, 3, 4]), 4, "kept channels [1, 3, 4], spatial 4"),
             (kept, model.config.feature_map_size ** 2, f"the half of block3's channels L1 keeps in {source}")]
    for channels, spatial, case in cases:
        ref = structured.fc1_columns(channels, spatial)
        out = _tensor(_call(fn, channels, spatial, case=case)).flatten()
        if out.numel() != ref.numel():
            raise Hint(f"expected {ref.numel()} columns ({spatial} per kept channel), got {out.numel()} on {case}")
        if torch.is_floating_point(out) or not torch.equal(out.long(), ref):
            if torch.equal(out.long().sort().values, ref):
                raise Hint(f"right columns, wrong order: list them channel by channel, ascending ({case})")
            raise Hint(f"on {case}: expected {ref[:12].tolist()}…, got {out[:12].tolist()}… — channel c "
                       f"owns columns c·{spatial} … c·{spatial}+{spatial - 1} (flatten of a (C, H, W) map)")
    return f"matches on two small cases and on block3 → fc1 of {source}"


# ================================================================================ 03 Wanda
def wanda_reference(weight: Tensor, input_norms: Tensor) -> Tensor:
    rows = weight.reshape(weight.shape[0], -1)          # (out, fan_in); conv: (C_out, C_in·k·k)
    return (rows.abs() * input_norms[None, :]).reshape(weight.shape)


def im2col_norms_reference(x: Tensor, kernel_size: int, padding: int) -> Tensor:
    patches = F.unfold(x, kernel_size, padding=padding)  # (N, C_in·k·k, positions)
    return patches.pow(2).sum(dim=(0, 2)).div(len(x)).sqrt()


@exercise("wanda_scores", "03", "|W| * ||X_j|| per weight (conv: weight viewed as (C_out, C_in·k·k))",
          wanda_reference, (unstructured.wanda_scores,),
          hints=("weight: (out, in) or (C_out, C_in, k, k); input_norms: (fan_in,); same shape as weight",))
def _check_wanda(fn):
    model, source = course_model()
    layer = "features.block2.conv"
    conv = model.get_submodule(layer)
    norms = unstructured.input_norms(model, {layer: conv}, _images())[layer]
    cases = [(_rand(4, 6, seed=3), torch.linspace(0.5, 3.0, 6), "a (4, 6) Linear weight"),
             (_rand(3, 2, 3, 3, seed=4), torch.linspace(0.1, 2.0, 18), "a (3, 2, 3, 3) conv weight"),
             (_weight(layer), norms, f"{layer} of {source}")]
    for weight, n, case in cases:
        ref = wanda_reference(weight, n)
        out = _tensor(_call(fn, weight, n, case=case))
        _shape(out, weight.shape, why=" (the weight's shape)")
        if _close(out, ref, rtol=1e-4):
            continue
        if _close(out, weight.abs(), rtol=1e-4):
            raise Hint(f"the scores are |W| alone (magnitude): multiply each weight by its input's norm ||X_j|| ({case})")
        if _close(out.abs(), ref, rtol=1e-4):
            raise Hint(f"scores must be non-negative: use |W|, not W ({case})")
        raise Hint(f"on {case}: {_first_diff(out, ref, rtol=1e-4)} — column j of weight.reshape(out, -1) "
                   "is multiplied by input_norms[j]")
    return f"matches on a Linear, a conv and {layer} of {source}"


@exercise("im2col_input_norms", "03", "sqrt(mean over images of Σ_positions x_j²) per row of the unfolded input",
          im2col_norms_reference, (unstructured.input_sq_sums, unstructured.unfold_conv_input),
          hints=("x: (N, C_in, H, W); F.unfold(x, k, padding=p) gives (N, C_in·k·k, positions)",
                 "sum the squares over images and positions, divide by N (images), take the square root"))
def _check_im2col(fn):
    model, source = course_model()
    layer = "features.block2.conv"
    with torch.no_grad():
        x = model.features.block1(model.normalize(_images()))
    cases = [(_rand(2, 1, 4, 4, seed=5), 3, 1, "2 images 1x4x4, k=3, padding 1"),
             (_rand(3, 2, 5, 5, seed=6), 3, 0, "3 images 2x5x5, k=3, padding 0"),
             (x, 3, 1, f"the input of {layer} of {source} on 16 images")]
    for inp, k, p, case in cases:
        ref = im2col_norms_reference(inp, k, p)
        out = _tensor(_call(fn, inp, k, p, case=case))
        _shape(out, ref.shape, why=f" (one norm per weight column: C_in·k·k = {inp.shape[1]}·{k * k})")
        if _close(out, ref, rtol=1e-4):
            continue
        positions = F.unfold(inp, k, padding=p).shape[-1]
        if _close(out, ref.pow(2), rtol=1e-4):
            raise Hint(f"take the square root: ||X_j|| = sqrt(mean_n Σ x²) ({case})")
        if _close(out, ref / math.sqrt(positions), rtol=1e-4):
            raise Hint(f"||x_j||² sums over the {positions} patch positions of an image; average over images only ({case})")
        if p and _close(out[:1], im2col_norms_reference(inp, k, 0)[:1], rtol=1e-4):
            raise Hint(f"use the conv's zero padding ({p}) when unfolding ({case})")
        raise Hint(f"on {case}: {_first_diff(out, ref, rtol=1e-4)}")
    return f"matches on two small inputs and on the input of {layer} of {source}"


def _group_problem(mask: Tensor, scores: Tensor, n_keep: int) -> tuple[int, str] | None:
    """(group index, what is wrong) for the first group (row of ``mask``) that does not keep
    exactly its ``n_keep`` highest scores; None when every group does."""
    kept = mask.sum(1)
    wrong_count = torch.nonzero(kept != n_keep).flatten()
    if len(wrong_count):
        g = int(wrong_count[0])
        return g, f"keeps {int(kept[g])} weights"
    scores = scores.double()
    removed_max = torch.where(mask, -math.inf, scores).amax(1)
    kept_min = torch.where(mask, scores, math.inf).amin(1)
    wrong_order = torch.nonzero(removed_max > kept_min).flatten()
    if len(wrong_order):
        g = int(wrong_order[0])
        return g, f"removes a weight scored {removed_max[g]:.4g} but keeps one scored {kept_min[g]:.4g}"
    return None


@exercise("row_mask", "03", "per output row, remove exactly floor(s·fan_in) lowest scores (True = keep)",
          unstructured.row_mask, (unstructured.row_mask, unstructured._lowest),
          hints=("scores: (out, in) or (C_out, C_in, k, k); return a bool mask of the same shape",
                 "view as (out, -1); k = int(s · fan_in) removed in EVERY row, not over the whole layer"))
def _check_row_mask(fn):
    model, source = course_model()
    cases = [(_rand(4, 10, seed=8).abs(), 0.5, "(4, 10) scores at s = 0.5"),
             (_rand(3, 2, 3, 3, seed=9).abs(), 0.3, "(3, 2, 3, 3) conv scores at s = 0.3"),
             (_rand(6, 7, seed=10).abs() * torch.arange(1, 7)[:, None], 0.45, "(6, 7) scores at s = 0.45"),
             (_weight("classifier.fc2").abs(), 0.9, f"|W| of classifier.fc2 of {source} at s = 0.9")]
    for scores, s, case in cases:
        out = _mask(_call(fn, scores, s, case=case), scores.shape)
        fan_in = scores[0].numel()
        k_keep = fan_in - int(s * fan_in)
        problem = _group_problem(out.reshape(len(out), -1), scores.reshape(len(scores), -1), k_keep)
        if problem and problem[1].startswith("keeps"):
            raise Hint(f"row {problem[0]} {problem[1]}; each row must keep exactly {k_keep} "
                       f"(fan_in {fan_in} - floor({s}·{fan_in})) ({case})")
        if problem:
            raise Hint(f"row {problem[0]} {problem[1]}: remove the LOWEST scores of each row ({case})")
    return f"every row keeps exactly its quota of the highest scores, on 3 small cases and fc2 of {source}"


@exercise("nm_mask", "03", "N:M for (out, in) scores: keep the n highest of every m consecutive inputs",
          unstructured.nm_mask, (unstructured.nm_mask,),
          hints=("scores: (out, in) with in divisible by m; groups: inputs 0..m-1, m..2m-1, … of each row",
                 "reshape to (-1, m), remove the m - n lowest of each group, reshape back"))
def _check_nm_mask(fn):
    model, source = course_model()
    cases = [(_rand(3, 8, seed=11).abs(), 2, 4, "(3, 8) scores, 2:4"),
             (torch.arange(16.0).reshape(2, 8), 2, 4, "(2, 8) increasing scores, 2:4"),
             (_rand(2, 16, seed=12).abs(), 4, 8, "(2, 16) scores, 4:8"),
             (_weight("classifier.fc2").abs(), 2, 4, f"|W| of classifier.fc2 of {source}, 2:4")]
    for scores, n, m, case in cases:
        out = _mask(_call(fn, scores, n, m, case=case), scores.shape)
        problem = _group_problem(out.reshape(-1, m), scores.reshape(-1, m), n)
        if problem:
            r, c = divmod(problem[0], scores.shape[1] // m)
            where = f"row {r}, inputs {c * m}..{c * m + m - 1}"
            if problem[1].startswith("keeps"):
                raise Hint(f"group ({where}) {problem[1]}; every group of {m} consecutive inputs "
                           f"must keep exactly {n} ({case})")
            raise Hint(f"group ({where}) {problem[1]}: keep the {n} HIGHEST of each group ({case})")
    return f"every group of m keeps exactly its n highest, on 3 small cases and fc2 of {source}"


# ================================================================================ 04 slimming
@exercise("gamma_subgradient", "04", "grad + s·sign(γ): the L1 penalty on BatchNorm γ added to the loss gradient",
          slimming.gamma_subgradient, (slimming.gamma_subgradient, slimming.add_gamma_l1_hooks),
          hints=("grad, gamma: (C,) tensors; s: float; d/dγ s|γ| = s·sign(γ), and 0 at γ = 0",))
def _check_gamma(fn):
    model, source = course_model()
    gamma_model = model.features.block2.bn.weight.detach().clone()
    cases = [(torch.tensor([0.1, -0.2, 0.3, 0.0]), torch.tensor([0.5, -2.0, 0.0, 1.5]), 1e-2, "4 channels, s = 0.01"),
             (_rand(64, seed=13) * 1e-3, gamma_model, 1e-4, f"γ of features.block2.bn of {source}, s = 1e-4")]
    for grad, gamma, s, case in cases:
        ref = slimming.gamma_subgradient(grad, gamma, s)
        out = _tensor(_call(fn, grad, gamma, s, case=case))
        _shape(out, grad.shape, why=" (one value per channel)")
        if _close(out, ref, atol=1e-9):
            continue
        if _close(out, s * torch.sign(gamma), atol=1e-9):
            raise Hint(f"the penalty's term is ADDED to the loss gradient: return grad + s·sign(γ) ({case})")
        if _close(out, grad + s * gamma, atol=1e-9):
            raise Hint(f"s·γ is the gradient of an L2 penalty; the L1 penalty s|γ| gives s·sign(γ) ({case})")
        if _close(out, grad + s * gamma.abs(), atol=1e-9) or _close(out, grad + s, atol=1e-9):
            raise Hint(f"the subgradient of s|γ| is s·sign(γ): negative γ are pushed UP toward 0 ({case})")
        raise Hint(f"on {case}: {_first_diff(out, ref, atol=1e-9)}")
    return f"matches on a small case (γ = 0 included) and on block2 γ of {source}"


@exercise("global_threshold", "04", "the |γ| below which the lowest ratio of ALL channels lie (midpoint)",
          slimming.global_threshold, (slimming.global_threshold,),
          hints=("gammas: list of (C_l,) tensors, one per BN layer; ratio in [0, 1)",
                 "n = round(ratio · total); sort all |γ|; threshold = (v[n-1] + v[n]) / 2; 0.0 when n = 0"))
def _check_threshold(fn):
    model, source = course_model()
    small = [torch.tensor([0.9, -0.05, 0.4]), torch.tensor([-0.8, 0.02, 0.3, 0.07]),
             torch.tensor([0.01, -0.6, 0.5])]
    real = [bn.weight.detach().clone() for bn in model.bn_layers()]
    cases = [(small, 0.3, "3 layers, 10 γ, ratio 0.3"), (small, 0.55, "3 layers, 10 γ, ratio 0.55"),
             (small, 0.0, "ratio 0"), (real, 0.5, f"the γ of {source}, ratio 0.5")]
    for gammas, ratio, case in cases:
        ref = slimming.global_threshold(gammas, ratio)
        out = _call(fn, gammas, ratio, case=case)
        try:
            t = float(_tensor(out).reshape(()).item())
        except Hint:
            raise
        except Exception:
            raise Hint(f"return one number (the threshold), got {out!r} ({case})") from None
        values = torch.cat(gammas).abs()
        n_remove, below = int(round(ratio * len(values))), int((values < t).sum())
        if below != n_remove:
            raise Hint(f"{below} of the {len(values)} |γ| lie below your threshold {t:.4g}; exactly "
                       f"round(ratio·n) = {n_remove} must — rank the absolute values |γ| of all layers together ({case})")
        if not math.isclose(t, ref, rel_tol=1e-5, abs_tol=1e-9):
            raise Hint(f"the right channels fall below {t:.4g}, but the threshold is the midpoint between the "
                       f"largest removed and the smallest kept |γ|: {ref:.4g} ({case})")
    return f"matches on small cases and on all BatchNorm γ of {source}"


# ================================================================================ 05 schedules
@exercise("agp_sparsity", "05", "cubic AGP: s_f + (s_i - s_f)·(1 - t/T)³, held at s_f after T",
          schedules.cubic_sparsity, (schedules.cubic_sparsity,),
          hints=("agp_sparsity(step, T, final, initial=0.0) -> float",
                 "clip t/T to [0, 1]; T = 0 means the final sparsity at once"))
def _check_agp(fn):
    for T, final, initial in [(10, 0.9, 0.0), (7, 0.95, 0.2)]:
        case = f"T = {T}, final {final}, initial {initial}"
        got = {}
        for t in (0, T / 2, T, T + 3, 2 * T) + tuple(range(T)):
            try:
                got[t] = float(_call(fn, t, T, final, initial, case=f"step {t}, {case}"))
            except (TypeError, ValueError):
                raise Hint(f"return one number (the sparsity at step {t}) ({case})") from None
        if not math.isclose(got[0], initial, abs_tol=1e-6):
            raise Hint(f"at step 0 the sparsity must be the initial {initial}, got {got[0]:.4g} ({case})")
        if not math.isclose(got[T], final, abs_tol=1e-6):
            raise Hint(f"the schedule must reach the final sparsity at step T, got {got[T]:.4g} ({case})")
        mid = schedules.cubic_sparsity(T / 2, T, final, initial)
        if not math.isclose(got[T / 2], mid, abs_tol=1e-6):
            linear = schedules.linear_sparsity(T / 2, T, final, initial)
            what = " (that is the linear schedule)" if math.isclose(got[T / 2], linear, abs_tol=1e-6) else ""
            raise Hint(f"at t = T/2 the cubic schedule gives s_f + (s_i - s_f)/8 = {mid:.4g}, got {got[T / 2]:.4g}{what} ({case})")
        for t in (T + 3, 2 * T):
            if not math.isclose(got[t], final, abs_tol=1e-6):
                raise Hint(f"after step T the sparsity must stay at the final {final}, got {got[t]:.4g} at step {t} ({case})")
        for t in range(T):
            ref = schedules.cubic_sparsity(t, T, final, initial)
            if not math.isclose(got[t], ref, abs_tol=1e-6):
                raise Hint(f"at step {t} expected {ref:.4g}, got {got[t]:.4g} ({case})")
    schedule = schedules.PruningSchedule("agp", 0.95, epochs=6, prune_steps=5, prune_epochs=3)
    for step, s in schedule.events(steps_per_epoch=10):
        out = float(_call(fn, step / 10, 3, 0.95, 0.0, case="the course's AGP events"))
        if not math.isclose(out, s, abs_tol=1e-6):
            raise Hint(f"at epoch {step / 10:g} of the course's 5-step AGP to 95% expected {s:.4g}, got {out:.4g}")
    return "starts at s_i, is cubic, reaches s_f at T and stays there; matches the course's AGP events"


def global_magnitude_reference(weights: dict[str, Tensor], sparsity: float) -> dict[str, Tensor]:
    flat = torch.cat([w.abs().flatten() for w in weights.values()])
    k = int(sparsity * flat.numel())                      # zeros over all layers together
    keep = torch.ones_like(flat, dtype=torch.bool)
    keep[torch.sort(flat, stable=True).indices[:k]] = False
    sizes = [w.numel() for w in weights.values()]
    return {name: part.reshape(w.shape) for (name, w), part in zip(weights.items(), keep.split(sizes))}


@exercise("global_magnitude_masks", "05", "masks removing the floor(s·total) smallest |w| ranked over ALL layers",
          global_magnitude_reference, (unstructured.global_masks,),
          hints=("weights: {name: tensor}; return {name: bool mask of that shape} (True = keep)",
                 "one ranking over all layers: each layer ends up with its own sparsity"))
def _check_global_masks(fn):
    model, source = course_model()
    small = {"a": _rand(4, 5, seed=14), "b": _rand(3, 6, seed=15) * 0.1, "c": _rand(10, seed=16) * 3}
    real = {name: _weight(name) for name in ("features.block2.conv", "features.block3.conv", "classifier.fc2")}
    for weights, s, case in [(small, 0.5, "3 layers of different scales, s = 0.5"),
                             (real, 0.9, f"block2/block3 conv and fc2 of {source}, s = 0.9")]:
        out = _call(fn, weights, s, case=case)
        if not isinstance(out, dict) or set(out) != set(weights):
            raise Hint(f"return a dict with one mask per layer name {sorted(weights)}, got "
                       f"{sorted(out) if isinstance(out, dict) else type(out).__name__} ({case})")
        masks = {n: _mask(out[n], w.shape, f"the mask of {n!r}") for n, w in weights.items()}
        total = sum(w.numel() for w in weights.values())
        removed = sum(int((~m).sum()) for m in masks.values())
        if removed != int(s * total):
            raise Hint(f"{removed} weights removed; floor(s·total) = {int(s * total)} of all {total} must be ({case})")
        kept_min = min(float(w.abs()[m].min()) for w, m in zip(weights.values(), masks.values()) if m.any())
        removed_max = max(float(w.abs()[~m].max()) for w, m in zip(weights.values(), masks.values()) if (~m).any())
        if removed_max > kept_min:
            if all(torch.equal(m, unstructured.layer_mask(w.abs(), s)) for w, m in zip(weights.values(), masks.values())):
                raise Hint(f"every layer has sparsity {s}: that is a per-layer ranking; rank |w| of all layers "
                           f"together, so layers with small weights lose more ({case})")
            raise Hint(f"a weight with |w| = {removed_max:.4g} was removed while one with |w| = {kept_min:.4g} "
                       f"was kept: rank by |w| over all layers ({case})")
    return f"removes exactly the smallest |w| over all layers, on a small case and on three layers of {source}"


# ================================================================================ 06 quantization
def symmetric_scales_reference(weight: Tensor, bits: int) -> Tensor:
    q_max = 2 ** (bits - 1) - 1                          # narrow symmetric range: q in [-q_max, q_max]
    return weight.reshape(weight.shape[0], -1).abs().amax(dim=1) / q_max


def fake_quantize_reference(weight: Tensor, scales: Tensor, bits: int) -> Tensor:
    q_max = 2 ** (bits - 1) - 1
    s = scales.reshape(-1, *[1] * (weight.ndim - 1))     # one scale per output channel
    q = torch.clamp(torch.round(weight / s), -q_max, q_max)
    return q * s


def ste_round_reference(x: Tensor) -> Tensor:
    return x + (torch.round(x) - x).detach()             # forward: round(x); backward: gradient 1


@exercise("symmetric_scales", "06", "per output channel, max|w_c| / (2^(b-1) - 1): the symmetric weight scale",
          symmetric_scales_reference, (fake.weight_scales, fake.symmetric_range),
          hints=("weight: (out, …); return (out,); 4 bits: q in [-7, 7], so s_c = max|w_c| / 7",))
def _check_scales(fn):
    model, source = course_model()
    cases = [(_rand(3, 8, seed=17), 4, "a (3, 8) weight, 4 bits"), (_rand(2, 2, 3, 3, seed=18), 2, "a conv weight, 2 bits"),
             (_weight("classifier.fc1"), 4, f"classifier.fc1 of {source}, 4 bits"),
             (_weight("features.block2.conv"), 8, f"features.block2.conv of {source}, 8 bits")]
    for weight, bits, case in cases:
        ref = symmetric_scales_reference(weight, bits)
        out = _tensor(_call(fn, weight, bits, case=case))
        if out.numel() == 1 and ref.numel() > 1:
            raise Hint(f"one scale per output channel (dim 0): expected shape {tuple(ref.shape)}, got one scale ({case})")
        _shape(out, ref.shape, why=" (one scale per output channel)")
        if _close(out, ref, rtol=1e-5):
            continue
        q_max = 2 ** (bits - 1) - 1
        rows = weight.reshape(len(weight), -1)
        r = int((~torch.isclose(out.double(), ref.double(), rtol=1e-5)).nonzero()[0])
        asym = (rows.amax(1) - rows.amin(1)) / (2 ** bits - 1)
        extra = " — (max - min) / (2^b - 1) is the asymmetric scale" if _close(out, asym, rtol=1e-5) else ""
        raise Hint(f"scale must be max|w| / {q_max} for {bits}-bit symmetric: row {r} expected "
                   f"{ref[r]:.6g}, got {out[r]:.6g}{extra} ({case})")
    return f"matches on small weights and on fc1 / block2.conv of {source}"


def _tie_free(weight: Tensor, s: Tensor) -> Tensor:
    """Entries whose w/s is not within 1e-4 of a rounding tie (where x/s and x·(1/s) may differ)."""
    ratio = (weight / s).double()
    return (ratio - ratio.floor() - 0.5).abs() > 1e-4


@exercise("fake_quantize", "06", "round(w / s_c), clamp to ±(2^(b-1) - 1), multiply back by s_c",
          fake_quantize_reference, (fake.fake_quantize_weight, fake.quantize_weight, fake.symmetric_range),
          hints=("weight: (out, …); scales: (out,); return floats of the weight's shape on the levels s_c·q",
                 "q = clamp(round(w / s_c), -(2^(b-1) - 1), 2^(b-1) - 1); ŵ = s_c · q"))
def _check_fake_quantize(fn):
    model, source = course_model()
    w = torch.tensor([[0.26, -0.34, 0.05, 1.2], [-0.9, 0.44, 0.0, -0.16]])
    fc2 = _weight("classifier.fc2")
    cases = [(w, torch.tensor([0.1, 0.1]), 4, "a (2, 4) weight, s = 0.1, 4 bits (0.9 and 1.2 clip at ±0.7)"),
             (_rand(3, 2, 3, 3, seed=19), torch.tensor([0.3, 0.5, 0.2]), 2, "a conv weight at 2 bits"),
             (fc2, fake.weight_scales(fc2, 4, clip="mse"), 4, f"classifier.fc2 of {source}, 4 bits, MSE scales")]
    for weight, scales, bits, case in cases:
        ref = fake_quantize_reference(weight, scales, bits)
        out = _tensor(_call(fn, weight, scales, bits, case=case))
        _shape(out, weight.shape, why=" (the weight's shape)")
        s = scales.reshape(-1, *[1] * (weight.ndim - 1))
        ok = _tie_free(weight, s)
        if torch.allclose(out.double()[ok], ref.double()[ok], rtol=1e-5, atol=1e-7):
            continue
        q_max = 2 ** (bits - 1) - 1
        codes = torch.clamp(torch.round(weight / s), -q_max, q_max)
        if torch.allclose(out.double(), codes.double()):
            raise Hint(f"you returned the integer codes q; return the dequantized weight s_c·q ({case})")
        if (out.abs() > q_max * s * (1 + 1e-5)).any():
            raise Hint(f"values must be clamped to ±{q_max}·s_c ({bits}-bit narrow symmetric range [-{q_max}, {q_max}]): "
                       f"got {float(out.abs().max()):.4g} where the largest level is {float((q_max * s).max()):.4g} ({case})")
        if torch.allclose(out.double(), (torch.floor(weight / s).clamp(-q_max, q_max) * s).double()):
            raise Hint(f"round to the NEAREST level (torch.round), not down (floor) ({case})")
        bad = (~torch.isclose(out.double(), ref.double(), rtol=1e-5, atol=1e-7)) & ok
        i = tuple(int(v) for v in bad.nonzero()[0])
        raise Hint(f"w = {weight[i]:.4g} with s = {float(s.expand_as(weight)[i]):.4g} must become {ref[i]:.4g}, got "
                   f"{out[i]:.4g} (round(w/s), clamp, times s) ({case})")
    return f"matches (clamping included) on small cases and on fc2 of {source}"


@exercise("ste_round", "06", "straight-through round: forward round(x), gradient 1 in backward",
          ste_round_reference, (fake.fake_quantize_weight, fake._QuantMixin.quantized_weight),
          hints=("x + (round(x) - x).detach(): the detached part carries the rounding, x the gradient",))
def _check_ste(fn):
    model, source = course_model()
    fc1 = _weight("classifier.fc1")
    scales = fake.weight_scales(fc1, 4, clip="max")
    for x, case in [(torch.tensor([0.2, 0.7, -1.6, 2.5, -0.4]), "5 values"),
                    (fc1 / scales[:, None], f"classifier.fc1 of {source} divided by its 4-bit scales")]:
        x = x.clone().requires_grad_(True)
        try:
            out = fn(x)
        except NotImplementedError:
            raise NotImplementedYet from None
        except Exception as exc:
            raise Hint(f"your function raised {type(exc).__name__}: {exc} (on {case})") from None
        if not isinstance(out, Tensor):
            raise Hint(f"return a tensor, got {type(out).__name__} ({case})")
        _shape(out, x.shape, why=" (x's shape)")
        if not torch.equal(out.detach(), torch.round(x.detach())):
            raise Hint(f"the forward value must be round(x): {_first_diff(out.detach(), torch.round(x.detach()))} ({case})")
        if not out.requires_grad:
            raise Hint(f"no gradient flows back to x (the output is detached from x): keep x in the graph ({case})")
        grad, = torch.autograd.grad(out.sum(), x, allow_unused=True)
        if grad is None or not torch.allclose(grad, torch.ones_like(x)):
            got = 0.0 if grad is None else float(grad.flatten()[0])
            raise Hint(f"the gradient through ste_round must be 1 (straight-through), got {got:g} "
                       f"(torch.round's own gradient is 0) ({case})")
    return f"forward rounds, gradient 1 — as the course's fake-quantizer on fc1 of {source}"


# ================================================================================ 07 storage
def relative_gaps_reference(positions, max_gap: int = 255) -> np.ndarray:
    gaps, previous = [], -1                              # the first gap counts from index -1
    for p in positions:
        gap = int(p) - previous
        while gap > max_gap:                             # a filler entry (stored value 0) per max_gap
            gaps.append(max_gap)
            gap -= max_gap
        gaps.append(gap)
        previous = int(p)
    return np.array(gaps, dtype=np.int64)


@exercise("pack_bits", "07", "pack integers in [0, 2^b) tightly, b bits each, most significant bit first",
          packed.pack_bits, (packed.pack_bits, packed.unpack_bits),
          hints=("values: 1-D ints in [0, 2^bits); return bytes of length ceil(n·bits / 8)",
                 "[1, 2, 3] at 2 bits: 01 10 11 00 = 0x6c (the last byte padded with zeros)"))
def _check_pack_bits(fn):
    model, source = course_model()
    fc2 = _weight("classifier.fc2")
    codes = fake.quantize_weight(fc2, fake.weight_scales(fc2, 4), 4).numpy().ravel() + 7
    cases = [(np.array([1, 2, 3]), 2, "[1, 2, 3] at 2 bits"), (np.array([5, 0, 7, 1, 6]), 3, "5 values at 3 bits"),
             (np.arange(16) % 16, 4, "0..15 at 4 bits"), (codes.astype(np.int64), 4,
                                                          f"4-bit codes (+7) of classifier.fc2 of {source}")]
    for values, bits, case in cases:
        ref = packed.pack_bits(values, bits)
        out = _call(fn, values, bits, case=case)
        try:
            data = bytes(out) if isinstance(out, (bytes, bytearray)) else np.asarray(
                out.detach().cpu() if isinstance(out, Tensor) else out).astype(np.uint8).tobytes()
        except Exception:
            raise Hint(f"return bytes, got {type(out).__name__} ({case})") from None
        if len(data) != len(ref):
            raise Hint(f"{len(values)} values of {bits} bits need ceil({len(values) * bits}/8) = {len(ref)} bytes, "
                       f"got {len(data)} ({case})")
        if data != ref:
            lsb = np.packbits(np.unpackbits(np.asarray(values, np.uint8)[:, None], axis=1, bitorder="little")
                              [:, :bits].ravel(), bitorder="little").tobytes()
            order = " — that is least-significant bit first; pack MSB first" if data == lsb else ""
            raise Hint(f"{case} must give {ref[:4].hex(' ')}…, got {data[:4].hex(' ')}…{order}")
    return f"byte for byte as the course's packed files, on small cases and the fc2 codes of {source}"


@exercise("relative_gaps", "07", "gaps between non-zero positions (first from -1), fillers of max_gap for long gaps",
          relative_gaps_reference, (sparse._relative_gaps,),
          hints=("positions: sorted 1-D ints; return one int per entry (fillers included)",
                 "a gap g > max_gap becomes entries max_gap, max_gap, …, then the rest (a filler stores value 0)"))
def _check_relative_gaps(fn):
    model, source = course_model()
    fc1 = _weight("classifier.fc1")
    positions = np.flatnonzero(unstructured.row_mask(fc1.abs(), 0.99).numpy().ravel())
    cases = [(np.array([0, 3, 4]), 255, "positions [0, 3, 4]"), (np.array([2, 20]), 7, "positions [2, 20], max_gap 7"),
             (np.array([6, 13, 30]), 7, "positions [6, 13, 30], max_gap 7"),
             (positions, 255, f"the non-zeros of classifier.fc1 of {source} pruned to 99% per row")]
    for pos, max_gap, case in cases:
        ref = relative_gaps_reference(pos, max_gap)
        out = _tensor(_call(fn, pos, max_gap, case=case)).flatten()
        if torch.is_floating_point(out) and not torch.equal(out, out.round()):
            raise Hint(f"gaps are whole numbers, got {out[:6].tolist()} ({case})")
        got = out.long().numpy()
        if np.array_equal(got, ref):
            continue
        if len(got) and got[0] == pos[0] and ref[0] == pos[0] + 1:
            raise Hint(f"the first gap counts from index -1: position {pos[0]} gives gap {pos[0] + 1} ({case})")
        if len(got) and got.max() > max_gap:
            raise Hint(f"gap {got.max()} exceeds max_gap={max_gap}: bridge it with filler entries of {max_gap} ({case})")
        raise Hint(f"{case}: expected {ref[:10].tolist()}, got {got[:10].tolist()} — fillers are entries of max_gap")
    return f"matches on small cases and on the course's .sparse coding of fc1 of {source}"


# ================================================================================ command line
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m helpers.exercises", description=__doc__.split("\n")[0])
    parser.add_argument("--list", action="store_true", help="one line per exercise: notebook, name, statement")
    parser.add_argument("--solution", metavar="NAME", help="print the reference solution of NAME")
    args = parser.parse_args(argv)
    if args.solution:
        solution(args.solution)
    else:
        print("\n".join(listing()))


if __name__ == "__main__":
    main()
