"""The front door ``helpers.save``/``helpers.load``: every format by suffix, one error family,
corruption always detected (a seeded fuzz of single-byte flips), and reproducible bytes."""
import hashlib
import random

import pytest
import torch

from helpers import ModelFileError, load, save
from helpers.storage import FORMATS as CODECS
from helpers.models import CNNConfig, build_model, prunable_layers
from helpers.quantization.fake import ptq
from helpers.quantization.int8 import convert_int8
from helpers.quantization.pt2e import convert_int8_pt2e

FLIPS = 200
SUFFIXES = tuple(CODECS) + (".pt2e.int8",)  # the .int8 suffix holds an FX graph or a PT2E program


def _small_float():
    torch.manual_seed(0)
    model = build_model(CNNConfig(conv_channels=(4, 8, 8), fc_features=(16,))).eval()
    with torch.no_grad():
        for bn in model.bn_layers():
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
        for layer in prunable_layers(model).values():  # half of each layer's weights zeroed
            layer.weight.mul_(torch.rand_like(layer.weight) < 0.5)
    return model


@pytest.fixture(scope="module")
def models():
    """A small model of each suffix's kind."""
    model, images = _small_float(), torch.rand(32, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    quantized = ptq(model, images, 4, None)
    return {".pt": model, ".sparse": model, ".packed": ptq(model, images, 4, 4), ".ccz": quantized,
            ".int8": convert_int8(model, images), ".pt2e.int8": convert_int8_pt2e(model, images)}


def _same(a, b) -> bool:
    """Equal tensors (quantized ones by codes and qparams), nested tuples, lists, or plain values."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.is_quantized or b.is_quantized:
            return a.is_quantized and b.is_quantized and torch.equal(a.int_repr(), b.int_repr()) \
                and torch.equal(a.dequantize(), b.dequantize())
        return a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(_same(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_save_and_load_round_trip_every_format(models, tmp_path, suffix):
    path = save(models[suffix], tmp_path / f"m{suffix}", meta={"note": "x"})
    loaded = load(path)
    assert not loaded.training
    x = torch.rand(8, 1, 28, 28)
    assert torch.equal(loaded(x), models[suffix](x))
    assert [p.name for p in tmp_path.iterdir()] == [f"m{suffix}"]


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_same_model_and_meta_give_identical_bytes(models, tmp_path, suffix):
    meta = {"epochs": 3, "history": {"val_accuracy": [90.5, 91.25]}}
    first = save(models[suffix], tmp_path / f"a{suffix}", meta=meta).read_bytes()
    second = save(models[suffix], tmp_path / "sub" / f"b{suffix}", meta=dict(meta)).read_bytes()
    assert hashlib.sha256(first).hexdigest() == hashlib.sha256(second).hexdigest()
    third = save(models[suffix], tmp_path / f"c{suffix}", meta={**meta, "epochs": 4}).read_bytes()
    assert third != first  # the meta is part of the file


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_single_byte_flips_never_load_changed_weights(models, tmp_path, suffix):
    """>= 200 seeded random single-byte flips: each raises ModelFileError or loads identical weights."""
    path = save(models[suffix], tmp_path / f"m{suffix}")
    original, reference = path.read_bytes(), load(path)
    rng = random.Random(17)
    counts = {"tried": 0, "errors": 0, "identical": 0, "silent_changed": 0}
    damaged = tmp_path / f"damaged{suffix}"
    for _ in range(FLIPS):
        data = bytearray(original)
        data[rng.randrange(len(data))] ^= rng.randrange(1, 256)
        damaged.write_bytes(bytes(data))
        counts["tried"] += 1
        try:
            loaded = load(damaged)
        except ModelFileError:
            counts["errors"] += 1
            continue
        counts["identical" if _same_state(loaded, reference) else "silent_changed"] += 1
    print(f"\nfuzz {suffix}: {len(original)} bytes, {counts}")
    assert counts["silent_changed"] == 0
    assert counts["tried"] == FLIPS and counts["errors"] > FLIPS // 2


def test_errors_missing_path_unknown_suffix_and_non_finite_weights(models, tmp_path):
    with pytest.raises(FileNotFoundError, match="no model file at .*nothing.pt"):
        load(tmp_path / "nothing.pt")
    with pytest.raises(ModelFileError, match=r"unknown model file suffix '.pth'; known suffixes: .pt, .sparse"):
        save(models[".pt"], tmp_path / "m.pth")
    with pytest.raises(ModelFileError, match="unknown model file suffix"):
        load(tmp_path / "m.onnx")
    broken = _small_float()
    with torch.no_grad():
        broken.classifier.fc1.weight[0, 0] = float("nan")
    for suffix in (".pt", ".sparse"):
        with pytest.raises(ValueError, match=r"NaN or infinite values in classifier.fc1.weight \(1 of"):
            save(broken, tmp_path / f"nan{suffix}")
    assert list(tmp_path.iterdir()) == []


def test_a_format_error_names_the_file_and_is_a_model_file_error(models, tmp_path):
    path = save(models[".sparse"], tmp_path / "m.sparse")
    (tmp_path / "m.pt").write_bytes(path.read_bytes())  # right bytes, wrong suffix
    with pytest.raises(ModelFileError, match="m.pt is not a readable compression-course/cnn-v2 file"):
        load(tmp_path / "m.pt")
