"""Magnitude and Wanda masks: exact counts per comparison group, N:M groups, hand-computed
examples, im2col input norms against brute force, masks fixed through fine-tuning, bad input."""
import math

import pytest
import torch
from torch import nn

from helpers import save
from helpers.data import Batches
from helpers.models import prunable_layers
from helpers.pruning.sweeps import removed_weights, sensitivity_scan
from helpers.pruning.unstructured import (COURSE, Implementation, MaskKeeper, fold_masks, input_norms, is_learners,
                                          masked_fine_tune, masked_fine_tune_seeds, nm_mask, prune_model,
                                          prune_per_layer, row_mask, select_layers, wanda_scores)


@pytest.fixture(scope="module")
def calibration():
    torch.manual_seed(1)
    return torch.rand(64, 1, 28, 28)


def _hand_layer():
    """2 x 4 Linear with known weights; one calibration image gives input norms [1, 3, 2, 0.5]."""
    model = nn.Sequential(nn.Linear(4, 2, bias=False))
    model[0].weight.data = torch.tensor([[4.0, 1.0, -3.0, 2.0], [-1.0, 2.0, 6.0, -9.0]])
    return model, torch.tensor([[1.0, 3.0, 2.0, 0.5]])


def test_hand_computed_2x4_example():
    model, x = _hand_layer()
    # Wanda scores |W| * ||X||: row 0 = [4, 3, 6, 1], row 1 = [1, 6, 12, 4.5]
    assert torch.allclose(wanda_scores(model[0], input_norms(model, {"0": model[0]}, x)["0"]),
                          torch.tensor([[4.0, 3.0, 6.0, 1.0], [1.0, 6.0, 12.0, 4.5]]))
    _, wanda = prune_model(model, "wanda", 0.5, calibration=x)
    assert wanda["0"].tolist() == [[True, False, True, False], [False, True, True, False]]
    _, magnitude = prune_model(model, "magnitude", 0.5)  # |W| row 1 = [1, 2, 6, 9]
    assert magnitude["0"].tolist() == [[True, False, True, False], [False, False, True, True]]
    _, layer = prune_model(model, "wanda", 0.5, group="layer", calibration=x)
    assert layer["0"].tolist() == [[False, False, True, False], [False, True, True, True]]
    _, nm = prune_model(model, "wanda", nm=(2, 4), calibration=x)
    assert nm["0"].tolist() == wanda["0"].tolist()


def test_hand_example_pruned_weights_are_zero_and_original_untouched():
    model, x = _hand_layer()
    before = model[0].weight.clone()
    pruned, _ = prune_model(model, "wanda", 0.5, calibration=x)
    assert pruned[0].weight.tolist() == [[4.0, 0.0, -3.0, 0.0], [0.0, 2.0, 6.0, 0.0]]
    assert torch.equal(model[0].weight, before)


@pytest.mark.parametrize("sparsity", [0.1, 0.5, 0.73, 0.9, 0.95])
@pytest.mark.parametrize("sequential", [True, False])
def test_every_row_of_every_wanda_layer_has_exactly_floor_s_fan_in_zeros(random_model, calibration,
                                                                          sparsity, sequential):
    pruned, masks = prune_model(random_model, "wanda", sparsity, calibration=calibration,
                                sequential=sequential)
    assert set(masks) == set(prunable_layers(random_model))
    for name, layer in prunable_layers(pruned).items():
        rows = layer.weight.detach().reshape(layer.weight.shape[0], -1)
        expected = math.floor(sparsity * rows.shape[1])
        assert ((rows == 0).sum(1) == expected).all(), name
        assert torch.equal(rows == 0, ~masks[name].reshape(rows.shape))


def test_uniform_rule_leaves_one_weight_per_first_layer_filter(random_model, calibration):
    pruned, _ = prune_model(random_model, "wanda", 0.95, calibration=calibration)
    conv1 = pruned.features.block1.conv.weight.reshape(32, -1)
    assert ((conv1 != 0).sum(1) == 1).all()  # 9 weights per filter, floor(0.95 * 9) = 8 removed


@pytest.mark.parametrize("method", ["magnitude", "wanda"])
def test_layer_and_global_groups_remove_exact_counts(random_model, calibration, method):
    pruned, _ = prune_model(random_model, method, 0.8, group="layer", calibration=calibration)
    for layer in prunable_layers(pruned).values():
        assert int((layer.weight == 0).sum()) == math.floor(0.8 * layer.weight.numel())
    pruned, masks = prune_model(random_model, method, 0.8, group="global", calibration=calibration)
    total = sum(m.numel() for m in masks.values())
    zeros = sum(int((layer.weight == 0).sum()) for layer in prunable_layers(pruned).values())
    assert zeros == math.floor(0.8 * total)


def test_magnitude_row_mask_keeps_the_largest_weights_of_each_row():
    scores = torch.tensor([[0.1, 0.5, 0.3, 0.9], [2.0, 1.0, 3.0, 0.0]])
    assert row_mask(scores, 0.5).tolist() == [[False, True, False, True], [True, False, True, False]]


def test_inner_layer_choice_keeps_first_conv_and_classifier_dense(random_model, calibration):
    assert list(select_layers(random_model, "inner")) == [
        "features.block2.conv", "features.block3.conv", "classifier.fc1", "classifier.fc2"]
    pruned, masks = prune_model(random_model, "wanda", 0.9, layers="inner", calibration=calibration)
    assert "features.block1.conv" not in masks and "classifier.fc3" not in masks
    assert torch.equal(pruned.features.block1.conv.weight, random_model.features.block1.conv.weight)
    assert torch.equal(pruned.classifier.fc3.weight, random_model.classifier.fc3.weight)


@pytest.mark.parametrize("n, m", [(2, 4), (4, 8)])
@pytest.mark.parametrize("method", ["magnitude", "wanda"])
def test_nm_every_group_of_m_inputs_has_at_least_m_minus_n_zeros(random_model, calibration, n, m, method):
    pruned, masks = prune_model(random_model, method, nm=(n, m), layers="inner", calibration=calibration)
    for name in masks:
        weight = dict(pruned.named_modules())[name].weight.detach()
        grouped = weight.permute(0, 2, 3, 1) if weight.ndim == 4 else weight  # conv: along C_in
        zeros = (grouped.reshape(-1, m) == 0).sum(1)
        assert (zeros >= m - n).all(), name
        assert (zeros == m - n).all(), name  # random weights have no zeros of their own


def test_nm_conv_groups_run_along_input_channels():
    scores = torch.arange(2 * 4 * 3 * 3, dtype=torch.float).reshape(2, 4, 3, 3)
    mask = nm_mask(scores, 2, 4)
    # at each kernel position the two largest of the 4 input channels (channels 2 and 3) survive
    assert mask[:, 2:].all() and not mask[:, :2].any()


def test_conv_im2col_norms_match_brute_force():
    torch.manual_seed(0)
    for conv in (nn.Conv2d(2, 3, 3, padding=1, bias=False), nn.Conv2d(2, 3, 3, stride=2, bias=False)):
        x = torch.randn(3, 2, 6, 6)
        norms = input_norms(nn.Sequential(conv), {"0": conv}, x)["0"]
        pad, stride = conv.padding[0], conv.stride[0]
        xp = nn.functional.pad(x, [pad] * 4)
        out = (xp.shape[-1] - 3) // stride + 1
        expected = torch.zeros(2, 3, 3)
        for c in range(2):
            for ki in range(3):
                for kj in range(3):
                    for i in range(out):
                        for j in range(out):
                            patch_value = xp[:, c, i * stride + ki, j * stride + kj]
                            expected[c, ki, kj] += (patch_value ** 2).sum()
        assert torch.allclose(norms, (expected / 3).sqrt().flatten(), atol=1e-5)


def test_linear_norms_are_root_mean_square_per_input_feature():
    layer = nn.Linear(5, 2)
    x = torch.randn(7, 5)
    norms = input_norms(nn.Sequential(layer), {"0": layer}, x)["0"]
    assert torch.allclose(norms, x.pow(2).mean(0).sqrt())


def test_masks_stay_fixed_through_fine_tuning(random_model, quick_splits):
    pruned, masks = prune_model(random_model, "magnitude", 0.7, layers="inner")
    before = {n: dict(pruned.named_modules())[n].weight.detach().clone() for n in masks}
    train = Batches(quick_splits.train.head(256), 16, shuffle=True)
    masked_fine_tune(pruned, masks, train, epochs=1, lr=1e-3, device="cpu")
    for name, mask in masks.items():
        weight = dict(pruned.named_modules())[name].weight.detach()
        assert (weight[~mask] == 0).all(), name
        assert not torch.equal(weight[mask], before[name][mask]), f"{name} did not train"


def test_mask_keeper_reapplies_masks():
    model = nn.Sequential(nn.Linear(4, 2))
    mask = torch.tensor([[True, False, True, False], [False, True, True, True]])
    model[0].weight.data.fill_(1.0)
    MaskKeeper({"0": mask})(model)
    assert torch.equal(model[0].weight.data, mask.float())


def test_fold_masks_removes_torch_prune_reparametrisation(random_model, tmp_path):
    from torch.nn.utils import prune

    prune.l1_unstructured(random_model.classifier.fc1, "weight", amount=0.5)
    assert "classifier.fc1.weight_mask" in random_model.state_dict()
    fold_masks(random_model)
    state = random_model.state_dict()
    assert not any(k.endswith(("_orig", "_mask")) for k in state)
    assert int((state["classifier.fc1.weight"] == 0).sum()) == 1000 * 1152 // 2
    save(random_model, tmp_path / "folded.pt")


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, "0.5", None, True])
def test_sparsity_outside_unit_interval_is_rejected(random_model, bad):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        prune_model(random_model, "magnitude", bad)


@pytest.mark.parametrize("nm", [(4, 4), (5, 4), (0, 4), (2, 1)])
def test_n_not_below_m_is_rejected(random_model, nm):
    with pytest.raises(ValueError, match="N < M"):
        prune_model(random_model, "magnitude", nm=nm)


def test_nm_on_a_layer_whose_inputs_do_not_divide_is_rejected(random_model):
    with pytest.raises(ValueError, match="divisible"):
        prune_model(random_model, "magnitude", nm=(2, 4), layers="all")  # first conv: 1 input channel


@pytest.mark.parametrize("calibration", [None, torch.zeros(0, 1, 28, 28), []])
def test_wanda_without_calibration_data_is_rejected(random_model, calibration):
    with pytest.raises(ValueError, match="calibration"):
        prune_model(random_model, "wanda", 0.5, calibration=calibration)


def test_unknown_method_group_or_layers_is_rejected(random_model, calibration):
    with pytest.raises(ValueError, match="method"):
        prune_model(random_model, "random", 0.5)
    with pytest.raises(ValueError, match="group"):
        prune_model(random_model, "magnitude", 0.5, group="column")
    with pytest.raises(ValueError, match="layers"):
        prune_model(random_model, "magnitude", 0.5, layers="some")
    with pytest.raises(ValueError, match="unknown"):
        prune_model(random_model, "magnitude", 0.5, layers=["classifier.fc9"])


def test_batchnorm_recalibration_changes_only_running_statistics(random_model, calibration):
    pruned, _ = prune_model(random_model, "magnitude", 0.8, layers="inner")
    recal, _ = prune_model(random_model, "magnitude", 0.8, layers="inner", recalibrate_bn=True,
                           calibration=calibration)
    for (name, a), b in zip(pruned.state_dict().items(), recal.state_dict().values()):
        if "running" in name:
            assert not torch.equal(a, b), name
        elif "num_batches" not in name:
            assert torch.equal(a, b), name
    bn = recal.features.block2.bn
    with torch.no_grad():  # the new running mean is the batch mean of block2.conv's output
        h = recal.features.block1(recal.normalize(calibration))
        assert torch.allclose(bn.running_mean, recal.features.block2.conv(h).mean((0, 2, 3)), atol=1e-4)
    assert bn.momentum == 0.1 and not recal.training
    with pytest.raises(ValueError, match="calibration"):
        prune_model(random_model, "magnitude", 0.5, recalibrate_bn=True)


def test_sweep_scores_every_variant_and_sparsity(random_model, calibration):
    from helpers.pruning.sweeps import sweep

    seen = []
    rows = sweep(random_model, [0.5, 0.9], {"W": dict(method="wanda"), "M": dict(method="magnitude", group="layer")},
                 lambda m: float((m.classifier.fc1.weight == 0).float().mean()), calibration,
                 keep_masks_of="classifier.fc2", on_point=lambda m, r: seen.append(r["target"]))
    assert [(r["variant"], r["target"]) for r in rows] == [("W", 0.5), ("W", 0.9), ("M", 0.5), ("M", 0.9)]
    assert seen == [0.5, 0.9, 0.5, 0.9]
    for r in rows:
        assert r["accuracy"] == pytest.approx(r["target"], abs=1e-3)
        assert r["mask"].shape == (120, 1000)
        assert r["sparsity"] == pytest.approx(r["target"], abs=0.01)


def test_lamp_scores_match_the_definition_and_keep_magnitude_order_within_a_layer():
    from helpers.pruning.unstructured import lamp_scores

    layer = nn.Linear(2, 2, bias=False)
    layer.weight.data = torch.tensor([[1.0, -3.0], [2.0, 0.0]])
    # sorted squares 0, 1, 4, 9 -> suffix sums 14, 14, 13, 9
    expected = torch.tensor([[1 / 14, 9 / 9], [4 / 13, 0.0]])
    assert torch.allclose(lamp_scores(layer), expected)
    torch.manual_seed(0)
    big = nn.Linear(30, 20)
    order_lamp = lamp_scores(big).flatten().argsort()
    order_mag = big.weight.detach().abs().flatten().argsort()
    assert torch.equal(order_lamp, order_mag)


def test_global_lamp_spreads_sparsity_over_layers(random_model):
    from helpers.counting import layer_sparsity

    pruned, _ = prune_model(random_model, "lamp", 0.9, group="global")
    per_layer = layer_sparsity(pruned)
    assert sum(m.weight.numel() * per_layer[n] for n, m in prunable_layers(pruned).items()) == pytest.approx(
        math.floor(0.9 * sum(m.weight.numel() for m in prunable_layers(pruned).values())))
    assert all(v < 1.0 for v in per_layer.values())  # no layer is emptied


@pytest.mark.parametrize("method", ["magnitude", "lamp"])
def test_model_wide_global_pruning_counts_the_dense_layers_too(random_model, method):
    from helpers.counting import sparsity

    pruned, masks = prune_model(random_model, method, 0.9, group="global", layers="inner", model_wide=True)
    total = sum(m.weight.numel() for m in prunable_layers(random_model).values())
    assert sparsity(pruned) == pytest.approx(math.floor(0.9 * total) / total)
    assert "classifier.fc3" not in masks


def test_rows_from_records_pick_the_variants_points_in_order():
    from helpers.pruning.sweeps import rows_from_records
    records = [{"method": f"{v}, {kind}", "target_sparsity": s, "sparsity": s + 0.01, "test_accuracy": acc}
               for v, kind, s, acc in [("B", "no fine-tuning", 0.9, 20.0), ("A", "no fine-tuning", 0.9, 30.0),
                                       ("A", "no fine-tuning", 0.5, 90.0), ("A", "short fine-tune", 0.5, 91.0),
                                       ("C", "no fine-tuning", 0.5, 80.0)]]
    rows = rows_from_records(records, ["A", "B"])
    assert [(r["variant"], r["target"], r["accuracy"]) for r in rows] == [("A", 0.5, 90.0), ("A", 0.9, 30.0),
                                                                          ("B", 0.9, 20.0)]
    assert rows[0]["sparsity"] == 0.51
    assert [r["accuracy"] for r in rows_from_records(records, ["A"], "short fine-tune")] == [91.0]


def test_masks_from_zeros_recover_the_masks_of_a_pruned_model(random_model, calibration):
    from helpers.pruning.unstructured import masks_from_zeros
    pruned, masks = prune_model(random_model, "wanda", 0.5, layers="inner", calibration=calibration)
    recovered = masks_from_zeros(pruned, "inner")
    assert recovered.keys() == masks.keys()
    assert all(torch.equal(recovered[name], masks[name].to(recovered[name].device)) for name in masks)


# --------------------------------------------------------------------------- a learner's functions (Implementation)
def _my_wanda(weight, norms):  # written as a learner would, not through the course's code
    return weight.abs() * norms.reshape(1, *weight.shape[1:])


def _my_im2col(x, k, p):
    return torch.nn.functional.unfold(x, k, padding=p).pow(2).sum(dim=(0, 2)).div(len(x)).sqrt()


def _my_row_mask(scores, s):
    rows = scores.reshape(len(scores), -1)
    lowest = rows.argsort(dim=1, stable=True)[:, :int(s * rows.shape[1])]
    keep = torch.ones_like(rows, dtype=torch.bool)
    keep[torch.arange(len(rows))[:, None].expand_as(lowest), lowest] = False
    return keep.reshape(scores.shape)


def _my_nm_mask(scores, n, m):
    groups = scores.reshape(-1, m)
    return _my_row_mask(groups, (m - n) / m + 1e-9).reshape(scores.shape)


def _my_global(weights, s):
    flat = torch.cat([w.abs().flatten() for w in weights.values()])
    keep = _my_row_mask(flat[None], s)[0]
    return dict(zip(weights, (part.reshape(w.shape) for part, w in zip(keep.split([w.numel() for w in weights.values()]),
                                                                         weights.values()))))


LEARNERS = Implementation(wanda_scores=_my_wanda, im2col_input_norms=_my_im2col, row_mask=_my_row_mask,
                          nm_mask=_my_nm_mask, global_masks=_my_global)


@pytest.mark.parametrize("spec", [dict(method="wanda", sparsity=0.7, layers="inner", sequential=True),
                                  dict(method="wanda", sparsity=0.5, layers="inner", sequential=False),
                                  dict(method="wanda", nm=(2, 4), layers=["features.block2.conv", "classifier.fc1"]),
                                  dict(method="magnitude", nm=(1, 4), layers=["features.block3.conv"]),
                                  dict(method="magnitude", sparsity=0.8, group="global", layers="inner")])
def test_a_learners_functions_prune_exactly_as_the_courses(random_model, calibration, spec):
    course, course_masks = prune_model(random_model, calibration=calibration, **spec)
    theirs, their_masks = prune_model(random_model, calibration=calibration, impl=LEARNERS, **spec)
    assert all(torch.equal(course_masks[n], their_masks[n]) for n in course_masks)
    assert all(torch.equal(a, b) for a, b in zip(course.state_dict().values(), theirs.state_dict().values()))


def test_the_learners_functions_are_the_ones_that_run(random_model, calibration):
    calls = []

    def spy_row_mask(scores, s):
        calls.append(tuple(scores.shape))
        return _my_row_mask(scores, s)

    prune_model(random_model, "magnitude", 0.5, layers="inner", impl=Implementation(row_mask=spy_row_mask))
    assert calls == [tuple(m.weight.shape) for m in select_layers(random_model, "inner").values()]
    wrong = Implementation(wanda_scores=lambda w, n: w.abs())  # a wrong scorer changes the masks
    assert not torch.equal(prune_model(random_model, "wanda", 0.5, calibration=calibration, sequential=False)[1]
                           ["features.block2.conv"],
                           prune_model(random_model, "wanda", 0.5, calibration=calibration, sequential=False,
                                       impl=wrong)[1]["features.block2.conv"])


def test_implementation_says_which_functions_are_the_learners():
    from helpers import exercises as ex

    assert COURSE.describe() == "the course's own functions"
    mixed = Implementation(wanda_scores=_my_wanda, row_mask=ex.REGISTRY["row_mask"].reference)
    assert is_learners(_my_wanda) and not is_learners(row_mask) and not is_learners(None)
    assert mixed.describe() == "yours: wanda_scores · the reference: row_mask"
    assert LEARNERS.describe() == "yours: wanda_scores, im2col_input_norms, row_mask, nm_mask, global_masks"


def test_prune_per_layer_removes_floor_s_n_smallest_of_each_named_layer(random_model):
    pruned, masks = prune_per_layer(random_model, {"classifier.fc2": 0.73, "features.block2.conv": 0.0})
    assert list(masks) == ["classifier.fc2"]
    weight = random_model.classifier.fc2.weight.detach()
    assert int((~masks["classifier.fc2"]).sum()) == int(0.73 * weight.numel())
    assert weight.abs()[~masks["classifier.fc2"]].max() <= weight.abs()[masks["classifier.fc2"]].min()
    assert torch.equal(pruned.features.block2.conv.weight, random_model.features.block2.conv.weight)


def test_sensitivity_scan_prunes_one_layer_at_a_time(random_model):
    def zeros(model):
        return float(sum(int((m.weight == 0).sum()) for m in prunable_layers(model).values()))

    scan = sensitivity_scan(random_model, [0.9, 0.5], zeros, layers=["features.block2.conv", "classifier.fc3"])
    assert list(scan) == ["features.block2.conv", "classifier.fc3"]
    for name, row in scan.items():
        n = dict(random_model.named_modules())[name].weight.numel()
        assert list(row) == [0.0, 0.5, 0.9] and row[0.0] == 0.0
        assert row[0.9] == int(0.9 * n) and row[0.5] == int(0.5 * n)
    assert removed_weights({"a": 10, "b": 7}, {"a": 0.46, "b": 0.5}) == 4 + 3


def test_seeded_fine_tunes_repeat_per_seed_and_keep_the_masks(random_model, quick_splits):
    pruned, masks = prune_model(random_model, "magnitude", 0.8, layers="inner")
    score = lambda m: m.classifier.fc1.weight.detach().abs().sum().item()  # noqa: E731 - any function of the weights
    batches_for = lambda seed: Batches(quick_splits.train.head(64), 32, shuffle=True, augment=True, seed=seed)  # noqa
    first = masked_fine_tune_seeds(pruned, masks, [1, 2], batches_for, score, epochs=1)
    again = masked_fine_tune_seeds(pruned, masks, [1], batches_for, score, epochs=1)
    assert len(first) == 2 and first[0] == again[0] and first[0] != first[1]
    assert torch.equal(pruned.classifier.fc1.weight, prune_model(random_model, "magnitude", 0.8, layers="inner")[0]
                       .classifier.fc1.weight)  # the start is left alone
