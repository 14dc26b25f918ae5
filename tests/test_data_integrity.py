"""Damaged Fashion-MNIST files: unpacked idx files are verified, repaired from the verified .gz,
or named in a DataMissingError that says how to fix them. All on small fake files in tmp_path."""
import gzip
import hashlib
import random
import warnings

import pytest
import torch

from helpers import data
from helpers.data import DataMissingError

IMAGES = "train-images-idx3-ubyte"


def _idx(magic: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    """An idx file: big-endian magic number, dimensions, then the bytes."""
    return b"".join(x.to_bytes(4, "big") for x in (magic, *dims)) + payload


def _fake_official(tmp_path, monkeypatch):
    """Small fake 'official' files: their .gz in a fake shared folder, and the official md5s and
    unpacked sizes/sha256s made theirs. Returns (project root, its raw folder, unpacked contents)."""
    rng = random.Random(0)
    unpacked = {}
    for split, n in (("train", 30), ("t10k", 10)):
        pixels = bytes(rng.randrange(1, 256) for _ in range(n * 28 * 28))
        unpacked[f"{split}-images-idx3-ubyte"] = _idx(0x803, (n, 28, 28), pixels)
        unpacked[f"{split}-labels-idx1-ubyte"] = _idx(0x801, (n,), bytes(i % 10 for i in range(n)))
    shared = tmp_path / "shared" / "FashionMNIST" / "raw"
    shared.mkdir(parents=True)
    md5s = {}
    for name, content in unpacked.items():
        packed = gzip.compress(content, mtime=0)
        (shared / f"{name}.gz").write_bytes(packed)
        md5s[f"{name}.gz"] = hashlib.md5(packed).hexdigest()
    official = {n: (len(c), hashlib.sha256(c).hexdigest()) for n, c in unpacked.items()}
    monkeypatch.setattr(data, "official_md5s", lambda: md5s)
    monkeypatch.setattr(data, "official_unpacked", lambda: official)
    monkeypatch.setattr(data, "SHARED_DATA_DIR", tmp_path / "shared")
    root = tmp_path / "project"
    return root, root / "FashionMNIST" / "raw", unpacked


def _load_quietly(root):
    """Load offline, failing on any warning; returns the train images."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return data.load_fashion_mnist(root, download=False)[0].data


def _load_with_repair(root, match):
    """Load offline, expecting one repair warning that matches ``match``; returns the train images."""
    with pytest.warns(UserWarning, match=match) as record:
        images = data.load_fashion_mnist(root, download=False)[0].data
    assert len(record) == 1
    return images


def _overwrite(path, offset: int, content: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(content)


def test_a_fresh_folder_is_copied_from_shared_and_unpacked_offline(tmp_path, monkeypatch):
    root, raw, unpacked = _fake_official(tmp_path, monkeypatch)
    images = _load_quietly(root)
    assert images.shape == (30, 28, 28)
    assert all((raw / n).read_bytes() == c for n, c in unpacked.items())


def test_zero_bytes_inside_the_unpacked_images_are_repaired(tmp_path, monkeypatch):
    root, raw, unpacked = _fake_official(tmp_path, monkeypatch)
    good = _load_quietly(root)  # also fills the in-process digest cache
    _overwrite(raw / IMAGES, 5_000, bytes(64))
    repaired = _load_with_repair(root, rf"Repaired .*{IMAGES} \(content differs from the official file\)"
                                       r": re-extracted it from the verified .*\.gz")
    assert torch.equal(repaired, good)
    assert (raw / IMAGES).read_bytes() == unpacked[IMAGES]


def test_a_truncated_unpacked_file_is_re_extracted_from_the_gz_beside_it(tmp_path, monkeypatch):
    root, raw, unpacked = _fake_official(tmp_path, monkeypatch)
    good = _load_quietly(root)
    monkeypatch.setattr(data, "SHARED_DATA_DIR", tmp_path / "nowhere")  # only the local .gz is left
    with open(raw / IMAGES, "r+b") as f:
        f.truncate(1_234)
    repaired = _load_with_repair(root, r"truncated: 1,234 bytes, expected 23,536\)")
    assert torch.equal(repaired, good)


def test_a_zeroed_magic_number_is_repaired(tmp_path, monkeypatch):
    root, raw, unpacked = _fake_official(tmp_path, monkeypatch)
    good = _load_quietly(root)
    _overwrite(raw / IMAGES, 0, bytes(4))
    repaired = _load_with_repair(root, r"bad magic number 0x00000000, expected 0x00000803")
    assert torch.equal(repaired, good)


def test_a_damaged_gz_is_copied_again_from_shared_to_repair(tmp_path, monkeypatch):
    root, raw, unpacked = _fake_official(tmp_path, monkeypatch)
    good = _load_quietly(root)
    _overwrite(raw / IMAGES, 5_000, bytes(64))
    (raw / f"{IMAGES}.gz").write_bytes(b"cut short")
    assert torch.equal(_load_with_repair(root, "content differs"), good)
    shared_gz = tmp_path / "shared" / "FashionMNIST" / "raw" / f"{IMAGES}.gz"
    assert (raw / f"{IMAGES}.gz").read_bytes() == shared_gz.read_bytes()


def test_a_damaged_file_without_a_good_gz_anywhere_is_named_with_the_fix(tmp_path, monkeypatch):
    root, raw, unpacked = _fake_official(tmp_path, monkeypatch)
    _load_quietly(root)
    monkeypatch.setattr(data, "SHARED_DATA_DIR", tmp_path / "nowhere")
    _overwrite(raw / IMAGES, 5_000, bytes(64))
    (raw / f"{IMAGES}.gz").write_bytes(b"cut short")
    with pytest.raises(DataMissingError) as info:
        data.load_fashion_mnist(root, download=False)
    message = str(info.value)
    assert f"{raw / IMAGES}: content differs from the official file" in message
    assert f"{IMAGES}.gz is not the official file (md5 differs)" in message
    assert f"Put the official {IMAGES}.gz" in message and f"delete {raw / IMAGES}" in message
    assert "could not be downloaded" not in message


def test_the_official_unpacked_sizes_match_the_idx_headers():
    counts = {"train-images-idx3-ubyte": 60_000 * 784, "train-labels-idx1-ubyte": 60_000,
              "t10k-images-idx3-ubyte": 10_000 * 784, "t10k-labels-idx1-ubyte": 10_000}
    headers = {name: 16 if "idx3" in name else 8 for name in counts}
    assert {n: s for n, (s, _) in data.official_unpacked().items()} == {
        n: counts[n] + headers[n] for n in counts}
    assert set(data.official_unpacked()) == {n[:-3] for n in data.RAW_FILES}
