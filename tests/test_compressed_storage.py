import pytest
import torch

from helpers.models import build_model, prunable_layers
from helpers.quantization.fake import quant_layers, quantize_model, calibrate
from helpers import load, save
from helpers.storage.compressed import CompressedFileError, stage_sizes


@pytest.fixture(scope="module")
def pruned_quantized():
    torch.manual_seed(0)
    model = build_model().eval()
    with torch.no_grad():
        for layer in prunable_layers(model).values():  # 90% of each layer's weights zeroed
            w = layer.weight
            w.mul_(w.abs() > w.abs().flatten().kthvalue(int(0.9 * w.numel())).values)
    qmodel = quantize_model(model, weight_bits=4, act_bits=None)
    return calibrate(qmodel, torch.rand(64, 1, 28, 28))


def test_compress_write_read_gives_identical_outputs(tmp_path, pruned_quantized):
    path = tmp_path / "m.ccz"
    save(pruned_quantized, path)
    stages = stage_sizes(pruned_quantized)
    reloaded = load(path)
    x = torch.rand(32, 1, 28, 28)
    assert torch.equal(reloaded(x), pruned_quantized(x))
    assert stages["entropy_coded"] == path.stat().st_size
    assert stages["entropy_coded"] < stages["sparse_packed"] < stages["sparse_float32"] < stages["dense_float32"]


def test_pruned_weights_stay_exactly_zero(tmp_path, pruned_quantized):
    path = tmp_path / "m.ccz"
    save(pruned_quantized, path)
    for name, layer in quant_layers(load(path)).items():
        original = quant_layers(pruned_quantized)[name]
        assert torch.equal(layer.weight == 0, original.weight_codes() == 0)


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_corrupt_or_truncated_files_are_clear_errors(tmp_path, pruned_quantized, damage):
    path = tmp_path / "m.ccz"
    save(pruned_quantized, path)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) - 100]
    elif damage == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        data = bytearray(b"hello world, not a model")
    path.write_bytes(bytes(data))
    with pytest.raises(CompressedFileError):
        load(path)


def test_only_quantized_models_and_the_ccz_suffix(tmp_path, pruned_quantized):
    with pytest.raises(ValueError, match="quantize_model"):
        save(build_model(), tmp_path / "m.ccz")
    with pytest.raises(TypeError, match="a .pt checkpoint holds a float FashionCNN"):  # the suffix picks the format
        save(pruned_quantized, tmp_path / "m.pt")


def test_byte_breakdown_counts_every_nonzero_weight_and_bounds_the_coder(pruned_quantized):
    from helpers.storage.compressed import byte_breakdown, entropy_bytes

    table = byte_breakdown(pruned_quantized)
    layers = table[table.layer != "total"]
    nonzero = sum(int((l.weight_codes() != 0).sum()) for l in quant_layers(pruned_quantized).values())
    assert layers.nonzero.sum() == nonzero == table.iloc[-1].nonzero
    assert (layers.gap_entries >= layers.nonzero).all()
    assert entropy_bytes([7] * 100) == 0 and entropy_bytes([0, 1] * 4) == 1.0  # 8 symbols of 1 bit


def test_scales_and_biases_rounded_to_half_are_stored_in_two_bytes_losslessly(tmp_path, pruned_quantized):
    import copy

    from helpers.quantization.masked import half_precision_side_tensors
    from helpers.storage.compressed import read_compressed_bytes

    plain_path, half_path = tmp_path / "plain.ccz", tmp_path / "half.ccz"
    save(pruned_quantized, plain_path)
    rounded = copy.deepcopy(pruned_quantized)
    with torch.no_grad():  # one channel of fc1 pruned away entirely: its scale becomes 1, unused
        quant_layers(rounded)["classifier.fc1"].weight[3].zero_()
    rounded = half_precision_side_tensors(rounded)
    fc1 = quant_layers(rounded)["classifier.fc1"]
    assert fc1.weight_scale[3] == 1.0
    for layer in quant_layers(rounded).values():
        assert torch.equal(layer.weight_scale.half().float(), layer.weight_scale)
        assert torch.equal(layer.bias.half().float(), layer.bias)
    original = quant_layers(pruned_quantized)["classifier.fc2"]
    assert torch.allclose(quant_layers(rounded)["classifier.fc2"].weight_scale, original.weight_scale, rtol=2 ** -11)
    save(rounded, half_path)
    x = torch.rand(16, 1, 28, 28)
    assert torch.equal(load(half_path)(x), rounded(x))  # bit-for-bit after the reload
    assert torch.equal(load(plain_path)(x), pruned_quantized(x))
    kinds = {e["name"]: e["dtype"] for e in read_compressed_bytes(half_path.read_bytes())[0]["tensors"] if e["kind"] == "raw"}
    assert kinds["classifier.fc1.weight_scale"] == kinds["classifier.fc1.bias"] == "float16"
    plain_kinds = {e["name"]: e["dtype"] for e in read_compressed_bytes(plain_path.read_bytes())[0]["tensors"]
                   if e["kind"] == "raw"}
    assert plain_kinds["classifier.fc1.weight_scale"] == "float32"  # not exact in half: kept whole
    assert half_path.stat().st_size < plain_path.stat().st_size


def test_other_coders_that_compute_the_same_write_the_same_file(pruned_quantized, tmp_path):
    import numpy as np

    from helpers.storage.compressed import decode, encode_with_stages

    def gaps_by_hand(positions, max_gap):
        out, previous = [], -1
        for p in positions.tolist():
            gap = p - previous
            out += [max_gap] * ((gap - 1) // max_gap) + [gap - max_gap * ((gap - 1) // max_gap)]
            previous = p
        return out

    def pack_by_hand(values, bits):
        stream = "".join(format(int(v), f"0{bits}b") for v in values)
        stream += "0" * (-len(stream) % 8)
        return bytes(int(stream[i:i + 8], 2) for i in range(0, len(stream), 8))

    course, stages = encode_with_stages(pruned_quantized)
    theirs, their_stages = encode_with_stages(pruned_quantized, None, gaps_by_hand, pack_by_hand)
    assert theirs == course and their_stages == stages
    written = save(pruned_quantized, tmp_path / "theirs.ccz", gaps_fn=gaps_by_hand, pack_fn=pack_by_hand)  # helpers.save
    assert written.read_bytes() == course
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(decode(theirs)(x), pruned_quantized(x))
    with pytest.raises(ValueError, match="does not encode the positions"):
        encode_with_stages(pruned_quantized, None, lambda p, g: np.diff(np.concatenate([[0], p])))  # counted from 0
