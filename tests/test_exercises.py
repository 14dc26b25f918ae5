"""The exercise registry: references pass, plausible wrong answers fail with the right hint,
stubs report "not implemented yet", and the references agree with the helpers the notebooks run."""
import inspect
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from helpers import exercises as ex, training
from helpers.paths import REPO_ROOT
from helpers.pruning import slimming, structured, unstructured
from helpers.quantization import fake
from helpers.storage import packed, sparse

QMAX4 = 7


def _stub(*args):
    raise NotImplementedError


# --------------------------------------------------------------------------- wrong answers
def _gaps_from_zero(pos, max_gap=255):
    return np.diff(np.concatenate([[0], pos]))


def _gaps_without_fillers(pos, max_gap=255):
    return np.diff(np.concatenate([[-1], pos]))


def _pack_lsb_first(values, bits):
    as_bits = np.unpackbits(np.asarray(values, np.uint8)[:, None], axis=1, bitorder="little")[:, :bits]
    return np.packbits(as_bits.ravel(), bitorder="little").tobytes()


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


def _agp_off_by_one(t, T, final, initial=0.0):
    frac = min(max(t / (T + 1), 0.0), 1.0)
    return final + (initial - final) * (1 - frac) ** 3


def _agp_not_held(t, T, final, initial=0.0):
    return final + (initial - final) * (1 - t / T) ** 3


def _agp_linear(t, T, final, initial=0.0):
    return initial + (final - initial) * min(t / T, 1.0)


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


def _scales_asymmetric(w, bits):
    rows = w.reshape(len(w), -1)
    return (rows.amax(1) - rows.amin(1)) / (2 ** bits - 1)


WRONG = {
    "accuracy_from_logits": [
        (lambda lg, lb: (lg.argmax(1) == lb).float().mean().item(), "percentage"),
        (lambda lg, lb: 100.0 * (lg.argmin(1) == lb).float().mean().item(), "argmax"),
    ],
    "normalize": [
        (lambda x: x - 0.2860, "divide by the std"),
        (lambda x: x * 0.3530 + 0.2860, "inverse"),
    ],
    "filter_l1_scores": [
        (lambda w: w.sum(dim=(1, 2, 3)), "absolute values"),
        (lambda w: w.flatten(1).norm(dim=1), "L2 norm"),
        (lambda w: w.abs().sum(dim=(0, 2, 3)), "one score per output filter"),
    ],
    "fc1_kept_columns": [
        (lambda kept, spatial: kept * spatial, "columns (9 per kept channel)"),
        (lambda kept, spatial: (kept[:, None] * spatial + torch.arange(1, spatial + 1)).flatten(), "owns columns"),
    ],
    "wanda_scores": [
        (lambda w, n: w.abs(), "magnitude"),
        (lambda w, n: (w.reshape(len(w), -1) * n).reshape(w.shape), "non-negative"),
        (lambda w, n: w.abs() * n, "raised RuntimeError"),  # right for Linear, breaks on a conv
    ],
    "im2col_input_norms": [
        (lambda x, k, p: F.unfold(x, k, padding=p).pow(2).sum(dim=(0, 2)) / len(x), "square root"),
        (lambda x, k, p: F.unfold(x, k, padding=p).pow(2).mean(dim=(0, 2)).sqrt(), "patch positions"),
        (lambda x, k, p: x.pow(2).sum(dim=(0, 2, 3)).div(len(x)).sqrt(), "one norm per weight column"),
    ],
    "row_mask": [
        (unstructured.layer_mask, "each row must keep exactly"),
        (lambda scores, s: unstructured.row_mask(-scores, s), "LOWEST"),
    ],
    "nm_mask": [
        (lambda scores, n, m: unstructured.row_mask(scores, 1 - n / m), "must keep exactly 2"),
        (lambda scores, n, m: unstructured.nm_mask(-scores, n, m), "HIGHEST"),
    ],
    "gamma_subgradient": [
        (lambda g, gamma, s: g + s * gamma, "L2 penalty"),
        (lambda g, gamma, s: s * torch.sign(gamma), "ADDED"),
        (lambda g, gamma, s: g + s * gamma.abs(), "s·sign(γ)"),
    ],
    "global_threshold": [
        (_global_threshold_signed, "absolute values |γ|"),
        (_global_threshold_no_midpoint, "midpoint"),
        (_global_threshold_per_layer, "lie below your threshold"),
    ],
    "agp_sparsity": [
        (_agp_linear, "linear schedule"),
        (_agp_off_by_one, "must reach the final sparsity at step T, got 0.8"),
        (_agp_not_held, "stay at the final"),
    ],
    "global_magnitude_masks": [
        (lambda ws, s: {n: unstructured.layer_mask(w.abs(), s) for n, w in ws.items()}, "per-layer ranking"),
        (lambda ws, s: unstructured.global_masks(ws, s), "rank by |w|"),
    ],
    "symmetric_scales": [
        (lambda w, bits: w.abs().max() / (2 ** (bits - 1) - 1), "one scale per output channel"),
        (_scales_asymmetric, "scale must be max|w| / 7 for 4-bit symmetric"),
        (lambda w, bits: w.reshape(len(w), -1).abs().amax(1) / 2 ** (bits - 1), "max|w| / 7"),
    ],
    "fake_quantize": [
        (_fq_no_clamp, "clamped to ±7"),
        (_fq_floor, "NEAREST"),
        (_fq_codes, "integer codes"),
    ],
    "ste_round": [
        (torch.round, "gradient through ste_round must be 1"),
        (lambda x: torch.round(x).detach(), "no gradient flows"),
        (lambda x: x * 1.0, "forward value must be round(x)"),
    ],
    "pack_bits": [
        (lambda values, bits: np.asarray(values, np.uint8).tobytes(), "need ceil"),
        (_pack_lsb_first, "least-significant bit first"),
    ],
    "relative_gaps": [
        (_gaps_from_zero, "counts from index -1"),
        (_gaps_without_fillers, "filler entries"),
    ],
}


def test_every_exercise_has_wrong_answers():
    assert set(WRONG) == set(ex.REGISTRY)
    assert all(len(wrongs) >= 2 for wrongs in WRONG.values())


# These four checkers compare an answer with the very helper that is their reference, so "the
# reference passes" would hold whatever the helper computed: their tests further down check the
# helper against hand-computed values and grade an independent implementation instead.
SELF_REFERENCED = {"accuracy_from_logits", "fc1_kept_columns", "gamma_subgradient", "pack_bits"}


@pytest.mark.parametrize("name", sorted(set(ex.REGISTRY) - SELF_REFERENCED))
def test_reference_passes(name, capsys):
    assert ex.check(name, ex.REGISTRY[name].reference) is True
    assert capsys.readouterr().out.startswith(f"✔ {name}: ")


@pytest.mark.parametrize("name, index", [(n, i) for n, wrongs in WRONG.items() for i in range(len(wrongs))])
def test_wrong_answer_fails_with_its_hint(name, index, capsys):
    fn, words = WRONG[name][index]
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
    assert "1 of 4 entries differ; at index (2,) expected 0.3, got 0.31" in capsys.readouterr().out


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
