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
