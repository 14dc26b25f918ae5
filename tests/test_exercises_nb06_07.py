"""The exercises of notebooks 06 and 07: every reference passes, at least three plausible wrong answers
per exercise fail with the hint that names their mistake, the notebooks pose each exercise before its
answer (stub first, ``show`` only after a pass) and then run the learner's function through what follows
(QAT through ``ste_round``; the live view and the saved .ccz files through ``relative_gaps`` and
``pack_bits``), and a subtly wrong answer, had it passed, would change the result it drives (the live
views, a PTQ cell, a QAT step, the .ccz file, the int8 program's codes)."""
import json

import numpy as np
import pytest
import torch

from helpers import exercises as ex
from helpers.data import Batches
from helpers.paths import REPO_ROOT
from helpers.quantization import integer
from helpers.storage import packed

NAMES = ("symmetric_scales", "fake_quantize", "ste_round", "int8_linear", "pack_bits", "relative_gaps")


# --------------------------------------------------------------------------- wrong answers
def _scales_floor_rows(w, bits):  # one scale per row, but a zero row gets a tiny guard instead of 0
    return w.reshape(len(w), -1).abs().amax(1).clamp(min=1e-3) / (2 ** (bits - 1) - 1)


def _fq_round_half_away(w, s, bits):
    q = 2 ** (bits - 1) - 1
    s = s.reshape(-1, *[1] * (w.ndim - 1))
    r = w / s
    return torch.clamp(torch.sign(r) * torch.floor(r.abs() + 0.5), -q, q) * s  # halves away from zero


def _fq_floor(w, s, bits):
    q = 2 ** (bits - 1) - 1
    s = s.reshape(-1, *[1] * (w.ndim - 1))
    return torch.clamp(torch.floor(w / s), -q, q) * s


def _fq_in_place(w, s, bits):
    q = 2 ** (bits - 1) - 1
    return w.div_(s.reshape(-1, *[1] * (w.ndim - 1))).round_().clamp_(-q, q).mul_(s.reshape(-1, *[1] * (w.ndim - 1)))


def _ste_half_up(x):
    return x + (torch.floor(x + 0.5) - x).detach()


def _ste_in_place(x):
    x.data.round_()  # rounds the caller's tensor, behind autograd's back
    return x


def _ste_scaled(x):
    return 0.5 * x + (torch.round(x) - 0.5 * x).detach()  # the gradient is 0.5, not 1


def _int8(acc_of, rounding=torch.round, saturate=True, out_zero=True):
    """An int8_linear built from one mistake: how the accumulator is formed, the rounding, the clamp."""
    def fn(x_q, x_scale, x_zero_point, w_q, w_scales, bias, out_scale, out_zero_point):
        y = acc_of(x_q, x_zero_point, w_q).double() * (x_scale * w_scales.double()) + bias.double()
        q = rounding(y / out_scale) + (out_zero_point if out_zero else 0)
        return (torch.clamp(q, 0, 255) if saturate else q.long() % 256).to(torch.uint8)
    return fn


_ACC = lambda x_q, z, w_q: (x_q.int() - z) @ w_q.int().T  # noqa: E731 -- the right accumulator


def _int8_in_place(x_q, x_scale, x_zero_point, w_q, w_scales, bias, out_scale, out_zero_point):
    bias /= out_scale  # into code units, in the caller's tensor
    acc = (x_q.int() - x_zero_point) @ w_q.int().T
    y = acc.double() * (x_scale * w_scales.double()) / out_scale + bias.double()
    return torch.clamp(torch.round(y) + out_zero_point, 0, 255).to(torch.uint8)


def _pack_lsb(values, bits):
    bits_of = np.unpackbits(np.asarray(values, np.uint8)[:, None], axis=1, bitorder="little")[:, :bits]
    return np.packbits(bits_of.ravel(), bitorder="little").tobytes()


def _pack_always_pads(values, bits):
    return packed.pack_bits(values, bits) + (b"\x00" if len(values) * bits % 8 == 0 else b"")


def _pack_in_place(values, bits):
    values.sort()  # sorts the caller's array (and packs the values in the wrong order)
    return packed.pack_bits(values, bits)


def _gaps_divmod(positions, max_gap=255):  # a gap of exactly k·max_gap gets k fillers and a 0
    out, previous = [], -1
    for p in positions:
        fillers, rest = divmod(int(p) - previous, max_gap)
        out += [max_gap] * fillers + [rest]
        previous = int(p)
    return np.array(out, dtype=np.int64)


def _gaps_from_zero(positions, max_gap=255):
    gaps = ex.relative_gaps_reference(positions, max_gap)
    gaps[:1] -= 1  # the first gap counted from index 0, not -1
    return gaps


def _gaps_no_fillers(positions, max_gap=255):
    return np.diff(np.concatenate([[-1], positions])).astype(np.int64)


def _gaps_in_place(positions, max_gap=255):
    positions += 1  # count from -1 by shifting the caller's array
    return ex.relative_gaps_reference(positions - 1, max_gap)


WRONG = [
    ("symmetric_scales", "unsigned", lambda w, b: w.reshape(len(w), -1).abs().amax(1) / (2 ** b - 1), "unsigned levels"),
    ("symmetric_scales", "2^(b-1)", lambda w, b: w.reshape(len(w), -1).abs().amax(1) / 2 ** (b - 1), "not 2^(b-1)"),
    ("symmetric_scales", "zero-scale-guard", _scales_floor_rows, "an all-zero row has max|w| = 0, so its scale is 0"),
    ("symmetric_scales", "signed-max", lambda w, b: w.reshape(len(w), -1).amax(1) / (2 ** (b - 1) - 1), "MAGNITUDE"),
    ("symmetric_scales", "in-place", lambda w, b: w.abs_().reshape(len(w), -1).amax(1) / (2 ** (b - 1) - 1),
     "your function changed its input w"),
    ("fake_quantize", "floor", _fq_floor, "NEAREST"),
    ("fake_quantize", "ties", _fq_round_half_away, "torch.round rounds halves to the EVEN"),
    ("fake_quantize", "codes", lambda w, s, b: torch.clamp(torch.round(w / s.reshape(-1, *[1] * (w.ndim - 1))),
                                                           -(2 ** (b - 1) - 1), 2 ** (b - 1) - 1), "integer codes"),
    ("fake_quantize", "in-place", _fq_in_place, "your function changed its input w"),
    ("ste_round", "ties", _ste_half_up, "torch.round rounds halves to the EVEN integer"),
    ("ste_round", "scaled", _ste_scaled, "got 0.5 at x = 0.2 (entry 0)"),
    ("ste_round", "round", torch.round, "got 0 for every x"),
    ("ste_round", "detached", lambda x: torch.round(x).detach(), "no gradient flows"),
    ("ste_round", "in-place", _ste_in_place, "your function changed its input x"),
    ("int8_linear", "no-zero-point", _int8(lambda x, z, w: x.int() @ w.int().T), "subtract the input zero-point"),
    ("int8_linear", "uint8-wrap", _int8(lambda x, z, w: (x - z).int() @ w.int().T), "wraps around below 0"),
    ("int8_linear", "floor", _int8(_ACC, rounding=torch.floor), "not down: floor"),
    ("int8_linear", "truncated", lambda *a: torch.clamp(integer.requantization_value(*a) + a[-1], 0, 255).to(torch.uint8),
     "not down: floor, and .to(torch.uint8) of a float (it truncates)"),
    ("int8_linear", "ties", _int8(_ACC, rounding=lambda v: torch.floor(v + 0.5)), "rounds to the EVEN one"),
    ("int8_linear", "no-clamp", _int8(_ACC, saturate=False), "clamp to [0, 255]"),
    ("int8_linear", "no-output-zero-point", _int8(_ACC, out_zero=False), "add the output zero-point"),
    ("int8_linear", "float-codes", lambda *a: ex.REGISTRY["int8_linear"].reference(*a).float(), "as torch.uint8"),
    ("int8_linear", "in-place", _int8_in_place, "your function changed its input bias"),
    ("pack_bits", "lsb", _pack_lsb, "least-significant bit first"),
    ("pack_bits", "pad-at-multiple", _pack_always_pads, "n·bits is a multiple of 8, so no padding byte"),
    ("pack_bits", "byte-each", lambda values, bits: np.asarray(values, np.uint8).tobytes(), "need ceil"),
    ("pack_bits", "in-place", _pack_in_place, "your function changed its input values"),
    ("relative_gaps", "exact-multiple", _gaps_divmod, "a gap of exactly 255 = 1·max_gap is 1 entry of 255"),
    ("relative_gaps", "from-0", _gaps_from_zero, "counts from index -1"),
    ("relative_gaps", "no-fillers", _gaps_no_fillers, "bridge it with filler entries"),
    ("relative_gaps", "in-place", _gaps_in_place, "your function changed its input pos"),
]


def test_each_exercise_of_06_and_07_has_at_least_three_wrong_answers():
    names = {name for name, *_ in WRONG}
    assert names == set(NAMES) == {n for n, e in ex.REGISTRY.items() if e.notebook in ("06", "07")}
    assert all(sum(name == n for n, *_ in WRONG) >= 3 for name in NAMES)
    assert {name for name, category, *_ in WRONG if category == "in-place"} == set(NAMES)



# --------------------------------------------------------------------------- the notebooks pose the exercise first
def _sources(notebook):
    cells = json.loads((REPO_ROOT / "notebooks" / notebook).read_text())["cells"]
    return cells, ["".join(c["source"]) for c in cells]


def _first(sources, text):
    return next(i for i, s in enumerate(sources) if text in s)


@pytest.mark.parametrize("notebook, names", [("06_quantization.ipynb", ("symmetric_scales", "fake_quantize", "ste_round", "int8_linear")),
                                             ("07_combined_compression.ipynb", ("relative_gaps", "pack_bits"))])
def test_each_stub_comes_before_its_answer_and_its_function_runs_what_follows(notebook, names):
    cells, sources = _sources(notebook)
    for name in names:
        stub = next(i for i, s in enumerate(sources) if s.lstrip().startswith(("def " + name + "(", "import numpy as np\n\n\ndef " + name + "(")))
        assert "raise NotImplementedError" in sources[stub]
        assert sources[stub].rstrip().endswith(f'if check("{name}", {name}):\n    show("{name}");')
        assert not any(f'show("{name}")' in s for s in sources[:stub]), f"{name}: the answer is shown above its stub"
        contract = sources[stub - 1]
        assert cells[stub - 1]["cell_type"] == "markdown" and name in contract
        assert ".detach()" not in contract and "round(x) - x" not in contract
        assert any(f'use("{name}", {name})' in s for s in sources[stub:]), f"{name}: nothing runs the learner's function"


def test_06_qat_trains_through_the_ste_round_in_use():
    _, sources = _sources("06_quantization.ipynb")
    stub, use_at = _first(sources, "def ste_round("), _first(sources, 'use("ste_round", ste_round)')
    run_qat = _first(sources, "def run_qat(")
    assert stub < use_at < run_qat < _first(sources, "run_qat(*cell)")  # the exercise before every QAT run
    assert "round_fn=ste_impl" in sources[run_qat] and "qat_step_changes" in sources[use_at]
    assert "in_use('ste_round')" in sources[use_at]


def test_no_hint_spells_the_ste_answer(capsys):
    ex.check("ste_round", torch.round)
    ex.check("ste_round", lambda x: x * 1.0)
    assert ".detach()" not in capsys.readouterr().out
    assert not any(".detach()" in hint for hint in ex.REGISTRY["ste_round"].hints)


def test_06_symmetric_scales_contract_states_the_range_once_and_no_teaser():
    _, sources = _sources("06_quantization.ipynb")
    contract = sources[_first(sources, "def symmetric_scales(") - 1]
    assert "part\n  of the exercise" not in contract and "$2^b$, $2^b-1$" not in contract
    assert contract.count("2^{b-1}-1") == 2  # the narrow range [-(2^(b-1)-1), 2^(b-1)-1], stated once


def test_07_coders_in_use_write_the_live_view_and_the_saved_files():
    _, sources = _sources("07_combined_compression.ipynb")
    use_at = _first(sources, 'use("relative_gaps", relative_gaps)')
    assert _first(sources, "def relative_gaps(") < use_at and _first(sources, "def pack_bits(") < use_at
    live = _first(sources, "live_combined.prepare(")
    assert use_at < live and "**coders" in sources[live]
    saves = [i for i, s in enumerate(sources) if ".ccz" in s and "save(" in s and "meta=" in s]
    assert saves and all(use_at < i and "**coders" in sources[i] for i in saves)
    assert all("in_use(" in sources[i] or "coders_in_use" in sources[i] for i in (use_at, live, saves[0]))


# --------------------------------------------------------------------------- a wrong answer would change what it drives
def _ste_other_form(x):  # a passing STE written another way: round(x) forward, identity backward
    return torch.round(x).detach() + (x - x.detach())


def test_a_passing_ste_gives_the_course_qat_step_and_a_zero_gradient_one_changes_it(quick_splits, capsys):
    from helpers.quantization.fake import ptq, qat, qat_step_changes

    assert ex.check("ste_round", _ste_other_form) is True and ex.check("ste_round", torch.round) is False
    model = ex.course_model()[0]
    images, labels = quick_splits.train.head(128).as_float()
    start = ptq(model, images, 4, 4)
    course = qat_step_changes(start, images, labels)
    for passing in (_ste_other_form, ex.ste_round_reference):
        assert qat_step_changes(start, images, labels, round_fn=passing) == pytest.approx(course, rel=1e-4)
    assert set(qat_step_changes(start, images, labels, round_fn=torch.round).values()) == {0.0}  # no gradient
    assert min(course.values()) > 0
    # and through qat() itself: a few AdamW steps, the same dropout masks
    trained = {}
    for name, fn in (("course", None), ("passing", _ste_other_form), ("round", torch.round)):
        q = ptq(model, images, 4, 4)
        torch.manual_seed(0)
        qat(q, Batches(quick_splits.train.head(256), 64, shuffle=True, seed=0), epochs=1, lr=5e-4, device="cpu",
            round_fn=fn)
        trained[name] = q.classifier.fc1.weight.detach()
    torch.testing.assert_close(trained["passing"], trained["course"], rtol=1e-4, atol=1e-6)
    assert (trained["round"] - trained["course"]).abs().max() > 1e-4


def test_a_floor_quantizer_would_change_the_live_view(quick_splits):
    from helpers.live import quantization as live_quant

    model = ex.course_model()[0]
    right = live_quant.prepare(model, quick_splits, val_images=300, precompute=(), quantize_fn=ex.fake_quantize_reference)
    course = live_quant.prepare(model, quick_splits, val_images=300, precompute=())
    floor = live_quant.prepare(model, quick_splits, val_images=300, precompute=(), quantize_fn=_fq_floor)
    point = dict(weight_bits=3, act_bits=8)
    assert live_quant.point(right, **point)["val_accuracy"] == live_quant.point(course, **point)["val_accuracy"]
    assert live_quant.point(floor, **point)["val_accuracy"] < live_quant.point(right, **point)["val_accuracy"] - 1.0


def test_wrong_scales_would_change_the_ptq_cell(quick_splits):
    from helpers.quantization.fake import ptq, requantize_weights
    from helpers.training import accuracy

    model, images = ex.course_model()[0], quick_splits.train.head(128).as_float()[0]
    base = ptq(model, images, 4, 8, weight_clip="max")
    val = Batches(quick_splits.val.head(500), 250)
    ours = requantize_weights(base, ex.fake_quantize_reference, ex.symmetric_scales_reference)
    unsigned = requantize_weights(base, ex.fake_quantize_reference, lambda w, b: w.reshape(len(w), -1).abs().amax(1) / (2 ** b - 1))
    assert accuracy(ours, val) == accuracy(base, val)
    assert not torch.equal(ours.classifier.fc1.weight, unsigned.classifier.fc1.weight)


@pytest.fixture(scope="module")
def sparse_qmodel():
    """The course model with fc1 pruned to 99.5% (gaps beyond 255: fillers), quantized to 4 bits."""
    from helpers.quantization.fake import quantize_model

    model = ex.course_model()[0]
    pruned = type(model)(model.config)
    pruned.load_state_dict(model.state_dict())
    with torch.no_grad():
        w = pruned.classifier.fc1.weight
        w[w.abs() < w.abs().quantile(0.995)] = 0
    return quantize_model(pruned.eval(), 4, None)


def test_the_saved_ccz_file_is_written_by_the_coders_in_use(sparse_qmodel, tmp_path):
    from helpers import load, save

    course = save(sparse_qmodel, tmp_path / "course.ccz", meta={"bits": 4}).read_bytes()
    reference = save(sparse_qmodel, tmp_path / "reference.ccz", meta={"bits": 4}, gaps_fn=ex.relative_gaps_reference,
                     pack_fn=ex.REGISTRY["pack_bits"].reference)
    assert reference.read_bytes() == course  # headless runs (the reference in use) write the same bytes
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    assert torch.equal(load(reference)(x), sparse_qmodel(x))
    lsb = save(sparse_qmodel, tmp_path / "lsb.ccz", meta={"bits": 4}, pack_fn=_pack_lsb)  # had it passed check
    assert lsb.read_bytes() != course and not torch.equal(load(lsb)(x), sparse_qmodel(x))
    with pytest.raises(ValueError, match="does not encode the positions"):
        save(sparse_qmodel, tmp_path / "divmod.ccz", gaps_fn=_gaps_divmod)  # a 0 entry at an exact multiple
    assert not (tmp_path / "divmod.ccz").exists()


def test_wrong_packing_would_change_the_live_views_file(quick_splits):
    from helpers.live import combined

    model = ex.course_model()[0]
    course = combined.prepare(model, quick_splits, n=100)
    reference = combined.prepare(model, quick_splits, n=100, gaps_fn=ex.relative_gaps_reference,
                                 pack_fn=ex.REGISTRY["pack_bits"].reference)
    lsb = combined.prepare(model, quick_splits, n=100, pack_fn=_pack_lsb)
    point = combined.compute_point(course, 0.95, 3)
    assert combined.compute_point(reference, 0.95, 3)["stage_bytes"] == point["stage_bytes"]
    assert combined.compute_point(lsb, 0.95, 3)["bytes"] != point["bytes"]


def test_a_half_up_int8_linear_would_change_the_program_codes():
    from helpers.quantization.pt2e import convert_int8_pt2e

    model = ex.course_model()[0]
    images = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(5))
    program = convert_int8_pt2e(model, images)
    params = integer.linear_qparams(program, "classifier.fc2")
    x_q, codes = integer.layer_codes(program, images, "classifier.fc2")
    assert integer.code_agreement(x_q, params, codes, fn=ex.REGISTRY["int8_linear"].reference)["other"] == 0
    shifted = _int8(_ACC, rounding=torch.floor)
    assert integer.code_agreement(x_q, params, codes, fn=shifted)["other"] > 0


def test_int8_linear_reference_equals_the_helper_on_random_layers():
    g = torch.Generator().manual_seed(3)
    for n, k, m in ((1, 5, 2), (7, 300, 40)):
        args = (torch.randint(0, 256, (n, k), generator=g, dtype=torch.uint8), 0.013, int(torch.randint(0, 256, (1,), generator=g)),
                torch.randint(-127, 128, (m, k), generator=g, dtype=torch.int8), torch.rand(m, generator=g) * 1e-2,
                torch.randn(m, generator=g), 0.07, 3)
        assert torch.equal(ex.REGISTRY["int8_linear"].reference(*args), integer.int8_linear(*args))
