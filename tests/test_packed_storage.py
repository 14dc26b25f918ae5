"""The packed low-bit file format: exact bit packing, exact reload, sizes, and clear errors."""
import numpy as np
import pytest
import torch

from helpers import load, save
from helpers.quantization.fake import ptq, quantize_model
from helpers.storage.packed import MAGIC, PackedFileError, pack_bits, read_header, unpack_bits


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("count", [1, 7, 8, 13, 1000, 4099])
def test_pack_unpack_round_trip_is_exact_and_tight(bits, count):
    rng = np.random.default_rng(bits * 1000 + count)
    values = rng.integers(0, 2 ** bits, size=count, dtype=np.uint8)
    values[0] = 2 ** bits - 1  # the extremes are representable
    data = pack_bits(values, bits)
    assert len(data) == (count * bits + 7) // 8
    assert np.array_equal(unpack_bits(data, bits, count), values)


def test_packing_rejects_values_that_do_not_fit_and_wrong_lengths():
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        pack_bits(np.array([0, 4]), 2)
    with pytest.raises(ValueError, match="bits must be an integer from 1 to 8"):
        pack_bits(np.array([0]), 9)
    with pytest.raises(ValueError, match="need 2 bytes"):
        unpack_bits(b"\x00", 4, 4)


@pytest.fixture
def calibration():
    torch.manual_seed(0)
    return torch.rand(128, 1, 28, 28)


@pytest.mark.parametrize("w_bits,a_bits,edge", [(2, 2, 8), (4, 4, 8), (6, 6, 8), (8, 8, 8),
                                                (4, None, 8), (2, 2, None), (None, 4, 8)])
def test_reloaded_packed_model_gives_identical_outputs(random_model, calibration, tmp_path, w_bits, a_bits, edge):
    q = ptq(random_model, calibration, w_bits, a_bits, edge_bits=edge)
    path = save(q, tmp_path / "m.packed", meta={"note": "test"})
    reloaded = load(path)
    x = torch.rand(64, 1, 28, 28)
    assert isinstance(reloaded, torch.nn.Module) and not reloaded.training
    assert torch.equal(reloaded(x), q(x))
    assert read_header(path)["meta"] == {"note": "test"}
    assert [p.name for p in tmp_path.iterdir()] == ["m.packed"]  # atomic write, no leftovers


def test_file_sizes_shrink_with_the_bit_width(random_model, calibration, tmp_path):
    float_size = save(random_model, tmp_path / "float.pt").stat().st_size
    sizes = {b: save(ptq(random_model, calibration, b, b), tmp_path / f"w{b}.packed").stat().st_size
             for b in (2, 4, 6, 8)}
    assert sizes[2] < sizes[4] < sizes[6] < sizes[8] < float_size / 3.5
    assert sizes[4] <= float_size / 7
    n_weights = sum(m.weight.numel() for m in random_model.modules() if hasattr(m, "weight")
                    and isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    assert sizes[4] < n_weights * 4 / 8 * 1.05  # ~4 bits per weight plus small overheads


@pytest.mark.parametrize("damage", ["truncate", "flip", "magic", "empty", "trailing"])
def test_corrupt_or_truncated_files_are_clear_errors(random_model, calibration, tmp_path, damage):
    path = save(ptq(random_model, calibration, 4, 4), tmp_path / "m.packed")
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[len(data) // 2] ^= 0xFF
    elif damage == "magic":
        data[:8] = b"NOTPACKD"
    elif damage == "empty":
        data = bytearray()
    else:
        data += b"\x00"
    path.write_bytes(bytes(data))
    with pytest.raises(PackedFileError, match="truncated|corrupt|not a packed model"):
        load(path)


def test_missing_file_wrong_suffix_and_float_model_are_errors(random_model, calibration, tmp_path):
    with pytest.raises(FileNotFoundError, match="no model file"):
        load(tmp_path / "missing.packed")
    q = ptq(random_model, calibration, 4, 4)
    with pytest.raises(TypeError, match="a .pt checkpoint holds a float FashionCNN"):  # the suffix picks the format
        save(q, tmp_path / "m.pt")
    with pytest.raises(ValueError, match="quantized model"):
        save(random_model, tmp_path / "m.packed")
    assert not (tmp_path / "m.pt").exists() and not (tmp_path / "m.packed").exists()
    assert save(q, tmp_path / "m.packed").read_bytes().startswith(MAGIC)  # the file is marked as packed
