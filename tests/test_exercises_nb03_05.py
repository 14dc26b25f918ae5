"""The exercises of notebooks 03 (Wanda) and 05 (schedules): every reference passes, at least three
plausible wrong answers per exercise fail with the hint that names their mistake (ties, round vs floor,
N:M other than 2:4, a schedule's edge values, zero rows/layers, inputs changed in place, a poor
decision), and each notebook puts the exercise before the answer and runs what follows through `use`."""
import json
import math
import re

import pytest
import torch
from torch.nn import functional as F

from helpers import exercises as ex
from helpers.exercises import nb05_schedules
from helpers.paths import NOTEBOOKS_DIR
from helpers.pruning import unstructured

EXERCISES = {"03": ("wanda_scores", "im2col_input_norms", "row_mask", "nm_mask"),
             "05": ("agp_sparsity", "global_magnitude_masks", "layer_sparsities")}
NOTEBOOKS = {"03": "03_wanda.ipynb", "05": "05_oneshot_vs_gradual.ipynb"}


# --------------------------------------------------------------------------- wrong answers, notebook 03
def _wanda_times_squared_norm(w, norms):
    return (w.reshape(len(w), -1).abs() * norms.pow(2)).reshape(w.shape)  # sum of squares, not the norm


def _wanda_times_sqrt_norm(w, norms):
    return (w.reshape(len(w), -1).abs() * norms.sqrt()).reshape(w.shape)


def _wanda_abs_in_place(w, norms):
    w.abs_()  # |W| written into the caller's weight
    return (w.reshape(len(w), -1) * norms).reshape(w.shape)


def _im2col_no_padding(x, k, p):
    return F.unfold(x, k).pow(2).sum(dim=(0, 2)).div(len(x)).sqrt()  # the conv pads, this does not


def _im2col_mean_over_positions(x, k, p):
    return F.unfold(x, k, padding=p).pow(2).mean(dim=(0, 2)).sqrt()


def _im2col_sum_over_images(x, k, p):
    return F.unfold(x, k, padding=p).pow(2).sum(dim=(0, 2)).sqrt()


def _im2col_clamp_in_place(x, k, p):
    x.clamp_(min=0)  # "inputs after a ReLU are non-negative anyway": writes into the caller's x
    return F.unfold(x, k, padding=p).pow(2).sum(dim=(0, 2)).div(len(x)).sqrt()


def _row_mask(scores, s, k_of, descending_ties=False):
    """Keep all but the k_of(fan_in) lowest of each row; ties removed later-first when descending_ties."""
    rows = scores.reshape(len(scores), -1)
    k = k_of(rows.shape[1])
    if descending_ties:  # ascending scores, but among equal ones the LATER position first
        order = rows.shape[1] - 1 - rows.flip(1).argsort(dim=1, stable=True)
    else:
        order = rows.argsort(dim=1, stable=True)
    mask = torch.ones_like(rows, dtype=torch.bool)
    mask.scatter_(1, order[:, :k], False)
    return mask.reshape(scores.shape)


def _row_mask_python_round(scores, s):
    return _row_mask(scores, s, lambda fan_in: round(s * fan_in))


def _row_mask_ceil(scores, s):
    return _row_mask(scores, s, lambda fan_in: math.ceil(s * fan_in))


def _row_mask_later_ties_first(scores, s):
    return _row_mask(scores, s, lambda fan_in: int(s * fan_in), descending_ties=True)


def _row_mask_at_least(scores, s):
    rows = scores.reshape(len(scores), -1)
    cut = rows.sort(1).values[:, int(s * rows.shape[1])][:, None]  # the lowest score kept …
    return (rows >= cut).reshape(scores.shape)                     # … and every score tied with it


def _row_mask_sorts_in_place(scores, s):
    rows = scores.reshape(len(scores), -1)
    k = int(s * rows.shape[1])
    order = rows.argsort(dim=1, stable=True)
    rows.copy_(rows.sort(dim=1).values)  # "sorted scores are handy": sorts the caller's tensor
    mask = torch.ones_like(rows, dtype=torch.bool)
    mask.scatter_(1, order[:, :k], False)
    return mask.reshape(scores.shape)


def _nm_groups_of_four(scores, n, m):
    groups = scores.reshape(-1, 4)  # m = 4 hard-coded: right for 2:4 only
    mask = torch.ones_like(groups, dtype=torch.bool)
    mask.scatter_(1, groups.argsort(dim=1, stable=True)[:, :4 - n], False)
    return mask.reshape(scores.shape)


def _nm_keep_half(scores, n, m):
    groups = scores.reshape(-1, m)
    mask = torch.ones_like(groups, dtype=torch.bool)
    mask.scatter_(1, groups.argsort(dim=1, stable=True)[:, :m // 2], False)  # 50% whatever n is
    return mask.reshape(scores.shape)


def _nm_strided_groups(scores, n, m):
    out, fan_in = scores.shape
    groups = scores.reshape(out, m, fan_in // m).transpose(1, 2).reshape(-1, m)  # inputs j, j + in/m, …
    mask = torch.ones_like(groups, dtype=torch.bool)
    mask.scatter_(1, groups.argsort(dim=1, stable=True)[:, :m - n], False)
    return mask.reshape(out, fan_in // m, m).transpose(1, 2).reshape(out, fan_in)


def _nm_later_ties_first(scores, n, m):
    groups = scores.reshape(-1, m)
    order = m - 1 - groups.flip(1).argsort(dim=1, stable=True)  # among equal scores the LATER first
    mask = torch.ones_like(groups, dtype=torch.bool)
    mask.scatter_(1, order[:, :m - n], False)
    return mask.reshape(scores.shape)


def _nm_zero_in_place(scores, n, m):
    groups = scores.view(-1, m)
    groups.scatter_(1, groups.argsort(dim=1, stable=True)[:, :m - n], 0.0)  # zeroes the caller's scores
    return (groups != 0).reshape(scores.shape)


# --------------------------------------------------------------------------- wrong answers, notebook 05
def _agp_inverted(t, T, final, initial=0.0):
    frac = 1.0 if T <= 0 else min(max(t / T, 0.0), 1.0)
    return initial + (final - initial) * frac ** 3  # slow first, fast at the end: the other cubic


def _agp_unclipped_above(t, T, final, initial=0.0):
    frac = 1.0 if T <= 0 else max(t / T, 0.0)  # no min(…, 1): past T the cubic turns back down
    return final + (initial - final) * (1 - frac) ** 3


def _agp_from_zero(t, T, final, initial=0.0):
    frac = 1.0 if T <= 0 else min(max(t / T, 0.0), 1.0)
    return final * (1 - (1 - frac) ** 3)  # the initial sparsity forgotten


def _agp_t_zero_is_start(t, T, final, initial=0.0):
    frac = 0.0 if T <= 0 else min(max(t / T, 0.0), 1.0)  # T = 0 read as "not started"
    return final + (initial - final) * (1 - frac) ** 3


def _agp_before_start_first(t, T, final, initial=0.0):
    if t < 0:
        return initial  # "before the start" tested first: a schedule of length 0 has none, it is s_f at once
    frac = 1.0 if T <= 0 else min(t / T, 1.0)
    return final + (initial - final) * (1 - frac) ** 3


def _global_signed(weights, s):
    return unstructured.global_masks({n: w.clone() for n, w in weights.items()}, s)  # ranks w, not |w|


def _global_per_layer(weights, s):
    return {name: unstructured.layer_mask(w.abs(), s) for name, w in weights.items()}


def _global_ceil(weights, s):
    flat = torch.cat([w.abs().flatten() for w in weights.values()])
    keep = torch.ones_like(flat, dtype=torch.bool)
    keep[flat.argsort(stable=True)[:math.ceil(s * flat.numel())]] = False  # ceil, not floor
    return dict(zip(weights, (p.reshape(w.shape) for w, p in zip(weights.values(), keep.split(
        [w.numel() for w in weights.values()])))))


def _global_reversed_layers(weights, s):
    names = list(weights)[::-1]  # ranked last layer first: ties broken in the other order
    masks = ex.global_magnitude_reference({n: weights[n] for n in names}, s)
    return {n: masks[n] for n in weights}


def _global_at_most(weights, s):
    flat = torch.cat([w.abs().flatten() for w in weights.values()])
    if int(s * flat.numel()) == 0:
        return {name: torch.ones_like(w, dtype=torch.bool) for name, w in weights.items()}
    cut = flat.sort().values[int(s * flat.numel()) - 1]  # the largest |w| to remove …
    return {name: w.abs() > cut for name, w in weights.items()}  # … and every |w| tied with it


def _global_abs_in_place(weights, s):
    for w in weights.values():
        w.abs_()
    return ex.global_magnitude_reference(weights, s)


def _layers_uniform(sizes, scan, target):
    return {name: target for name in sizes}  # every layer the target: floor(s·n) falls short overall


def _layers_uniform_above(sizes, scan, target):
    return {name: target + 0.005 for name in sizes}


def _layers_tolerance(sizes, scan, target):
    """Each layer at the highest scanned sparsity within a tolerance of the dense accuracy, the
    smallest tolerance that reaches the target: overshoots, and ignores what a layer's weights buy."""
    need = int(target * sum(sizes.values()))
    for drop in sorted({max(0.0, scan[n][0.0] - a) for n in scan for a in scan[n].values()}):
        chosen = {n: max(s for s, a in scan[n].items() if scan[n][0.0] - a <= drop) for n in sizes}
        if sum(int(chosen[n] * sizes[n]) for n in sizes) >= need:
            return chosen


def _layers_first_conv_too(sizes, scan, target):
    chosen = nb05_schedules.layer_sparsities_reference(sizes, scan, target)
    return {**chosen, next(iter(sizes)): 0.5}  # "a few hundred weights more": the most sensitive layer


def _layers_percent(sizes, scan, target):
    return {name: 100 * s for name, s in nb05_schedules.layer_sparsities_reference(sizes, scan, target).items()}


def _layers_only_pruned(sizes, scan, target):
    chosen = nb05_schedules.layer_sparsities_reference(sizes, scan, target)
    return {name: s for name, s in chosen.items() if s > 0}  # the dense layers left out


def _layers_drop_dense_in_place(sizes, scan, target):
    for row in scan.values():
        row.pop(0.0)  # "the dense column is the same for every layer": removed from the caller's scan
    return {name: min(0.98, target) for name in sizes}


WRONG = [  # (exercise, category, wrong answer, words of the hint it must get)
    ("wanda_scores", "norm-squared", _wanda_times_squared_norm, "its square ||X_j||²"),
    ("wanda_scores", "norm-sqrt", _wanda_times_sqrt_norm, "its square root"),
    ("wanda_scores", "magnitude", lambda w, n: w.abs(), "|W| alone (magnitude)"),
    ("wanda_scores", "in-place", _wanda_abs_in_place, "your function changed its input w"),
    ("im2col_input_norms", "no-padding", _im2col_no_padding, "use the conv's zero padding"),
    ("im2col_input_norms", "per-position", _im2col_mean_over_positions, "average over images only"),
    ("im2col_input_norms", "no-mean", _im2col_sum_over_images, "average over the 2 images"),
    ("im2col_input_norms", "in-place", _im2col_clamp_in_place, "your function changed its input x"),
    ("row_mask", "round", _row_mask_python_round, "you removed round(s·fan_in) = 5; remove floor(s·fan_in)"),
    ("row_mask", "ceil", _row_mask_ceil, "each row must keep exactly 13 (fan_in 18 - floor(0.3·18))"),
    ("row_mask", "ties-later-first", _row_mask_later_ties_first, "remove the EARLIER position first"),
    ("row_mask", "ties-zero-row", _row_mask_at_least, "scores tie at 0.5, right at the cut"),
    ("row_mask", "in-place", _row_mask_sorts_in_place, "your function changed its input scores"),
    ("nm_mask", "4:8-and-3:8", _nm_groups_of_four, "every group of 8 consecutive inputs must keep exactly 4"),
    ("nm_mask", "1:4", _nm_keep_half, "every group of 4 consecutive inputs must keep exactly 1"),
    ("nm_mask", "strided", _nm_strided_groups, "every group of 4 consecutive inputs must keep exactly 2"),
    ("nm_mask", "ties-later-first", _nm_later_ties_first, "remove the EARLIER position first"),
    ("nm_mask", "in-place", _nm_zero_in_place, "your function changed its input scores"),
    ("agp_sparsity", "inverted", _agp_inverted, "at t = T/2 the cubic schedule gives"),
    ("agp_sparsity", "after-T", _agp_unclipped_above, "after step T the sparsity must stay at the final 0.9"),
    ("agp_sparsity", "initial", _agp_from_zero, "at step 0 the sparsity must be the initial 0.2"),
    ("agp_sparsity", "T=0", _agp_t_zero_is_start, "T = 0 means the final sparsity 0.9 at once"),
    ("agp_sparsity", "T=0-before-start", _agp_before_start_first, "T = 0 comes first, then the rule for t < 0"),
    ("global_magnitude_masks", "signed", _global_signed, "rank by |w| over all layers"),
    ("global_magnitude_masks", "per-layer", _global_per_layer, "that is a per-layer ranking"),
    ("global_magnitude_masks", "ceil", _global_ceil, "34 weights removed; floor(s·total) = 33"),
    ("global_magnitude_masks", "ties-zero-layer", _global_at_most, "scores tie at 0, right at the cut"),
    ("global_magnitude_masks", "ties-layer-order", _global_reversed_layers, "layer after layer in the dict's order"),
    ("global_magnitude_masks", "in-place", _global_abs_in_place, "your function changed its input weights"),
    ("layer_sparsities", "floor", _layers_uniform, "you counted s·n, but a layer loses floor(s·n) weights"),
    ("layer_sparsities", "uniform", _layers_uniform_above, "the uniform choice"),
    ("layer_sparsities", "tolerance", _layers_tolerance, "together the cuts add up"),
    ("layer_sparsities", "sensitive-layer", _layers_first_conv_too, "pruned alone to 0.5 already falls to"),
    ("layer_sparsities", "percent", _layers_percent, "must lie in [0, 1)"),
    ("layer_sparsities", "dense-left-out", _layers_only_pruned, "return a sparsity for EVERY layer"),
    ("layer_sparsities", "in-place", _layers_drop_dense_in_place, "your function changed its input scan"),
]


def test_every_exercise_of_03_and_05_has_three_wrong_answers_of_the_categories_that_apply():
    names = [name for notebook in EXERCISES.values() for name in notebook]
    assert all(ex.REGISTRY[name].notebook in EXERCISES for name in names)
    assert {name for name, e in ex.REGISTRY.items() if e.notebook in EXERCISES} == set(names)
    categories = {name: {c for n, c, *_ in WRONG if n == name} for name in names}
    assert all(len(c) >= 3 for c in categories.values()), categories
    assert {"in-place"} <= set.intersection(*(categories[n] for n in names if n != "agp_sparsity"))
    assert {"round", "ceil", "ties-later-first", "ties-zero-row"} <= categories["row_mask"]
    assert {"4:8-and-3:8", "1:4", "ties-later-first"} <= categories["nm_mask"]
    assert {"T=0", "T=0-before-start", "after-T", "initial"} <= categories["agp_sparsity"]
    assert {"ceil", "ties-zero-layer", "ties-layer-order"} <= categories["global_magnitude_masks"]
    assert {"floor", "uniform", "tolerance"} <= categories["layer_sparsities"]


def test_the_decision_is_graded_by_accuracy_not_by_the_reference_choice(capsys):
    sizes, scan = nb05_schedules.decision_inputs()
    model = ex.course_model()[0]

    def lamp_choice(sizes, scan, target):  # another sound choice: the per-layer sparsities of global LAMP
        _, masks = unstructured.prune_model(model, "lamp", target, group="global")
        return {name: (int((~masks[name]).sum()) + 0.5) / n for name, n in sizes.items()}  # floor: that count

    if all(abs(a - scan[n][0.0]) < 5 for n in scan for a in scan[n].values()):
        pytest.skip("an untrained course model: the scan says nothing")
    assert lamp_choice(sizes, scan, 0.8) != nb05_schedules.layer_sparsities_reference(sizes, scan, 0.8)
    assert ex.check("layer_sparsities", lamp_choice) is True, capsys.readouterr().out
    assert "validation images" in capsys.readouterr().out


def test_decision_inputs_are_copies_of_what_the_checker_grades_with():
    sizes, scan = nb05_schedules.decision_inputs()
    assert list(sizes) == list(unstructured.select_layers(ex.course_model()[0], "all"))
    assert all(0.0 in row and sorted(row) == [0.0, *nb05_schedules.SCAN_SPARSITIES] for row in scan.values())
    scan[next(iter(scan))].clear()
    assert all(len(row) == 1 + len(nb05_schedules.SCAN_SPARSITIES) for row in nb05_schedules.decision_inputs()[1].values())


# --------------------------------------------------------------------------- the notebooks: exercise first
def _cells(notebook: str) -> list[dict]:
    return json.loads((NOTEBOOKS_DIR / NOTEBOOKS[notebook]).read_text())["cells"]


def _text(cell: dict) -> str:
    return "".join(cell["source"])


@pytest.mark.parametrize("notebook", sorted(EXERCISES))
def test_each_exercise_comes_before_its_answer_and_drives_what_follows(notebook):
    cells = _cells(notebook)
    for name in EXERCISES[notebook]:
        stub = next(i for i, c in enumerate(cells) if c["cell_type"] == "code" and f"def {name}(" in _text(c))
        source = _text(cells[stub])
        assert "raise NotImplementedError" in source, name
        assert source.rstrip().endswith(f'if check("{name}", {name}):\n    show("{name}")'), name
        code_before = [_text(c) for c in cells[:stub] if c["cell_type"] == "code"]
        assert not any(f'show("{name}")' in s or f'solution("{name}")' in s for s in code_before), name
        contract = next(_text(c) for c in reversed(cells[:stub]) if c["cell_type"] == "markdown")
        assert f"`{name}(" in contract or f"`{name}`" in contract, name
        assert any(re.search(rf'use\("{name}", {name}\)', _text(c)) for c in cells[stub + 1:]), name


def test_the_contracts_state_ties_and_rounding():
    contracts = {name: next(_text(c) for c in _cells(nb) if c["cell_type"] == "markdown" and f"`{name}(" in _text(c))
                 for nb, names in EXERCISES.items() for name in names}
    for name in ("row_mask", "nm_mask", "global_magnitude_masks"):
        assert "earlier" in contracts[name] and "Ties" in contracts[name], name
    assert r"\lfloor" in contracts["row_mask"] and "not the rounded value" in contracts["row_mask"]
    assert "T = 0" in contracts["agp_sparsity"] and "before the start" in contracts["agp_sparsity"]
    assert "floor" in contracts["layer_sparsities"]
    for contract in contracts.values():  # the contract, never the code
        assert not re.search(r"\.(reshape|scatter_|argsort|sort|topk|unfold)\(", contract), contract


@pytest.mark.parametrize("notebook, printed", [("03", "impl.describe()"), ("05", "ranking_impl.describe()")])
def test_the_notebooks_print_which_implementation_ran(notebook, printed):
    assert any(printed in _text(c) for c in _cells(notebook) if c["cell_type"] == "code")

def _markdown_with(notebook: str, text: str) -> str:
    """The one markdown cell of ``notebook`` (03 or 05) that contains ``text``, its whitespace runs as one space."""
    cells = json.loads((NOTEBOOKS_DIR / NOTEBOOKS[notebook]).read_text())["cells"]
    sources = [" ".join("".join(c["source"]).split()) for c in cells if c["cell_type"] == "markdown"]
    (source,) = [s for s in sources if text in s]
    return source


def test_05_contracts_state_what_the_checkers_grade():
    bar = _markdown_with("05", "`layer_sparsities(sizes, scan, target)`")
    assert f"within **{nb05_schedules.DECISION_MARGIN_PP:g} percentage points** of the reference's choice" in bar
    agp = _markdown_with("05", "**Exercise 1 — `agp_sparsity")
    assert "$T = 0$" in agp and "negative ones included" in agp  # T = 0 comes before the rule for t < 0
