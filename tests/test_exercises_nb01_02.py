"""Exercises of notebooks 01 and 02: every reference passes, plausible wrong answers fail with the hint
that names their mistake, the references agree with hand-computed values and with the helpers, and a
subtly wrong answer, had it passed, would change what it drives in the notebook.

``WRONG`` is read by tests/test_exercises.py too (every exercise needs three wrong answers and one
that changes its input): rows ``(exercise, category, function, words its hint must contain)``."""
import inspect
import math

import pytest
import torch

from helpers import exercises as ex
from helpers import models
from helpers.exercises import nb01_baseline, nb02_filters
from helpers.pruning import structured as st

NAMES = ("pixel_statistics", "normalize", "accuracy_from_logits", "filter_l1_scores", "fc1_kept_columns", "safe_ratios")


# ------------------------------------------------------------------------------ 01: pixel_statistics
def _stats(pixels):
    return pixels.mean().item(), pixels.std(correction=0).item()


def _stats_sample_std(images):
    pixels = images.double() / 255
    return pixels.mean().item(), pixels.std().item()  # n - 1: nan for a single pixel


def _stats_per_image(images):
    pixels = images.double().flatten(1) / 255
    return pixels.mean().item(), pixels.std(1, correction=0).mean().item()  # misses the spread between images


def _stats_squares_in_uint8(images):
    mean = images.double().mean() / 255
    mean_square = (images * images).double().mean() / 255 ** 2  # 200 * 200 wraps around in uint8
    return mean.item(), (mean_square - mean ** 2).sqrt().item()


def _stats_min_shift_in_place(images):
    images -= images.min()  # "start at 0", written into the caller's tensor
    return _stats(images.double() / 255)


# --------------------------------------------------------------------------- 01: accuracy, normalize
def _acc_last_of_ties(logits, labels):
    last = logits.shape[1] - 1 - logits.flip(1).argmax(1)  # the LAST of tied classes
    return 100.0 * (last == labels).double().mean().item()


# ------------------------------------------------------------------------------- 02: safe_ratios
def _safe_strict(scan, ratios, reference, max_drop):
    safe = {}
    for layer, accuracies in scan.items():
        safe[layer] = 0.0
        for ratio, accuracy in sorted(zip(ratios, accuracies)):
            if reference - accuracy >= max_drop:  # a drop of exactly max_drop counted as too much
                break
            safe[layer] = ratio
    return safe


def _safe_anywhere(scan, ratios, reference, max_drop):
    return {layer: max([0.0] + [r for r, a in zip(ratios, accuracies) if reference - a <= max_drop])
            for layer, accuracies in scan.items()}  # trusts a curve beyond its dip


def _safe_given_order(scan, ratios, reference, max_drop):
    safe = {}
    for layer, accuracies in scan.items():
        safe[layer] = 0.0
        for ratio, accuracy in zip(ratios, accuracies):  # assumes the ratios come sorted
            if reference - accuracy > max_drop:
                break
            safe[layer] = ratio
    return safe


def _safe_abs(scan, ratios, reference, max_drop):
    safe = {}
    for layer, accuracies in scan.items():
        safe[layer] = 0.0
        for ratio, accuracy in sorted(zip(ratios, accuracies)):
            if abs(reference - accuracy) > max_drop:  # a gain counted as a loss
                break
            safe[layer] = ratio
    return safe


def _safe_first_failing(scan, ratios, reference, max_drop):
    walk = lambda accuracies: sorted(zip(ratios, accuracies))  # noqa: E731
    return {layer: next((r for r, a in walk(accs) if reference - a > max_drop), max(ratios))
            for layer, accs in scan.items()}  # the first ratio that hurts, one too far


def _safe_none(scan, ratios, reference, max_drop):
    out = nb02_filters.safe_ratios_reference(scan, ratios, reference, max_drop)
    return {layer: (r if r else None) for layer, r in out.items()}


def _safe_sorts_in_place(scan, ratios, reference, max_drop):
    order = sorted(range(len(ratios)), key=ratios.__getitem__)
    for accuracies in scan.values():
        accuracies[:] = [accuracies[i] for i in order]  # sorts the caller's lists ...
    ratios.sort()  # ... and the caller's ratios
    return nb02_filters.safe_ratios_reference(scan, ratios, reference, max_drop)


WRONG = [
    ("pixel_statistics", "no-255", lambda images: _stats(images.double()), "scale the pixels to [0, 1]"),
    ("pixel_statistics", "256", lambda images: _stats(images.double() / 256), "divide by 255, not 256"),
    ("pixel_statistics", "sample-std", _stats_sample_std, "that is the sample std"),
    ("pixel_statistics", "per-image", _stats_per_image, "the differences BETWEEN images count too"),
    ("pixel_statistics", "uint8-wrap", _stats_squares_in_uint8, "wraps around at 256"),
    ("pixel_statistics", "swapped", lambda images: _stats(images.double() / 255)[::-1], "mean and std are swapped"),
    ("pixel_statistics", "in-place", _stats_min_shift_in_place, "your function changed its input images"),
    ("normalize", "mnist", lambda x: (x - 0.1307) / 0.3081, "those are MNIST's constants"),
    ("normalize", "generic", lambda x: (x - 0.5) / 0.5, "those are the generic constants"),
    ("normalize", "float32", lambda x: (x.float() - 0.2860) / 0.3530, "return the input's dtype, float64"),
    ("normalize", "in-place", lambda x: x.sub_(0.2860).div_(0.3530), "your function changed its input x"),
    ("accuracy_from_logits", "round", lambda lg, lb: float(round(100 * int((lg.argmax(1) == lb).sum()) / len(lb))),
     "got the whole number 33"),
    ("accuracy_from_logits", "2-decimals", lambda lg, lb: round(100 * int((lg.argmax(1) == lb).sum()) / len(lb), 2),
     "got 33.33: return the exact value"),
    ("accuracy_from_logits", "last-tie", _acc_last_of_ties, "argmax takes the FIRST"),
    ("accuracy_from_logits", "dim-0", lambda lg, lb: 100.0 * (lg.argmax(0) == lb).double().mean().item(),
     "your function raised RuntimeError"),
    ("accuracy_from_logits", "in-place", lambda lg, lb: 100.0 * (lg.sub_(lg.amax(1, keepdim=True)).argmax(1) == lb)
     .double().mean().item(), "your function changed its input lg"),
    ("filter_l1_scores", "conv-only", lambda w: w.abs().sum(dim=(1, 2, 3)), "a Linear weight is 2-D"),
    ("filter_l1_scores", "max", lambda w: w.abs().flatten(1).amax(1), "entries differ"),
    ("filter_l1_scores", "two-dims", lambda w: w.abs().sum(dim=(1, 2)), "must have shape (5,)"),
    ("filter_l1_scores", "in-place", lambda w: w.abs_().flatten(1).sum(1), "your function changed its input w"),
    ("fc1_kept_columns", "removed", lambda kept, spatial: st.fc1_columns(st.removed_indices(int(kept.max()) + 1, kept),
                                                                         spatial), "expected 18 columns"),
    ("fc1_kept_columns", "end-exclusive", lambda kept, spatial: torch.cat(
        [torch.arange(c * spatial, (c + 1) * spatial - 1) for c in kept.tolist()]), "expected 18 columns"),
    ("fc1_kept_columns", "position-major", lambda kept, spatial: torch.stack(
        [kept * spatial + i for i in range(spatial)]).flatten(), "right columns, wrong order"),
    ("fc1_kept_columns", "in-place",
     lambda kept, spatial: (kept.mul_(spatial)[:, None] + torch.arange(spatial)).flatten(),
     "your function changed its input kept"),
    ("safe_ratios", "ties", _safe_strict, "a drop of exactly max_drop = 2 is within it"),
    ("safe_ratios", "dip", _safe_anywhere, "at ratio 0.5 the drop is already 4 > 2"),
    ("safe_ratios", "unsorted", _safe_given_order, "the ratios come in any order"),
    ("safe_ratios", "abs", _safe_abs, "an accuracy ABOVE the reference is no drop"),
    ("safe_ratios", "one-too-far", _safe_first_failing, "at ratio 0.75 the drop is 10 > max_drop 2"),
    ("safe_ratios", "none", _safe_none, "return 0.0 (prune nothing), not None"),
    ("safe_ratios", "in-place", _safe_sorts_in_place, "your function changed its input"),
]


def test_every_exercise_of_01_and_02_has_three_wrong_answers_here():
    counts = {name: sum(row[0] == name for row in WRONG) for name in NAMES}
    assert min(counts.values()) >= 3, counts
    assert {ex.REGISTRY[name].notebook for name in NAMES} == {"01", "02"}
    assert {n for n, e in ex.REGISTRY.items() if e.notebook in ("01", "02")} == set(NAMES)


# ------------------------------------------------------------------ references against hand values
def test_pixel_statistics_on_hand_computed_cases():
    image = torch.tensor([[[0, 255], [51, 102]]], dtype=torch.uint8)  # 0, 1, 0.2, 0.4: mean 0.4
    mean, std = nb01_baseline.pixel_statistics_reference(image)
    assert mean == pytest.approx(0.4) and std == pytest.approx(math.sqrt((0.16 + 0.36 + 0.04 + 0.0) / 4))
    assert nb01_baseline.pixel_statistics_reference(torch.full((1, 1, 1), 200, dtype=torch.uint8))[1] == 0.0
    greys = torch.tensor([0, 255], dtype=torch.uint8)[:, None, None].expand(2, 3, 3)  # half black, half white
    assert nb01_baseline.pixel_statistics_reference(greys) == pytest.approx((0.5, 0.5))


def test_safe_ratios_reference_and_the_helper_agree_with_hand_values():
    scan = {"flat": [93.9, 93.5, 93.0], "dip": [93.5, 90.0, 93.8], "steep": [80.0, 70.0, 60.0]}
    ratios, want = [0.2, 0.4, 0.6], {"flat": 0.6, "dip": 0.2, "steep": 0.0}
    for fn in (nb02_filters.safe_ratios_reference, st.ratios_from_sensitivity):
        assert fn(scan, ratios, 94.0, 1.5) == want
        assert fn({"flat": scan["flat"][::-1]}, ratios[::-1], 94.0, 1.5) == {"flat": 0.6}  # any order
    big, big_ratios = nb02_filters._scan_table(5)
    for max_drop in (0.0, 0.5, 1.0, 2.0, 5.0):
        assert st.ratios_from_sensitivity(big, big_ratios, 94.02, max_drop) == \
            nb02_filters.safe_ratios_reference(big, big_ratios, 94.02, max_drop)


def test_filter_l1_reference_equals_the_helpers_scores_on_every_layer():
    model = ex.course_model()[0]
    assert all(torch.allclose(st.l1_scores(model, nb02_filters.filter_l1_reference)[name], score)
               for name, score in st.l1_scores(model).items())


# ------------------------------------------- a subtly wrong answer would change what it drives
def test_a_wrong_filter_score_would_prune_other_filters(random_model):
    l2 = lambda w: w.flatten(1).norm(dim=1)  # noqa: E731  (L2 instead of L1: refused by check)
    assert ex.check("filter_l1_scores", l2) is False
    right = st.plan_l1(random_model, 0.5, 0.5, scorer=nb02_filters.filter_l1_reference)
    assert all(torch.equal(a, b) for a, b in zip(right.conv + right.fc, st.plan_l1(random_model, 0.5, 0.5).conv
                                                  + st.plan_l1(random_model, 0.5, 0.5).fc))
    wrong = st.plan_l1(random_model, 0.5, 0.5, scorer=l2)
    assert any(not torch.equal(a, b) for a, b in zip(right.conv + right.fc, wrong.conv + wrong.fc))


def test_wrong_fc1_columns_would_change_the_pruned_models_outputs(random_model):
    plan = st.plan_l1(random_model, 0.5, 0.3)
    x = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        exact = st.remove_channels(random_model, plan)(x)
        assert torch.equal(st.remove_channels(random_model, plan, columns=st.fc1_columns)(x), exact)
        wrong = dict((row[1], row[2]) for row in WRONG if row[0] == "fc1_kept_columns")["position-major"]
        assert not torch.allclose(st.remove_channels(random_model, plan, columns=wrong)(x), exact)


def test_a_safe_ratio_past_the_dip_would_prune_a_layer_harder(random_model):
    ratios = [0.25, 0.5, 0.75]
    scan = {name: [93.0, 93.0, 93.0] for name in st.prunable_structure_names(random_model)}
    scan["classifier.fc1"] = [92.5, 88.0, 92.8]  # a dip at 0.5, recovering at 0.75
    right = st.layer_ratios(random_model, scan, ratios, 93.0, 0.3, 1.0, [1, 1, 1],
                            safe=nb02_filters.safe_ratios_reference)
    wrong = st.layer_ratios(random_model, scan, ratios, 93.0, 0.3, 1.0, [1, 1, 1], safe=_safe_anywhere)
    assert right == st.layer_ratios(random_model, scan, ratios, 93.0, 0.3, 1.0, [1, 1, 1])
    assert right[1] == [0.25, 0.75] and wrong[1] == [0.75, 0.75]
    fc1_kept = [st.prune_l1(random_model, *ratios).config.fc_features[0] for ratios in (wrong, right)]
    assert fc1_kept[0] < fc1_kept[1]


def test_use_hands_the_learners_function_to_what_follows(capsys):
    def mine(weight):
        return weight.abs().flatten(1).sum(1)

    assert ex.use("filter_l1_scores", mine) is mine and ex.in_use("filter_l1_scores") == "yours"
    assert ex.use("safe_ratios", _safe_anywhere) is nb02_filters.safe_ratios_reference
    assert "run the reference" in capsys.readouterr().out.splitlines()[-1]

def test_show_after_pixel_statistics_gives_away_no_part_of_normalize(capsys):
    # the cell before normalize's stub runs show("pixel_statistics"): it must not print (x - mean) / std
    shown = ex.show("pixel_statistics")
    capsys.readouterr()
    assert "FASHION_MNIST_MEAN" in shown and "FASHION_MNIST_STD" in shown  # where the model keeps the numbers
    assert inspect.getsource(models.Normalize.forward).strip() not in shown
    assert not any(text in shown for text in ("/ self.std", "- self.mean", "(x - mean) / std"))
    assert "0.2860" not in ex.REGISTRY["normalize"].statement  # nor does `--list` print the formula
