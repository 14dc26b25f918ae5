"""The sparse file format: exact round trip, smaller than dense for sparse models, and clear errors
on files that are not one, truncated or corrupt."""
import struct

import numpy as np
import pytest
import torch

from helpers import load, save
from helpers.pruning.unstructured import prune_model
from helpers.storage.sparse import SparseFormatError, decode_tensor, encode_tensor, encoding_summary


@pytest.fixture
def sparse_model(random_model):
    pruned, _ = prune_model(random_model, "magnitude", 0.9, group="global")
    return pruned


def _same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.99])
def test_save_load_restores_the_model_exactly(random_model, tmp_path, sparsity):
    model = prune_model(random_model, "magnitude", sparsity, group="global")[0] if sparsity else random_model
    path = save(model, tmp_path / "m.sparse", meta={"note": "x"})
    loaded = load(path)
    assert _same_state(model, loaded)
    x = torch.rand(16, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), loaded(x))
    assert not loaded.training


def test_sparse_file_is_smaller_than_the_dense_checkpoint(sparse_model, tmp_path):
    dense = save(sparse_model, tmp_path / "dense.pt").stat().st_size
    sparse = save(sparse_model, tmp_path / "m.sparse").stat().st_size
    assert sparse < dense * 0.2  # 10% of the weights kept: values + an index, well under a fifth
    half = save(sparse_model, tmp_path / "h.sparse", value_dtype="float16").stat().st_size
    assert half < sparse


def test_float16_values_are_close_but_rounded(sparse_model, tmp_path):
    loaded = load(save(sparse_model, tmp_path / "h.sparse", value_dtype="float16"))
    w, w16 = sparse_model.classifier.fc1.weight, loaded.classifier.fc1.weight
    assert torch.equal(w == 0, w16 == 0)
    assert torch.allclose(w, w16, rtol=1e-3, atol=1e-6)


def test_encodings_chosen_by_size_and_exact():
    dense = torch.randn(50, 40)
    very_sparse = torch.zeros(100, 1000)
    very_sparse.view(-1)[torch.tensor([0, 5, 300, 1000, 99_999])] = torch.tensor([1.0, -2.0, 3.0, -0.0, 5.0])
    half = torch.randn(100, 100) * (torch.rand(100, 100) < 0.5)
    for tensor, encoding in [(dense, "dense"), (very_sparse, "relative"), (half, "bitmap")]:
        entry, data = encode_tensor("t", tensor)
        assert entry["encoding"] == encoding
        back = decode_tensor(entry, data)
        assert torch.equal(back, tensor) and back.dtype == tensor.dtype
    signed_zero = torch.zeros(1000)
    signed_zero[[3, 7]] = torch.tensor([-0.0, 1.0])
    assert encode_tensor("t", signed_zero)[0]["nnz"] == 1  # -0.0 is a zero, not stored


def test_relative_gaps_longer_than_255_use_fillers():
    t = torch.zeros(2000)
    t[[0, 256, 1999]] = torch.tensor([1.0, 2.0, 3.0])
    entry, data = encode_tensor("t", t)
    assert entry["encoding"] == "relative" and entry["nnz"] > 3
    assert torch.equal(decode_tensor(entry, data), t)


def test_summary_lists_every_tensor(sparse_model, tmp_path):
    path = save(sparse_model, tmp_path / "m.sparse")
    summary = encoding_summary(path)
    assert [s["name"] for s in summary] == list(sparse_model.state_dict())
    assert sum(s["bytes"] for s in summary) < path.stat().st_size


@pytest.mark.parametrize("damage", ["magic", "version", "truncate", "flip", "append", "empty"])
def test_damaged_files_raise_clear_errors(sparse_model, tmp_path, damage):
    path = save(sparse_model, tmp_path / "m.sparse")
    blob = bytearray(path.read_bytes())
    if damage == "magic":
        blob[:8] = b"NOTSPARS"
    elif damage == "version":
        blob[8:12] = struct.pack("<I", 99)
    elif damage == "truncate":
        blob = blob[: len(blob) // 2]
    elif damage == "flip":
        blob[len(blob) // 2] ^= 0xFF
    elif damage == "append":
        blob += b"junk"
    else:
        blob = bytearray()
    path.write_bytes(bytes(blob))
    with pytest.raises(SparseFormatError):
        load(path)


def test_missing_file_and_bad_entries_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model file"):
        load(tmp_path / "nothing.sparse")
    entry, data = encode_tensor("t", torch.zeros(1000))
    with pytest.raises(SparseFormatError):
        decode_tensor(entry, data + b"\x00")
    with pytest.raises(SparseFormatError):
        decode_tensor({**entry, "encoding": "zip"}, data)
    bitmap_entry = {"name": "b", "shape": [8], "dtype": "float32", "encoding": "bitmap", "nnz": 1,
                    "index_bytes": 1, "value_bytes": 4, "value_dtype": "float32"}
    with pytest.raises(SparseFormatError, match="bitmap marks"):
        decode_tensor(bitmap_entry, bytes([0b11000000]) + np.float32(1).tobytes())


def test_bad_arguments_raise(sparse_model, tmp_path):
    with pytest.raises(ValueError, match="value_dtype"):
        save(sparse_model, tmp_path / "m.sparse", value_dtype="int8")
    with pytest.raises(ValueError, match="config"):
        save(torch.nn.Linear(2, 2), tmp_path / "m.sparse")
    assert not (tmp_path / "m.sparse").exists()
