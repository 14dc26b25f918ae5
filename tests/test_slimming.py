"""Network Slimming: the γ penalty really changes the gradients; threshold, floors and removal."""
import pytest
import torch
from torch import nn

from helpers import load, save
from helpers.pruning import slimming as sl
from helpers.pruning import structured as st


def _gamma_grads(model, x, y):
    model.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    return [bn.weight.grad.clone() for bn in model.bn_layers()]


def test_the_penalty_adds_s_sign_gamma_to_the_gamma_gradients(random_model):
    model = random_model.train()
    with torch.no_grad():
        model.features.block2.bn.weight[:5] *= -1  # some negative γ, to see the sign
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    torch.manual_seed(0)
    plain = _gamma_grads(model, x, y)
    s = 1e-3
    with sl.gamma_l1_penalty(model, s):
        torch.manual_seed(0)  # same dropout masks
        penalised = _gamma_grads(model, x, y)
        conv_grad_with = model.features.block2.conv.weight.grad.clone()
    for bn, g0, g1 in zip(model.bn_layers(), plain, penalised):
        assert torch.allclose(g1 - g0, s * torch.sign(bn.weight.detach()), atol=1e-7)
    torch.manual_seed(0)
    after = _gamma_grads(model, x, y)  # hooks are gone after the with-block
    assert all(torch.allclose(a, p) for a, p in zip(after, plain))
    assert torch.allclose(conv_grad_with, model.features.block2.conv.weight.grad)  # only γ changes


def test_sparsity_training_shrinks_gamma_with_plain_sgd(random_model):
    model = random_model.train()
    opt = torch.optim.SGD([bn.weight for bn in model.bn_layers()], lr=0.1)
    before = sl.gamma_l1(model)
    with sl.gamma_l1_penalty(model, s=0.05):
        for _ in range(5):
            opt.zero_grad()
            (model(torch.rand(4, 1, 28, 28)).sum() * 0).backward()  # only the penalty acts
            opt.step()
    n = sum(bn.num_features for bn in model.bn_layers())
    assert sl.gamma_l1(model) == pytest.approx(before - 5 * 0.1 * 0.05 * n, rel=1e-4)


def test_bad_penalty_is_rejected(random_model):
    with pytest.raises(ValueError, match=">= 0"):
        sl.add_gamma_l1_hooks(random_model, -1e-4)


def test_global_threshold_ranks_all_layers_together(random_model):
    with torch.no_grad():
        for bn in random_model.bn_layers():
            bn.weight.fill_(1.0)
        random_model.features.block3.bn.weight[:100] = 0.01  # 100 tiny γ, all in block 3
    plan = sl.slimming_plan(random_model, ratio=100 / 224, min_channels=1)
    assert plan.conv_channels == (32, 64, 28)
    assert 0.01 < plan.threshold < 1.0
    assert plan.removed_fraction == pytest.approx(100 / 224)
    assert set(plan.keep.conv[2].tolist()) == set(range(100, 128))


def test_min_channels_per_layer_are_kept(random_model):
    with torch.no_grad():
        for bn in random_model.bn_layers():
            bn.weight.fill_(1.0)
        random_model.features.block1.bn.weight.copy_(torch.linspace(0.001, 0.01, 32))  # all tiny
    plan = sl.slimming_plan(random_model, ratio=0.2, min_channels=4)
    assert plan.conv_channels[0] == 4
    assert plan.keep.conv[0].tolist() == [28, 29, 30, 31]  # the four largest |γ| of block 1
    assert plan.removed_fraction < 0.2
    with pytest.raises(ValueError, match="removes every channel of features.block1.conv"):
        sl.slimming_plan(random_model, ratio=0.2, min_channels=0)
    with pytest.raises(ValueError, match="min_channels"):
        sl.slimming_plan(random_model, ratio=0.2, min_channels=33)


@pytest.mark.parametrize("ratio", [-0.5, 1.0, 2.0])
def test_slimming_ratio_outside_zero_one_is_rejected(random_model, ratio):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        sl.slim(random_model, ratio)


def test_slim_removes_channels_for_real_and_round_trips(random_model, tmp_path):
    small = sl.slim(random_model, ratio=0.5, min_channels=2).eval()
    assert sum(small.config.conv_channels) == 224 - 112
    assert small.config.fc_features == random_model.config.fc_features
    loaded = load(save(small, tmp_path / "04_slim.pt"))
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), small(x))


def test_absorbing_removed_channels_is_exact_for_zero_gamma_channels_of_the_last_block(random_model):
    keep3 = torch.arange(0, 128, 2)
    gone = st.removed_indices(128, keep3)
    with torch.no_grad():
        random_model.features.block3.bn.weight[gone] = 0.0        # γ = 0: the channel emits ReLU(β)
        random_model.features.block3.bn.bias[gone] = torch.linspace(-0.5, 0.8, len(gone))
    plan = st.KeepPlan((torch.arange(32), torch.arange(64), keep3), (torch.arange(1000), torch.arange(120)))
    x = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        before = random_model(x)
        plain = st.remove_channels(random_model, plan)(x)
        absorbed = st.remove_channels(sl.absorb_removed_channels(random_model, plan), plan)(x)
    assert torch.allclose(absorbed, before, atol=1e-5)
    assert not torch.allclose(plain, before, atol=1e-3)  # dropping ReLU(β) without folding changes outputs


def test_absorbing_into_the_next_batchnorm_is_exact_away_from_the_border(random_model):
    keep2 = torch.arange(0, 64, 2)
    gone = st.removed_indices(64, keep2)
    with torch.no_grad():
        random_model.features.block2.bn.weight[gone] = 0.0
        random_model.features.block2.bn.bias[gone] = 0.3
    plan = st.KeepPlan((torch.arange(32), keep2, torch.arange(128)), (torch.arange(1000), torch.arange(120)))
    small = st.remove_channels(sl.absorb_removed_channels(random_model, plan), plan)
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        conv3_bn = lambda m: m.features.block3.bn(m.features.block3.conv(m.features[:2](m.normalize(x))))
        before, after = conv3_bn(random_model), conv3_bn(small)
    assert torch.allclose(before[..., 1:-1, 1:-1], after[..., 1:-1, 1:-1], atol=1e-4)


def test_channels_below_the_threshold_go_and_ties_at_it_go_in_channel_order():
    values = torch.tensor([0.5, 0.2, 0.2, 0.1, 0.2, 0.9])
    assert sl.channels_below(values, 0.2, 3).tolist() == [False, True, True, True, False, False]  # ties: first ones
    assert sl.channels_below(values, 0.35, 4).tolist() == [False, True, True, True, True, False]  # no tie: all below
    assert not sl.channels_below(torch.zeros(4), 0.0, 0).any()  # nothing to remove: not even exact zeros


def _rank_plan(model, ratio, min_channels):
    """The plan as a stable sort of |γ| makes it (how slimming_plan worked before it took a threshold)."""
    gammas = st.bn_gamma_abs(model)
    flat = torch.cat(gammas)
    removed = torch.zeros(len(flat), dtype=torch.bool)
    removed[torch.sort(flat, stable=True).indices[:int(round(ratio * len(flat)))]] = True
    counts, start = [], 0
    for g in gammas:
        counts.append(max(int((~removed[start:start + len(g)]).sum()), min_channels))
        start += len(g)
    return tuple(counts)


@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.5, 0.7])
def test_the_threshold_picks_the_same_channels_as_ranking_ties_included(random_model, ratio):
    with torch.no_grad():
        for bn in random_model.bn_layers():
            bn.weight.copy_(torch.round(bn.weight * 4) / 4)  # few distinct |γ|: many ties at every cut
    plan = sl.slimming_plan(random_model, ratio, 2)
    assert plan.conv_channels == _rank_plan(random_model, ratio, 2)


def test_a_threshold_function_decides_which_channels_go(random_model):
    calls = []

    def lower_threshold(gammas, ratio):  # a threshold below the reference one: fewer channels go
        calls.append(ratio)
        return sl.global_threshold(gammas, ratio) * 0.5

    reference = sl.slimming_plan(random_model, 0.5, 1)
    plan = sl.slimming_plan(random_model, 0.5, 1, threshold_fn=lower_threshold)
    assert calls == [0.5] and plan.threshold == pytest.approx(reference.threshold * 0.5)
    assert sum(plan.conv_channels) > sum(reference.conv_channels)
    assert sl.slim(random_model, 0.5, 1, threshold_fn=lower_threshold).config.conv_channels == plan.conv_channels


def test_the_penalty_hooks_call_the_subgradient_they_are_given(random_model):
    model, seen = random_model.train(), []

    def doubled(grad, gamma, s):
        seen.append(len(gamma))
        return grad + 2 * s * torch.sign(gamma)

    x, y = torch.rand(4, 1, 28, 28), torch.randint(0, 10, (4,))
    torch.manual_seed(0)
    plain = _gamma_grads(model, x, y)
    with sl.gamma_l1_penalty(model, 1e-3, subgradient=doubled):
        torch.manual_seed(0)
        penalised = _gamma_grads(model, x, y)
    assert sorted(seen) == sorted(len(bn.weight) for bn in model.bn_layers())  # backward reaches the last block first
    for bn, g0, g1 in zip(model.bn_layers(), plain, penalised):
        assert torch.allclose(g1 - g0, 2e-3 * torch.sign(bn.weight.detach()), atol=1e-7)
