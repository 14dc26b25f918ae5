"""Linear quantization: the math, BN folding, PTQ calibration, the STE, QAT, and real int8 (FX)."""
import copy
import pytest
import torch

from helpers.data import Batches, calibration_batch
from helpers.models import CNNConfig, build_model
from helpers.quantization.fake import bake_weights, calibrate, fold_batchnorm, ptq, qat, quant_layers, quantize_model
from helpers.quantization.codes import (activation_qparams, check_bits, fake_quantize_activation, fake_quantize_weight,
                                        levels, quantize_weight, symmetric_range, unsigned_range, weight_scales)
from helpers import load, save
from helpers.quantization.int8 import convert_int8, qat_int8
from helpers.storage.int8 import Int8FileError

BITS = (2, 4, 6, 8)


@pytest.mark.parametrize("bits", [0, 1, 9, 16, -4, 4.0, "4", True, None])
def test_bits_outside_2_to_8_are_a_clear_error(bits):
    with pytest.raises(ValueError, match="integer from 2 to 8"):
        check_bits(bits)
    with pytest.raises(ValueError, match="weight_bits must be an integer from 2 to 8"):
        quantize_model(build_model(), bits if bits is not None else 1, 8)


def test_float_is_allowed_only_where_asked():
    assert check_bits(None, allow_float=True) is None
    with pytest.raises(ValueError, match="activation bits|act_bits"):
        quantize_model(build_model(), 4, 9)
    with pytest.raises(ValueError, match="both None"):
        quantize_model(build_model(), None, None)


@pytest.mark.parametrize("bits", BITS)
def test_narrow_symmetric_range_has_2_to_the_b_minus_1_levels(bits):
    qmin, qmax = symmetric_range(bits)
    assert qmin == -qmax and qmax - qmin + 1 == 2 ** bits - 1
    assert unsigned_range(bits) == (0, 2 ** bits - 1)
    # a channel that covers its whole range uses exactly 2^b - 1 distinct values, zero among them
    w = torch.linspace(-1, 1, 10_001).repeat(3, 1)
    fq = fake_quantize_weight(w, weight_scales(w, bits, clip="max"), bits)
    for row in fq:
        assert len(torch.unique(row)) == 2 ** bits - 1
        assert (row == 0).any()


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("clip", ["max", "mse"])
def test_error_is_at_most_half_a_step_inside_the_clipping_range(bits, clip):
    torch.manual_seed(bits)
    w = torch.randn(16, 300) * torch.rand(16, 1) * 3
    scales = weight_scales(w, bits, clip=clip)
    fq = fake_quantize_weight(w, scales, bits)
    _, qmax = symmetric_range(bits)
    inside = w.abs() <= (qmax * scales)[:, None] * (1 + 1e-6)
    err = (fq - w).abs()
    assert (err[inside] <= (scales[:, None] / 2).expand_as(w)[inside] * (1 + 1e-5)).all()
    if clip == "max":
        assert inside.all()
    # clipped values land on the extreme level
    assert torch.allclose(fq[~inside].abs(), (qmax * scales[:, None]).expand_as(w)[~inside])


@pytest.mark.parametrize("bits", BITS)
def test_zero_maps_exactly_to_zero(bits):
    w = torch.randn(8, 50)
    w[:, ::7] = 0.0
    fq = fake_quantize_weight(w, weight_scales(w, bits), bits)
    assert (fq[:, ::7] == 0).all()
    scale, zp = activation_qparams(-0.8, 2.0, bits)  # signed input: non-zero zero-point
    assert zp > 0
    x = torch.tensor([0.0, -0.8, 2.0])
    out = fake_quantize_activation(x, torch.tensor(scale), torch.tensor(zp, dtype=torch.int32), bits)
    assert out[0] == 0.0


def test_after_relu_the_zero_point_is_zero_and_all_levels_are_non_negative():
    scale, zp = activation_qparams(0.0, 3.0, 4)
    assert zp == 0 and scale == pytest.approx(3.0 / 15)
    assert levels(scale, 4, zp, signed=False).min() == 0


def test_per_channel_scales_follow_each_row():
    torch.manual_seed(0)
    w = torch.randn(5, 40)
    base = weight_scales(w, 4, clip="max")
    w2 = w.clone()
    w2[2] *= 10
    scaled = weight_scales(w2, 4, clip="max")
    assert base.shape == (5,)
    assert torch.allclose(scaled[2], 10 * base[2])
    assert torch.equal(scaled[[0, 1, 3, 4]], base[[0, 1, 3, 4]])
    conv_w = torch.randn(7, 3, 3, 3)
    assert weight_scales(conv_w, 8).shape == (7,)


def test_codes_times_scales_are_exactly_the_fake_quantized_weights():
    torch.manual_seed(1)
    w = torch.randn(32, 100)
    for bits in BITS:
        scales = weight_scales(w, bits)
        codes = quantize_weight(w, scales, bits)
        qmin, qmax = symmetric_range(bits)
        assert codes.dtype == torch.int8 and codes.min() >= qmin and codes.max() <= qmax
        assert torch.equal(codes.float() * scales[:, None], fake_quantize_weight(w, scales, bits))


def test_baked_weights_give_identical_outputs_and_show_the_zero_codes(random_model):
    from helpers.counting import sparsity

    x = torch.rand(64, 1, 28, 28)
    q = ptq(random_model, x, 2, 2)
    baked = bake_weights(q)
    assert torch.equal(baked(x), q(x))
    assert sparsity(q) == 0.0 and sparsity(baked) > 0.2  # ternary codes: many weights snap to 0
    with pytest.raises(ValueError, match="quantize_model"):
        bake_weights(random_model)


def test_batchnorm_folding_preserves_eval_outputs(random_model):
    x = torch.rand(32, 1, 28, 28)
    folded = fold_batchnorm(random_model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert all(conv.bias is not None for conv in folded.conv_layers())
    torch.testing.assert_close(folded(x), random_model(x), rtol=1e-4, atol=1e-5)
    # the original is untouched
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in random_model.modules())


def test_ste_gradient_is_one_inside_the_range_and_zero_outside():
    w = torch.tensor([[-3.0, -0.5, 0.0, 0.4, 0.9, 3.0]], requires_grad=True)
    scales = torch.tensor([1.0 / 7])  # 4 bits: range [-1, 1]
    fake_quantize_weight(w, scales, 4).sum().backward()
    assert w.grad.tolist() == [[0.0, 1.0, 1.0, 1.0, 1.0, 0.0]]
    x = torch.tensor([-1.0, 0.0, 0.5, 1.4, 2.0], requires_grad=True)
    fake_quantize_activation(x, torch.tensor(0.1), torch.tensor(0, dtype=torch.int32), 4).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]  # range [0, 1.5]


def _ste(x):  # a straight-through rounding: forward round(x), gradient 1
    return x + (torch.round(x) - x).detach()


def test_a_straight_through_round_fn_gives_the_kernels_values_and_gradient():
    g = torch.Generator().manual_seed(4)
    w = (torch.randn(6, 5, 3, 3, generator=g) * 0.3).requires_grad_(True)
    scales = weight_scales(w, 4, clip="mse")  # clips the tails: codes beyond the range
    with torch.no_grad():
        w[0, 0, 0, 0] = 7 * scales[0]  # exactly on the largest code: the kernel's gradient is 1 there
    kernel, ours = fake_quantize_weight(w, scales, 4), fake_quantize_weight(w, scales, 4, round_fn=_ste)
    assert torch.equal(kernel, ours)
    grad_kernel, grad_ours = (torch.autograd.grad(y.sum(), w)[0] for y in (kernel, ours))
    assert grad_kernel[0, 0, 0, 0] == 1 and (grad_kernel == 0).any()  # the bound passes, the clipped do not
    torch.testing.assert_close(grad_ours, grad_kernel, rtol=1e-6, atol=0)  # s * (1/s): within an ulp of 1
    x = torch.cat([torch.randn(500, generator=g) * 2, torch.tensor([-0.3, 1.2])]).requires_grad_(True)
    scale, zero_point = torch.tensor(0.1), torch.tensor(3, dtype=torch.int32)  # codes -3 .. 12 are the bounds
    kernel, ours = (fake_quantize_activation(x, scale, zero_point, 4, round_fn=fn) for fn in (None, _ste))
    assert torch.equal(kernel, ours)
    grad_kernel, grad_ours = (torch.autograd.grad(y.sum(), x)[0] for y in (kernel, ours))
    assert torch.equal(grad_ours, grad_kernel) and grad_kernel[-2:].tolist() == [1.0, 1.0]


def test_qat_through_a_round_fn_trains_as_the_kernel_does_and_leaves_the_kernel_in_place(small_trained, quick_splits):
    from helpers.quantization.fake import straight_through

    start = ptq(small_trained, calibration_batch(quick_splits.train, 128), 4, 4)
    trained = {}
    for name, fn in (("kernel", None), ("ste", _ste), ("round", torch.round)):
        model = copy.deepcopy(start)
        torch.manual_seed(0)  # the same dropout masks in every run
        qat(model, Batches(quick_splits.train.head(256), 64, shuffle=True, seed=0), epochs=1, lr=1e-3, device="cpu",
            round_fn=fn)
        assert all(m.round_fn is None for layer in quant_layers(model).values() for m in (layer, layer.input_quant))
        trained[name] = model.state_dict()
    for key, value in trained["kernel"].items():
        torch.testing.assert_close(trained["ste"][key], value, rtol=1e-4, atol=1e-6)
    # torch.round passes no gradient: the weights only decay (AdamW) instead of learning
    assert not torch.allclose(trained["round"]["classifier.fc1.weight"], trained["kernel"]["classifier.fc1.weight"],
                              rtol=1e-3, atol=1e-6)
    with straight_through(start, _ste):
        assert all(layer.round_fn is _ste and layer.input_quant.round_fn is _ste for layer in quant_layers(start).values())
    assert all(layer.round_fn is None for layer in quant_layers(start).values())


def test_per_tensor_weights_share_one_scale_that_covers_the_largest_channel(random_model):
    per_channel = quant_layers(quantize_model(random_model, 4, None, weight_clip="max"))
    per_tensor = quant_layers(quantize_model(random_model, 4, None, weight_clip="max", weight_granularity="tensor"))
    for name, layer in per_tensor.items():
        scales = layer.weight_scale
        assert torch.all(scales == scales[0]), name  # one scale for the layer
        assert torch.isclose(scales[0], per_channel[name].weight_scale.max()), name  # max covers every channel
        values = torch.unique(layer.quantized_weight().detach().abs())  # |q| * s: at most 2^(b-1) values in all
        assert len(values) <= 2 ** (layer.weight_bits - 1) < len(torch.unique(per_channel[name].quantized_weight().detach().abs()))
    assert quantize_model(random_model, 4, 4, weight_granularity="tensor").quant_spec.label == "W4A4 per-tensor"
    assert "weight_granularity" not in quantize_model(random_model, 4, 4).quant_spec.to_dict()  # old files unchanged
    with pytest.raises(ValueError, match="granularity"):
        quantize_model(random_model, 4, 4, weight_granularity="row")


def test_edge_layers_keep_8_bits_by_default_and_follow_the_bits_when_asked(random_model):
    q = quantize_model(random_model, 2, 2)
    layers = list(quant_layers(q).values())
    assert [(m.weight_bits, m.input_quant.bits) for m in layers] == \
        [(8, 8), (2, 2), (2, 2), (2, 2), (2, 2), (8, 8)]
    q = quantize_model(random_model, 2, None, edge_bits=None)
    assert [(m.weight_bits, m.input_quant.bits) for m in quant_layers(q).values()] == [(2, None)] * 6
    with pytest.raises(ValueError, match="already quantized"):
        quantize_model(q, 4, 4)


def test_calibrating_with_no_data_is_a_clear_error(random_model):
    q = quantize_model(random_model, 8, 8)
    for empty in (torch.zeros(0, 1, 28, 28), [], iter(())):
        with pytest.raises(ValueError, match="at least one image"):
            calibrate(q, empty)
    with pytest.raises(RuntimeError, match="before calibration"):
        q(torch.rand(2, 1, 28, 28))


def test_calibration_uses_training_images_and_sets_unsigned_ranges(random_model, quick_splits):
    images = calibration_batch(quick_splits.train, 256)
    q = ptq(random_model, images, 8, 8)
    quants = [m.input_quant for m in quant_layers(q).values()]
    assert quants[0].zero_point.item() > 0  # the normalised image is signed
    assert all(a.zero_point.item() == 0 and a.scale.item() > 0 for a in quants[1:])  # after ReLU
    out, ref = q(images), random_model(images)
    assert (out - ref).abs().max() < 0.05 * ref.abs().max()


@pytest.fixture(scope="module")
def small_trained(quick_splits):
    """A small CNN trained for one epoch on the QUICK training split (real images)."""
    from helpers.training import fit, seed_everything

    seed_everything(0)
    model = build_model(CNNConfig(conv_channels=(8, 16, 32), fc_features=(64, 32)))
    fit(model, Batches(quick_splits.train, 64, shuffle=True), epochs=1, lr=3e-3, device="cpu")
    return model.eval()


def test_w8a8_ptq_matches_float_predictions_on_real_images(small_trained, quick_splits):
    images = calibration_batch(quick_splits.train, 512)
    test_x, _ = quick_splits.test.head(500).as_float()
    q = ptq(small_trained, images, 8, 8)
    agree = (q(test_x).argmax(1) == small_trained(test_x).argmax(1)).float().mean()
    assert agree >= 0.98


def test_qat_trains_the_float_weights_through_the_fake_quantizers(small_trained, quick_splits):
    q = ptq(small_trained, calibration_batch(quick_splits.train, 256), 2, 2)
    before = {k: v.clone() for k, v in q.state_dict().items()}
    history = qat(q, Batches(quick_splits.train.head(512), 64, shuffle=True), epochs=1, lr=1e-3, device="cpu")
    assert len(history.train_loss) == 1 and history.train_loss[0] == history.train_loss[0]  # not NaN
    assert not q.training
    changed = [k for k, v in q.state_dict().items() if k.endswith(".weight") and not torch.equal(v, before[k])]
    assert len(changed) == 6
    # activation ranges stay at their calibrated values during QAT
    assert all(torch.equal(q.state_dict()[k], before[k]) for k in before if "input_quant" in k)


def test_qat_needs_a_calibrated_quantized_model(small_trained, quick_splits):
    batches = Batches(quick_splits.train.head(64), 64)
    with pytest.raises(ValueError, match="quantize_model"):
        qat(small_trained, batches)
    with pytest.raises(ValueError, match="calibrate"):
        qat(quantize_model(small_trained, 4, 4), batches)


def test_int8_fx_model_agrees_with_float_on_real_images(small_trained, quick_splits, tmp_path):
    images = calibration_batch(quick_splits.train, 512)
    int8 = convert_int8(small_trained, images)
    test_x, _ = quick_splits.test.head(500).as_float()
    out, ref = int8(test_x), small_trained(test_x)
    assert (out.argmax(1) == ref.argmax(1)).float().mean() >= 0.95
    assert (out - ref).abs().max() < 0.1 * ref.abs().max()
    path = save(int8, tmp_path / "m.int8")
    float_size = save(small_trained, tmp_path / "float.pt").stat().st_size
    assert path.stat().st_size < 0.5 * float_size
    assert torch.equal(load(path)(test_x), out)
    assert torch.load(path, weights_only=True)["format"].startswith("compression-course/int8")


def test_int8_bad_inputs_are_clear_errors(small_trained, tmp_path):
    with pytest.raises(ValueError, match="at least one image"):
        convert_int8(small_trained, torch.zeros(0, 1, 28, 28))
    with pytest.raises(ValueError, match="backend must be one of"):
        convert_int8(small_trained, torch.rand(4, 1, 28, 28), backend="tpu")
    int8 = convert_int8(small_trained, torch.rand(4, 1, 28, 28))
    with pytest.raises(TypeError, match="a .pt checkpoint holds a float FashionCNN"):  # the suffix picks the format
        save(int8, tmp_path / "m.pt")
    path = save(int8, tmp_path / "m.int8")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(Int8FileError, match="not a readable compression-course/int8-pt2e-v1 or compression-course/int8-fx-v2 file: corrupt or truncated"):
        load(path)
    with pytest.raises(FileNotFoundError, match="no model file"):
        load(tmp_path / "missing.int8")


def _dense_clip_errors(weight, bits):
    """The squared-error table of the MSE clipping search, every weight computed (the reference)."""
    from helpers.quantization.codes import MSE_RATIOS, symmetric_range
    qmin, qmax = symmetric_range(bits)
    w2d = weight.reshape(weight.shape[0], -1).float()
    max_abs = w2d.abs().amax(1).clamp(min=1e-12)
    scale = (MSE_RATIOS[:, None] * max_abs[None, :] / qmax)[..., None]
    err = (w2d[None] / scale).round_().clamp_(qmin, qmax).mul_(scale).sub_(w2d[None])
    return err.pow_(2).mean(-1)


@pytest.mark.parametrize("zeros", [0.0, 0.5, 0.9, 0.99])
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_clip_search_skipping_pruned_zeros_is_bit_for_bit_the_dense_search(zeros, bits):
    from helpers.quantization.codes import MSE_RATIOS, _pruned_clip_errors, clip_ratios, symmetric_range
    g = torch.Generator().manual_seed(bits)
    weight = torch.randn(200, 64, 3, 3, generator=g) * torch.rand(200, 1, 1, 1, generator=g)
    weight[torch.rand(weight.shape, generator=g) < zeros] = 0.0
    weight[7] = 0.0  # a channel pruned away entirely
    reference = _dense_clip_errors(weight, bits)
    assert torch.equal(clip_ratios(weight, bits), MSE_RATIOS[reference.argmin(0)])
    w2d = weight.reshape(200, -1)
    table = _pruned_clip_errors(w2d, w2d.ne(0).flatten(), w2d.abs().amax(1).clamp(min=1e-12), MSE_RATIOS,
                                *symmetric_range(bits))
    assert torch.equal(table, reference)


def test_int8_qat_trains_the_int8_model_and_saves_like_ptq(small_trained, quick_splits, tmp_path):
    images = calibration_batch(quick_splits.train, 256)
    batches = Batches(quick_splits.train.head(256), 64, shuffle=True, seed=0)
    before = copy.deepcopy(small_trained.state_dict())
    ptq = convert_int8(small_trained, images)
    qat_model = qat_int8(small_trained, batches, images, epochs=3, lr=1e-3)
    assert all(torch.equal(v, before[k]) for k, v in small_trained.state_dict().items())  # the float model is kept
    assert set(qat_model.state_dict()) == set(ptq.state_dict())  # the same graph: one .int8 loader for both
    untrained = qat_int8(small_trained, batches, images, epochs=3, lr=1e-9)  # the control: observers only
    x, y = quick_splits.train.head(256).as_float()
    loss = {name: torch.nn.functional.cross_entropy(m(x), y).item() for name, m in (("control", untrained), ("qat", qat_model))}
    assert loss["qat"] < loss["control"] - 0.03  # it trained, in int8's rounding, on these images
    test_x, _ = quick_splits.test.head(500).as_float()
    path = save(qat_model, tmp_path / "qat.int8")
    assert torch.equal(load(path)(test_x), qat_model(test_x))
    with pytest.raises(TypeError, match="float FashionCNN"):
        qat_int8(ptq, batches, images)
    with pytest.raises(ValueError, match="backend must be one of"):
        qat_int8(small_trained, batches, images, backend="tpu")


def test_requantized_weights_compute_with_the_given_quantizer(random_model):
    from helpers.quantization.codes import weight_scales
    from helpers.quantization.fake import requantize_weights

    qmodel = quantize_model(random_model, 4, None, weight_clip="max")
    same = requantize_weights(qmodel, fake_quantize_weight)
    x = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(same(x), qmodel(x))  # its own quantizer again: weights on the grid stay there
    floor = lambda w, s, b: torch.floor(w / s[:, None] if w.ndim == 2 else w / s[:, None, None, None]).clamp(-7, 7) * (
        s[:, None] if w.ndim == 2 else s[:, None, None, None])
    floored = requantize_weights(qmodel, floor)
    fc1 = floored.classifier.fc1
    assert torch.equal(fc1.weight, fc1.quantized_weight()) and not torch.equal(fc1.weight, qmodel.classifier.fc1.quantized_weight())
    halved = requantize_weights(qmodel, fake_quantize_weight, lambda w, b: weight_scales(w, b, "max") / 2)
    assert torch.allclose(halved.classifier.fc1.weight_scale, qmodel.classifier.fc1.weight_scale / 2)
    with pytest.raises(ValueError, match="per output channel"):
        requantize_weights(quantize_model(random_model, 4, None, weight_granularity="tensor"), fake_quantize_weight,
                           lambda w, b: weight_scales(w, b))


def test_quantization_error_through_given_functions_equals_the_course_rule(random_model):
    from helpers.quantization.codes import quantization_error

    w = random_model.classifier.fc1.weight.detach()
    by_max = lambda w, b: w.reshape(len(w), -1).abs().amax(1) / (2 ** (b - 1) - 1)
    assert quantization_error(w, 4, "max") == pytest.approx(quantization_error(w, 4, scales_fn=by_max), rel=1e-6)
    doubled = quantization_error(w, 4, scales_fn=lambda w, b: 2 * by_max(w, b))
    assert doubled > 1.5 * quantization_error(w, 4, "max")  # twice the step: about twice the error
