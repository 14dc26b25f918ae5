"""Structured pruning: the surgery is exact, really removes parameters, and rebuilds from disk."""
import pytest
import torch

from helpers import load, save
from helpers.counting import count_macs, count_parameters
from helpers.models import CNNConfig, build_model
from helpers.pruning import structured as st


def _zero_out(model, conv_keep, fc_keep):
    """Zero every filter/unit not kept, with zero BN shift, so removed channels output exactly 0."""
    with torch.no_grad():
        for block, keep in zip(model.features, conv_keep):
            gone = st.removed_indices(block.conv.out_channels, keep)
            block.conv.weight[gone] = 0.0
            block.bn.bias[gone] = 0.0          # β = 0 ...
            block.bn.running_mean[gone] = 0.0  # ... and μ = 0: BN(0) = 0, ReLU(0) = 0
        for fc, keep in zip(model.linear_layers()[:-1], fc_keep):
            gone = st.removed_indices(fc.out_features, keep)
            fc.weight[gone] = 0.0
            fc.bias[gone] = 0.0


def _random_keeps(config, seed=1, fraction=0.5):
    g = torch.Generator().manual_seed(seed)
    pick = lambda n: torch.randperm(n, generator=g)[:max(1, int(n * fraction))]
    return [pick(c) for c in config.conv_channels], [pick(f) for f in config.fc_features]


def test_surgery_is_exact_when_the_removed_filters_were_zero(random_model):
    conv_keep, fc_keep = _random_keeps(random_model.config)
    with torch.no_grad():  # larger FC weights, so that the logits vary clearly with the input
        for fc in random_model.linear_layers():
            fc.weight.mul_(8.0)
    _zero_out(random_model, conv_keep, fc_keep)
    x = torch.rand(16, 1, 28, 28)
    with torch.no_grad():
        before = random_model(x)
        small = st.remove_channels(random_model, conv_keep, fc_keep)
        after = small(x)
    assert small.config.conv_channels == (16, 32, 64) and small.config.fc_features == (500, 60)
    assert torch.allclose(before, after, atol=1e-5, rtol=1e-5)
    assert before.std(0).max() > 0.1  # a real comparison: outputs vary with the input


def test_removed_channels_are_really_gone(random_model):
    small = st.prune_l1(random_model, conv_ratios=[0.25, 0.5, 0.75], fc_ratios=[0.9, 0.5])
    assert small.config.conv_channels == (24, 32, 32) and small.config.fc_features == (100, 60)
    shapes = {name: tuple(m.weight.shape) for name, m in small.named_modules() if hasattr(m, "weight")
              and m.weight is not None and name.endswith(("conv", "bn", "fc1", "fc2", "fc3"))}
    assert shapes["features.block1.conv"] == (24, 1, 3, 3)
    assert shapes["features.block2.conv"] == (32, 24, 3, 3)
    assert shapes["features.block3.conv"] == (32, 32, 3, 3)
    assert shapes["features.block3.bn"] == (32,)
    assert shapes["classifier.fc1"] == (100, 32 * 9)
    assert shapes["classifier.fc2"] == (60, 100)
    assert shapes["classifier.fc3"] == (10, 60)  # output units never pruned
    conv = 24 * 9 + 2 * 24 + 32 * 24 * 9 + 2 * 32 + 32 * 32 * 9 + 2 * 32
    fc = 288 * 100 + 100 + 100 * 60 + 60 + 60 * 10 + 10
    assert count_parameters(small) == conv + fc
    assert count_macs(small) < count_macs(random_model) / 3
    assert all(bn.running_var.shape == (c,) for bn, c in zip(small.bn_layers(), (24, 32, 32)))


def test_kept_weights_and_bn_statistics_are_copied_exactly(random_model):
    conv_keep, fc_keep = _random_keeps(random_model.config, seed=3, fraction=0.4)
    small = st.remove_channels(random_model, conv_keep, fc_keep)
    k1, k2, k3 = (k.sort().values for k in conv_keep)
    f1, f2 = (k.sort().values for k in fc_keep)
    old, new = random_model, small
    assert torch.equal(new.features.block2.conv.weight, old.features.block2.conv.weight[k2][:, k1])
    for key in ("weight", "bias", "running_mean", "running_var"):
        assert torch.equal(getattr(new.features.block3.bn, key), getattr(old.features.block3.bn, key)[k3])
    assert torch.equal(new.classifier.fc2.weight, old.classifier.fc2.weight[f2][:, f1])
    assert torch.equal(new.classifier.fc3.weight, old.classifier.fc3.weight[:, f2])
    assert torch.equal(new.classifier.fc3.bias, old.classifier.fc3.bias)


def test_fc1_columns_follow_the_kept_channels_of_the_last_conv(random_model):
    # channel c of the last feature map (3 x 3) owns fc1 columns 9c .. 9c + 8
    assert st.fc1_columns(torch.tensor([0, 2]), 9).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8,
                                                                18, 19, 20, 21, 22, 23, 24, 25, 26]
    keep3 = torch.tensor([5, 17, 100, 127])
    small = st.remove_channels(random_model, [None, None, keep3])
    for j, c in enumerate(keep3.tolist()):
        assert torch.equal(small.classifier.fc1.weight[:, 9 * j:9 * j + 9],
                           random_model.classifier.fc1.weight[:, 9 * c:9 * c + 9])
    # and functionally: the kept channels' features, fed through fc1, give the same pre-activations
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        feats = random_model.features(random_model.normalize(x))
        masked = torch.zeros_like(feats)
        masked[:, keep3] = feats[:, keep3]
        expected = random_model.classifier.fc1(masked.flatten(1))
        got = small.classifier.fc1(small.features(small.normalize(x)).flatten(1))
    assert torch.allclose(expected, got, atol=1e-5)


def test_l1_pruning_removes_the_filters_with_smallest_l1_norm(random_model):
    with torch.no_grad():
        random_model.features.block1.conv.weight[[3, 7, 11]] *= 1e-3
    plan = st.plan_l1(random_model, conv_ratios=[3 / 32, 0.0, 0.0])
    assert set(range(32)) - set(plan.conv[0].tolist()) == {3, 7, 11}
    scores = st.conv_filter_l1(random_model)[0]
    assert torch.allclose(scores, random_model.features.block1.conv.weight.abs().sum((1, 2, 3)))


def test_a_pruned_model_round_trips_through_save_and_load(random_model, tmp_path):
    small = st.prune_l1(random_model, 0.5, [0.8, 0.5]).eval()
    path = save(small, tmp_path / "02_pruned.pt")
    loaded = load(path)
    assert loaded.config == small.config == CNNConfig(conv_channels=(16, 32, 64), fc_features=(200, 60))
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), small(x))
    assert path.stat().st_size < 0.25 * (4 * count_parameters(random_model))


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5, float("nan"), "half"])
def test_ratios_outside_zero_one_are_rejected(random_model, ratio):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        st.prune_l1(random_model, ratio)


def test_a_ratio_that_removes_every_filter_is_rejected(random_model):
    with pytest.raises(ValueError, match="would remove all 32"):
        st.prune_l1(random_model, [0.99, 0.0, 0.0])
    with pytest.raises(ValueError, match="keeping no filters"):
        st.remove_channels(random_model, [torch.tensor([], dtype=torch.long), None, None])
    with pytest.raises(ValueError, match="one ratio per layer"):
        st.prune_l1(random_model, [0.5, 0.5])
    with pytest.raises(ValueError, match="duplicates"):
        st.remove_channels(random_model, [torch.tensor([1, 1]), None, None])


def test_sensitivity_scan_uses_the_given_batches_and_prunes_one_layer_at_a_time(random_model):
    calls = []

    def fake_accuracy(model, batches):
        calls.append(model.config)
        return 50.0

    scan = st.sensitivity_scan(random_model, "validation batches", [0.0, 0.5], evaluate_fn=fake_accuracy)
    assert list(scan) == ["features.block1.conv", "features.block2.conv", "features.block3.conv",
                          "classifier.fc1", "classifier.fc2"]
    assert calls[1] == CNNConfig(conv_channels=(16, 64, 128), fc_features=(1000, 120))
    assert calls[7] == CNNConfig(conv_channels=(32, 64, 128), fc_features=(500, 120))


def test_ratios_from_sensitivity_pick_the_largest_safe_ratio():
    scan = {"a": [90.0, 89.8, 89.0, 80.0], "b": [90.0, 85.0, 89.9, 89.9]}
    chosen = st.ratios_from_sensitivity(scan, [0.0, 0.3, 0.5, 0.7], reference=90.0, max_drop=0.5)
    assert chosen == {"a": 0.3, "b": 0.0}  # b: stops at the first ratio that hurts
    with pytest.raises(ValueError):
        st.ratios_from_sensitivity(scan, [0.0, 0.3, 0.5, 0.7], reference=90.0, max_drop=-1)


def test_step_by_step_reaches_the_one_shot_shape_and_rescores_each_step(random_model):
    seen = []
    final = st.prune_step_by_step(random_model, 0.5, [0.8, 0.5], steps=4,
                                  between=lambda m, k: seen.append(m.config.conv_channels))
    one_shot = st.prune_one_shot(random_model, 0.5, [0.8, 0.5])
    assert final.config == one_shot.config
    assert seen == [(28, 56, 112), (24, 48, 96), (20, 40, 80), (16, 32, 64)]
    # conv1 scores do not depend on other layers: there, step by step removes what one shot removes
    x = torch.rand(2, 1, 28, 28)
    steps = st.prune_step_by_step(random_model, [0.5, 0, 0], 0.0, steps=3)
    with torch.no_grad():
        assert torch.allclose(steps.eval()(x), st.prune_l1(random_model, [0.5, 0, 0]).eval()(x), atol=1e-6)
    with pytest.raises(ValueError, match="positive integer"):
        st.step_fractions(0)


def test_surgery_keeps_device_and_mode(random_model):
    small = st.prune_l1(random_model.train(), 0.5)
    assert small.training
    assert next(small.parameters()).device == next(random_model.parameters()).device


def test_layer_ratios_scale_the_conv_ratio_and_use_safe_fc_ratios(random_model):
    ratios = [0.25, 0.5, 0.75]
    scan = {"features.block1.conv": [92, 90, 80], "features.block2.conv": [80, 50, 20],
            "features.block3.conv": [93, 92, 91], "classifier.fc1": [93, 93, 92.5], "classifier.fc2": [93, 91, 85]}
    assert st.most_sensitive(scan, st.conv_layer_names(random_model)) == "features.block2.conv"
    conv, fc = st.layer_ratios(random_model, scan, ratios, reference=93.0, conv_ratio=0.5, max_drop=1.0,
                               conv_scale=[1.0, 0.75, 0.5])
    assert conv == [0.5, 0.375, 0.25] and fc == [0.75, 0.25]
    _, capped = st.layer_ratios(random_model, scan, ratios, 93.0, 0.5, 1.0, [1, 1, 1], fc_cap=[0.5, 0.0])
    assert capped == [0.5, 0.0]
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        st.layer_ratios(random_model, scan, ratios, 93.0, conv_ratio=1.2, max_drop=1.0, conv_scale=[1, 1, 1])
    with pytest.raises(ValueError, match="one factor"):
        st.layer_ratios(random_model, scan, ratios, 93.0, conv_ratio=0.5, max_drop=1.0, conv_scale=[1, 1])


def _l1(weight):
    return weight.abs().flatten(1).sum(1)


def test_a_scorer_replaces_the_l1_scores_everywhere_it_ranks(random_model):
    assert all(torch.equal(a, b) for a, b in zip(st.l1_scores(random_model, _l1).values(),
                                                 st.l1_scores(random_model).values()))
    reverse = lambda w: -_l1(w)  # noqa: E731  keeps the LARGEST filters' opposites: the smallest survive
    plan = st.plan_l1(random_model, 0.5, 0.5, scorer=reverse)
    lowest = st.conv_filter_l1(random_model)[0].argsort()[:16].sort().values
    assert torch.equal(plan.conv[0], lowest)
    assert st.prune_l1(random_model, 0.5, 0.5, scorer=reverse).config == st.prune_l1(random_model, 0.5, 0.5).config
    seen = []

    def spy(weight):
        seen.append(tuple(weight.shape))
        return _l1(weight)

    st.prune_step_by_step(random_model, 0.5, 0.0, steps=2, scorer=spy)
    assert len(seen) == 2 * 5 and seen[5][0] == 24  # re-scored at every step, the second time the smaller model
    seen.clear()
    st.sensitivity_scan(random_model, None, [0.5], evaluate_fn=lambda m, b: 50.0, scorer=spy)
    assert len(seen) == 5  # scored once, not once per pruned copy
    seen.clear()
    st.prune_one_shot(random_model, 0.5, 0.0, scorer=spy)
    assert len(seen) == 5


def test_a_scorer_gets_a_copy_and_must_give_one_score_per_filter(random_model):
    before = random_model.features.block1.conv.weight.detach().clone()
    st.l1_scores(random_model, lambda w: w.abs_().flatten(1).sum(1))
    assert torch.equal(random_model.features.block1.conv.weight, before)
    with pytest.raises(ValueError, match=r"features.block1.conv: .*shape \(32,\), got \(32, 9\)"):
        st.l1_scores(random_model, lambda w: w.abs().flatten(2).sum(1))


def test_fc1_columns_can_come_from_another_implementation(random_model):
    def by_hand(kept, spatial):
        return torch.tensor([c * spatial + i for c in kept.tolist() for i in range(spatial)])

    plan = st.plan_l1(random_model, 0.5, 0.0)
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(st.remove_channels(random_model, plan, columns=by_hand)(x),
                           st.remove_channels(random_model, plan)(x))
    with pytest.raises(ValueError, match="fc1 columns: expected 576"):
        st.remove_channels(random_model, plan, columns=lambda kept, spatial: kept)


def test_layer_ratios_can_take_another_safe_ratio_rule(random_model):
    ratios = [0.25, 0.5, 0.75]
    scan = {name: [93.0, 92.0, 80.0] for name in st.prunable_structure_names(random_model)}
    calls = []

    def rule(fc_scan, scan_ratios, reference, max_drop):
        calls.append((sorted(fc_scan), scan_ratios, reference, max_drop))
        return {name: 0.75 for name in fc_scan}

    conv, fc = st.layer_ratios(random_model, scan, ratios, 93.0, 0.5, 1.0, [1, 1, 1], fc_cap=[0.5, 0.9], safe=rule)
    assert calls == [(["classifier.fc1", "classifier.fc2"], ratios, 93.0, 1.0)]  # only the hidden FC layers
    assert fc == [0.5, 0.75] and conv == [0.5, 0.5, 0.5]
