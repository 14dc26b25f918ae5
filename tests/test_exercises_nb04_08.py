"""The exercises of notebooks 04 and 08: every reference passes, plausible wrong answers fail with the
hint that names their mistake, and a subtly wrong answer, had it passed, would change what it drives
(the channels a slimmed model keeps, the frontier 08 draws, the picks 08 makes)."""
import copy
import json
import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch

import helpers.exercises as ex
from helpers import comparison
from helpers.paths import NOTEBOOKS_DIR
from helpers.pruning import slimming

NAMES = ("gamma_subgradient", "global_threshold", "pareto_front", "verdict_rule")


# ------------------------------------------------------------------ 04: gamma_subgradient
def _grad_sign0_is_one(grad, gamma, s):
    return grad + s * torch.where(gamma >= 0, 1.0, -1.0)  # pushes a γ that is exactly 0


def _grad_numpy(grad, gamma, s):
    return (grad + s * torch.sign(gamma)).numpy()  # autograd cannot take an array


def _grad_float64(grad, gamma, s):
    return grad.double() + s * torch.sign(gamma).double()


# ------------------------------------------------------------------ 04: global_threshold
def _sorted_abs(gammas):
    return torch.cat([g.flatten() for g in gammas]).abs().sort().values


def _threshold_floor(gammas, ratio):
    values = _sorted_abs(gammas)
    n = int(ratio * len(values))  # truncates: 0.55 of 10 channels gives 5, not 6
    return 0.0 if n == 0 else float((values[n - 1] + values[n]) / 2)


def _threshold_half_up(gammas, ratio):
    values = _sorted_abs(gammas)
    n = math.floor(ratio * len(values) + 0.5)  # rounds 2.5 up to 3; Python's round gives 2 (halves to even)
    if n >= len(values):
        raise ValueError("every channel")
    return 0.0 if n == 0 else float((values[n - 1] + values[n]) / 2)


def _threshold_every_channel(gammas, ratio):
    values = _sorted_abs(gammas)
    n = round(ratio * len(values))
    return 0.0 if n == 0 else float((values[n - 1] + values[n]) / 2)  # IndexError where n = every channel


def _threshold_keeps_the_last(gammas, ratio):
    values = _sorted_abs(gammas)
    n = min(round(ratio * len(values)), len(values) - 1)  # quietly keeps one channel instead of saying so
    return 0.0 if n == 0 else float((values[n - 1] + values[n]) / 2)


def _threshold_signed(gammas, ratio):
    values = torch.cat(gammas).sort().values  # forgot |γ|
    n = int(round(ratio * len(values)))
    return 0.0 if n == 0 else float((values[n - 1] + values[n]) / 2)


def _threshold_kept_value(gammas, ratio):
    values = _sorted_abs(gammas)
    n = int(round(ratio * len(values)))
    return 0.0 if n == 0 else float(values[n])  # the smallest kept |γ|, not the midpoint


def _threshold_per_layer(gammas, ratio):
    return float(np.mean([slimming.global_threshold([g], ratio) for g in gammas]))


def _threshold_in_place(gammas, ratio):
    for g in gammas:
        g.abs_()  # changes the caller's γ
    return slimming.global_threshold(gammas, ratio)


# ------------------------------------------------------------------ 08: pareto_front
def _front_strict(sizes, accuracies):  # dominated only when strictly better in BOTH
    return np.array([not np.any((sizes < sizes[i]) & (accuracies > accuracies[i])) for i in range(len(sizes))])


def _front_drops_twins(sizes, accuracies):  # "at least as good in both" dominates, identical twins included
    idx = np.arange(len(sizes))
    return np.array([not np.any((sizes <= sizes[i]) & (accuracies >= accuracies[i]) & (idx != i))
                     for i in range(len(sizes))])


def _front_in_sorted_order(sizes, accuracies):
    order = np.argsort(sizes, kind="stable")
    return comparison.pareto_mask(sizes, accuracies)[order]


def _front_sweep_ignoring_equal_sizes(sizes, accuracies):  # one pass by size: the first of equal sizes stays
    out, best = np.zeros(len(sizes), bool), -np.inf
    for i in np.argsort(sizes, kind="stable"):
        out[i], best = accuracies[i] > best, max(best, accuracies[i])
    return out


def _front_largest_first(sizes, accuracies):
    return comparison.pareto_mask(-np.asarray(sizes), accuracies)


def _front_indices(sizes, accuracies):
    return np.flatnonzero(comparison.pareto_mask(sizes, accuracies))


def _front_sorts_in_place(sizes, accuracies):
    sizes.sort()
    return comparison.pareto_mask(sizes, accuracies)


# ------------------------------------------------------------------ 08: verdict_rule
def _rule_touching(ci, seeds):
    low, high = ci
    if low >= 0 and all(d > 0 for d in seeds):
        return "a"
    if high <= 0 and all(d < 0 for d in seeds):
        return "b"
    return "tie"


def _rule_mean_of_seeds(ci, seeds):
    return comparison.interval_verdict(ci, [float(np.mean(seeds))] if seeds else [])


def _rule_zero_agrees(ci, seeds):
    low, high = ci
    if low > 0 and all(d >= 0 for d in seeds):
        return "a"
    if high < 0 and all(d <= 0 for d in seeds):
        return "b"
    return "tie"


def _rule_middle(ci, seeds):
    middle = (ci[0] + ci[1]) / 2
    return "a" if middle > 0.3 else "b" if middle < -0.3 else "tie"


def _rule_min_of_seeds(ci, seeds):
    low, high = ci
    return "a" if low > 0 and min(seeds) > 0 else "b" if high < 0 and max(seeds) < 0 else "tie"


def _rule_in_place(ci, seeds):
    decided = comparison.interval_verdict(ci, list(seeds))
    while seeds:  # "uses up" the caller's list
        seeds.pop()
    return decided


WRONG = [  # (exercise, category, answer, words its hint must contain)
    ("gamma_subgradient", "L2", lambda g, gamma, s: g + s * gamma, "L2 penalty"),
    ("gamma_subgradient", "sign(0)=1", _grad_sign0_is_one, "at γ = 0 the subgradient adds nothing"),
    ("gamma_subgradient", "numpy", _grad_numpy, "return a torch tensor of grad's dtype"),
    ("gamma_subgradient", "dtype", _grad_float64, "torch.float32"),
    ("gamma_subgradient", "in-place", lambda grad, gamma, s: grad.add_(s * torch.sign(gamma)),
     "your function changed its input grad"),
    ("global_threshold", "floor", _threshold_floor, "not the floor 5"),
    ("global_threshold", "half-up", _threshold_half_up, "halves round to the EVEN neighbour"),
    ("global_threshold", "every-channel", _threshold_every_channel, "raise ValueError when round(ratio · n) removes"),
    ("global_threshold", "keeps-last", _threshold_keeps_the_last, "removes every channel here: raise ValueError"),
    ("global_threshold", "signed", _threshold_signed, "absolute values |γ|"),
    ("global_threshold", "kept-value", _threshold_kept_value, "the midpoint (v[n-1] + v[n]) / 2"),
    ("global_threshold", "per-layer", _threshold_per_layer, "lie below your threshold"),
    ("global_threshold", "in-place", _threshold_in_place, "your function changed its input gammas"),
    ("pareto_front", "strict", _front_strict, "equal in one and better in the other is enough to dominate"),
    ("pareto_front", "twins", _front_drops_twins, "identical records do not dominate each other"),
    ("pareto_front", "sorted-order", _front_in_sorted_order, "in the input's order"),
    ("pareto_front", "equal-sizes", _front_sweep_ignoring_equal_sizes, "the same size and more accurate"),
    ("pareto_front", "direction", _front_largest_first, "smaller is better"),
    ("pareto_front", "indices", _front_indices, "not the indices"),
    ("pareto_front", "in-place", _front_sorts_in_place, "your function changed its input sizes"),
    ("verdict_rule", "touching", _rule_touching, "touches 0: an end AT 0 still holds 0"),
    ("verdict_rule", "no-seeds", lambda ci, seeds: comparison.interval_verdict(ci, []), "EVERY seed must agree"),
    ("verdict_rule", "mean", _rule_mean_of_seeds, "not their mean"),
    ("verdict_rule", "zero-seed", _rule_zero_agrees, "exactly 0: it does not say"),
    ("verdict_rule", "middle", _rule_middle, "holds 0: a tie, wherever its middle lies"),
    ("verdict_rule", "empty-seeds", _rule_min_of_seeds, "no seeds: the interval decides alone"),
    ("verdict_rule", "swapped", lambda ci, seeds: {"a": "b", "b": "a", "tie": "tie"}[comparison.interval_verdict(ci, seeds)],
     "above 0 means A is better"),
    ("verdict_rule", "bool", lambda ci, seeds: comparison.interval_verdict(ci, seeds) == "a", "return one of 'a', 'b' or 'tie'"),
    ("verdict_rule", "in-place", _rule_in_place, "your function changed its input seeds"),
]


def test_every_exercise_of_04_and_08_has_three_wrong_answers_and_one_that_changes_its_input():
    counts = Counter(name for name, *_ in WRONG)
    assert set(counts) == set(NAMES) and min(counts.values()) >= 3, counts
    assert {name for name, category, *_ in WRONG if category == "in-place"} == set(NAMES)
    assert {ex.REGISTRY[n].notebook for n in NAMES} == {"04", "08"}
    # the rounding the contract states (round, halves to even) and the ratio that would remove every channel
    assert {"floor", "half-up", "every-channel"} <= {c for n, c, *_ in WRONG if n == "global_threshold"}
    assert sum(e.notebook == "08" for e in ex.REGISTRY.values()) >= 2


def test_independent_answers_pass(capsys):
    """Answers written without the helpers: a learner's plausible right code passes too."""
    def subgradient(grad, gamma, s):
        return grad + s * torch.sign(gamma)

    def threshold(gammas, ratio):
        values = sorted(abs(float(v)) for g in gammas for v in g)
        n = round(ratio * len(values))
        if n == len(values):
            raise ValueError(f"ratio {ratio} removes all {n} channels")
        return 0.0 if n == 0 else (values[n - 1] + values[n]) / 2

    def front(sizes, accuracies):
        pairs = list(zip(sizes, accuracies))
        return [not any(s2 <= s and a2 >= a and (s2, a2) != (s, a) for s2, a2 in pairs) for s, a in pairs]

    def rule(ci, seeds):
        if ci[0] > 0 and all(d > 0 for d in seeds):
            return "a"
        return "b" if ci[1] < 0 and all(d < 0 for d in seeds) else "tie"

    for name, fn in zip(NAMES, (subgradient, threshold, front, rule)):
        assert ex.check(name, fn) is True, capsys.readouterr().out


def test_the_exercises_are_listed():
    listed = "\n".join(ex.listing())
    assert all(f"  {name}" in listed for name in NAMES)


def test_use_hands_on_a_passing_answer_and_the_reference_otherwise(capsys):
    def mine(ci, seeds):
        return comparison.interval_verdict(ci, seeds)

    assert ex.use("verdict_rule", mine) is mine and ex.in_use("verdict_rule") == "yours"
    assert "the cells below run YOUR function" in capsys.readouterr().out
    assert ex.use("verdict_rule", _rule_touching) is comparison.interval_verdict
    assert ex.in_use("verdict_rule") == "the reference" and "it has not passed check yet" in capsys.readouterr().out


# ------------------------------------------------ had a wrong answer passed, what it drives would change
def test_a_truncating_threshold_would_keep_other_channels_in_the_slimmed_model(random_model):
    with torch.no_grad():  # |γ| spread as sparsity training leaves them
        for bn in random_model.bn_layers():
            bn.weight.uniform_(0.0, 1.5)
    ratio = 0.5575  # of 224 channels: 124.88, rounded 125, truncated 124
    right = slimming.slimming_plan(random_model, ratio, 1)
    wrong = slimming.slimming_plan(random_model, ratio, 1, threshold_fn=_threshold_floor)
    assert sum(wrong.conv_channels) == sum(right.conv_channels) + 1  # one more channel kept: another model


def test_a_sign_zero_subgradient_would_move_gammas_that_sit_at_zero(random_model):
    model = random_model.train()
    with torch.no_grad():
        model.features.block1.bn.weight[:4] = 0.0  # channels already removed by the penalty
    results = []
    for subgradient in (slimming.gamma_subgradient, _grad_sign0_is_one):
        m = copy.deepcopy(model)
        opt = torch.optim.SGD([bn.weight for bn in m.bn_layers()], lr=0.1)
        with slimming.gamma_l1_penalty(m, 0.5, subgradient=subgradient):
            opt.zero_grad()
            (m(torch.zeros(2, 1, 28, 28)).sum() * 0).backward()  # the penalty's gradient alone
            opt.step()
        results.append(m.features.block1.bn.weight.detach()[:4].clone())
    assert torch.equal(results[0], torch.zeros(4)) and (results[1] != 0).all()


def test_a_strict_dominance_front_would_draw_a_point_that_is_not_on_the_frontier():
    frame = pd.DataFrame({"name": ["a", "b", "c"], "bytes": [100.0, 100.0, 300.0], "test_accuracy": [90.0, 92.0, 93.0]})
    right = comparison.pareto_front(frame, "bytes")["name"].tolist()
    wrong = comparison.pareto_front(frame, "bytes", front=_front_strict)["name"].tolist()
    assert right == ["b", "c"] and wrong == ["a", "b", "c"]


def test_a_touching_interval_rule_would_keep_a_dearer_model_the_rule_calls_a_tie():
    front = pd.DataFrame([{"name": "small", "weights_file": "s", "bytes": 100.0},
                          {"name": "big", "weights_file": "b", "bytes": 300.0}])
    small = torch.ones(400, dtype=torch.bool)
    small[0] = False
    big = torch.ones(400, dtype=torch.bool)  # right on that one image: most resamples miss it, the interval is [0, x]
    assert comparison.paired_comparison(big, small).ci95_pp[0] == 0.0
    right = comparison.frontier_walk(front, {"s": small, "b": big}, "bytes")
    wrong = comparison.frontier_walk(front, {"s": small, "b": big}, "bytes", decide=_rule_touching)
    assert right["kept"].tolist() == [True, False] and wrong["kept"].tolist() == [True, True]

def test_04_method_leaves_the_subgradient_to_the_exercise_and_the_threshold_contract_is_complete():
    cells = json.loads((NOTEBOOKS_DIR / "04_network_slimming.ipynb").read_text())["cells"]
    texts = [" ".join("".join(c["source"]).split()) for c in cells]
    stub = next(i for i, t in enumerate(texts) if t.startswith("def gamma_subgradient("))
    assert not any("sign" in t for t in texts[:stub]), "the answer, s·sign(γ), stands above the stub"
    assert any("\\operatorname{sign}(\\gamma_c)$ to each" in t for t in texts[stub:])  # ... and below the exercise
    contract = next(t for t in texts if t.startswith("#### Exercise — one threshold for all layers"))
    assert "as Python's `round` does" in contract and "`round(2.5)` = 2" in contract and "`ValueError`" in contract
