"""int8 through torchao's PT2E flow: the converted program tracks the float model, runs at every
batch size, saves as an ``.int8`` file (``torch.export.save``) that reloads to identical outputs,
holds int8 weights only, and compiles (inductor, weights frozen) to the same predictions."""
import os

import pytest
import torch

from helpers import ModelFileError, load, save
from helpers.models import CNNConfig, build_model
from helpers.quantization.pt2e import convert_int8_pt2e


@pytest.fixture(scope="module")
def float_and_int8():
    torch.manual_seed(0)
    model = build_model(CNNConfig(conv_channels=(8, 16, 16), fc_features=(32,))).eval()
    calibration = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    return model, convert_int8_pt2e(model, calibration)


def test_the_int8_program_tracks_the_float_model_at_any_batch_size(float_and_int8):
    model, int8 = float_and_int8
    for batch in (1, 5, 300):
        x = torch.rand(batch, 1, 28, 28)
        with torch.no_grad():
            out, ref = int8(x), model(x)
        assert out.shape == ref.shape
        assert (out - ref).abs().max() < 0.1 * ref.abs().max()  # int8 rounding, not another model
    assert not any(p.dtype == torch.float32 and p.dim() > 1 for p in int8.parameters())  # float weights dropped


def test_the_saved_program_reloads_to_identical_outputs_and_stores_int8_weights_only(float_and_int8, tmp_path):
    model, int8 = float_and_int8
    path = save(int8, tmp_path / "m.int8", meta={"calibration_images": 64})
    reloaded = load(path)
    x = torch.rand(9, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(reloaded(x), int8(x))
    assert reloaded.config == model.config
    assert torch.load(path, weights_only=True)["format"] == "compression-course/int8-pt2e-v1"
    stored = [t for t in [*reloaded.parameters(), *reloaded.buffers()] if t.dim() > 1]
    assert stored and all(t.dtype == torch.int8 for t in stored)  # the weights are stored as int8 only


def test_a_fresh_process_loads_the_saved_program(float_and_int8, tmp_path):
    """helpers.load in a process that never ran the PT2E flow (as ``python -m helpers.benchmark``):
    the loader itself registers the program's quantized_decomposed operators and inductor's int8
    fusion passes (without them the benchmark timed compiled int8 about 3x slower than 06 did)."""
    import subprocess
    import sys

    model, int8 = float_and_int8
    path = save(int8, tmp_path / "m.int8")
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    torch.save({"x": x, "y": int8(x).detach()}, tmp_path / "xy.pt")
    code = ("import sys, torch; from helpers import load; d = torch.load(sys.argv[2]); "
            "m = load(sys.argv[1]); assert torch.equal(m(d['x']), d['y']); "
            # inductor's int8 fusion passes: without them a compiled program runs dequantize + float conv
            "assert 'torchao.quantization.pt2e.inductor_passes.x86' in sys.modules; print('identical')")
    done = subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "xy.pt")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("identical"), done.stderr[-2000:]


def test_a_damaged_or_foreign_program_is_a_model_file_error(float_and_int8, tmp_path):
    from helpers.storage.framing import content_digest, torch_bytes

    _, int8 = float_and_int8
    path = save(int8, tmp_path / "m.int8")
    payload = torch.load(path, weights_only=True)
    del payload["sha256"]
    payload["program"] = torch.frombuffer(bytearray(b"PK\x03\x04 not an export archive" * 4), dtype=torch.uint8)
    (tmp_path / "bad.int8").write_bytes(torch_bytes({**payload, "sha256": content_digest(payload)}))  # signed
    with pytest.raises(ModelFileError, match="exported program does not load or run"):
        load(tmp_path / "bad.int8")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "flipped.int8").write_bytes(bytes(data))
    with pytest.raises(ModelFileError):
        load(tmp_path / "flipped.int8")


@pytest.mark.timing
def test_the_compiled_int8_program_predicts_like_the_eager_one(float_and_int8):
    from helpers.speed import compile_unavailable, compiled_model

    reason = compile_unavailable()
    if reason and not os.environ.get("CI"):
        pytest.skip(reason)
    _, int8 = float_and_int8
    compiled, _ = compiled_model(int8, batch_sizes=(16,))
    x = torch.rand(16, 1, 28, 28)
    with torch.no_grad():
        eager, fused = int8(x), compiled(x)
    assert torch.equal(eager.argmax(1), fused.argmax(1)) or (eager - fused).abs().max() < 0.05


def test_quantization_aware_training_in_pt2e_trains_and_converts_to_a_saveable_program(quick_splits, tmp_path):
    from helpers.data import Batches
    from helpers.quantization.pt2e import qat_int8_pt2e
    from helpers.training import accuracy

    torch.manual_seed(0)
    model = build_model(CNNConfig(conv_channels=(8, 16, 16), fc_features=(32,))).eval()
    train = Batches(quick_splits.train.head(512), 128, shuffle=True, seed=0)
    val = Batches(quick_splits.val.head(500), 250)
    before = accuracy(model, val)
    qat = qat_int8_pt2e(model, train, quick_splits.train.head(64).as_float()[0], epochs=6, lr=3e-3)
    assert accuracy(qat, val) > before + 20  # an untrained model learns while its rounding is in the loop (8% -> 59%)
    assert not model.training and not qat.training
    reloaded = load(save(qat, tmp_path / "qat.int8"))
    x = quick_splits.val.head(8).as_float()[0]
    with torch.no_grad():
        assert torch.equal(reloaded(x), qat(x))


def test_quantization_aware_training_leaves_the_float_model_as_it_was(quick_splits):
    from helpers.data import Batches
    from helpers.quantization.pt2e import qat_int8_pt2e

    torch.manual_seed(0)
    model = build_model(CNNConfig(conv_channels=(8, 16, 16), fc_features=(32,))).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    qat_int8_pt2e(model, Batches(quick_splits.train.head(256), 128, shuffle=True, seed=0),
                  quick_splits.train.head(64).as_float()[0], epochs=1, lr=3e-3)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the exported copy trained, not it


def test_each_step_of_the_flow_says_what_it_did(float_and_int8):
    from helpers.quantization import pt2e

    model, _ = float_and_int8
    exported = pt2e.export_program(model)
    assert pt2e.input_spec(exported).endswith(f"in [1, {pt2e.MAX_BATCH}]")  # the batch is a symbol with a range
    assert pt2e.op_counts(exported.module())["conv2d"] == 3 and "quantize_per_tensor" not in pt2e.op_counts(exported.module())
    table = pt2e.annotation_table(exported)
    assert len(table) == 5 and all(r["weight"] == "int8, per_channel_symmetric" and r["input"] == "uint8, per_tensor_affine"
                                   and r["bias"] == "float" for r in table)
    prepared = pt2e.calibrate(pt2e.prepare(exported), torch.rand(32, 1, 28, 28, generator=torch.Generator().manual_seed(2)))
    observers = pt2e.observer_table(prepared)
    first = observers[0]
    assert first["min"] < 0 < first["max"] and 0 < first["zero_point"] < 255  # the normalised image is signed
    assert all(r["min"] == 0 and r["zero_point"] == 0 for r in observers[1:])  # after a ReLU: nothing below 0
    counts = pt2e.op_counts(pt2e.convert(prepared, model.config))
    assert counts["dequantize_per_channel"] == 5 and counts["quantize_per_tensor"] >= 5


def test_the_integer_linear_reproduces_the_programs_codes_and_logits(float_and_int8):
    from helpers.quantization import integer

    _, int8 = float_and_int8
    images = torch.rand(300, 1, 28, 28, generator=torch.Generator().manual_seed(4))
    params = integer.linear_qparams(int8, "classifier.fc1")  # the hidden Linear (32 outputs, then a ReLU)
    assert params.w_q.dtype == torch.int8 and params.out_zero_point == 0 and params.w_scales.shape == (32,)
    x_q, codes = integer.layer_codes(int8, images, "classifier.fc1")
    agreement = integer.code_agreement(x_q, params, codes)
    assert agreement["other"] == 0 and agreement["equal"] >= 0.999 * agreement["codes"]  # one step apart, at ties only
    logits = integer.logits_with_linear(int8, images, integer.int8_linear, "classifier.fc1")
    with torch.no_grad():
        program = int8(images)
    if agreement["one_step_at_a_tie"] == 0:
        assert torch.equal(logits, program)
    assert torch.equal(logits.argmax(1), program.argmax(1)) or agreement["one_step_at_a_tie"] > 0
    with pytest.raises(ValueError, match="logits stay float"):
        integer.linear_qparams(int8, "classifier.fc2")  # the last Linear: no output quantizer
    with pytest.raises(TypeError, match="not torch.uint8"):
        integer.logits_with_linear(int8, images[:4], lambda *a: integer.int8_linear(*a).int(), "classifier.fc1")


def test_the_integer_linear_by_hand():
    from helpers.quantization import integer

    x_q = torch.tensor([[3, 0, 255]], dtype=torch.uint8)            # zero-point 3: real values 0, -3s, 252s
    w_q = torch.tensor([[1, 2, -1], [0, 127, 0]], dtype=torch.int8)
    args = (0.5, 3, w_q, torch.tensor([0.25, 1.0]), torch.tensor([0.0, 1.0]), 0.5, 10)
    # acc = [0·1 - 3·2 - 252, -3·127] = [-258, -381]; y = [-258·0.125, -381·0.5 + 1] = [-32.25, -189.5]
    assert torch.allclose(integer.requantization_value(x_q, *args), torch.tensor([[-64.5, -379.0]], dtype=torch.float64))
    assert integer.int8_linear(x_q, *args).tolist() == [[0, 0]]      # -64 + 10 and -379 + 10 saturate at 0
    assert integer.int8_linear(x_q, *args[:-2], 0.5, 100).tolist() == [[36, 0]]  # round(-64.5) = -64 (even), + 100
