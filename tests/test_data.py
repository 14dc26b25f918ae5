import pytest
import torch

from helpers import data
from helpers.data import Batches, DataMissingError, augment, calibration_batch, load_splits, validation_indices


def test_validation_split_is_fixed_disjoint_and_complete():
    train_idx, val_idx = validation_indices(60_000, 5_000)
    assert len(train_idx) == 55_000 and len(val_idx) == 5_000
    assert len(set(train_idx.tolist()) & set(val_idx.tolist())) == 0
    assert torch.equal(torch.cat([train_idx, val_idx]).sort().values, torch.arange(60_000))
    again_train, again_val = validation_indices(60_000, 5_000)
    assert torch.equal(val_idx, again_val) and torch.equal(train_idx, again_train)


def test_full_splits_have_the_documented_sizes_and_balanced_validation():
    splits = load_splits()
    assert (len(splits.train), len(splits.val), len(splits.test)) == (55_000, 5_000, 10_000)
    counts = torch.bincount(splits.val.labels, minlength=10)
    assert counts.min() > 400 and counts.max() < 600  # a random split of a balanced set
    assert splits.train.images.dtype == torch.uint8 and splits.train.images.shape[1:] == (28, 28)


def test_quick_subsets_are_prefixes_of_the_full_splits(quick_splits):
    full = load_splits()
    assert (len(quick_splits.train), len(quick_splits.val), len(quick_splits.test)) == (2_000, 1_000, 1_000)
    assert torch.equal(quick_splits.val.images, full.val.images[:1_000])


def test_batches_cover_every_image_once_in_range(quick_splits):
    batches = Batches(quick_splits.val, batch_size=300, shuffle=True, seed=1)
    labels = torch.cat([y for _, y in batches])
    assert len(batches) == 4 and len(labels) == 1_000
    assert torch.equal(labels.sort().values, quick_splits.val.labels.sort().values)
    images, _ = next(iter(batches))
    assert images.shape == (300, 1, 28, 28) and images.min() >= 0 and images.max() <= 1


def test_augment_only_flips_and_shifts():
    img = torch.zeros(1, 1, 28, 28)
    img[0, 0, 10, 5] = 1.0
    out = augment(img.repeat(64, 1, 1, 1), torch.Generator().manual_seed(0))
    assert out.shape == (64, 1, 28, 28)
    assert torch.all(out.sum((1, 2, 3)) == 1)  # the pixel moved (by <= 2) but was not lost
    rows = torch.nonzero(out)[:, 2]
    assert rows.min() >= 8 and rows.max() <= 12


def test_calibration_batch_needs_images(quick_splits):
    assert calibration_batch(quick_splits.train, 16).shape == (16, 1, 28, 28)
    with pytest.raises(ValueError, match="calibration needs at least one image"):
        calibration_batch(quick_splits.train, 0)


def test_missing_data_offline_says_where_to_put_the_files(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "SHARED_DATA_DIR", tmp_path / "nowhere")
    with pytest.raises(DataMissingError, match="train-images-idx3-ubyte.gz"):
        data.load_fashion_mnist(tmp_path / "empty", download=False)


def test_random_erasing_blanks_one_rectangle_per_chosen_image():
    images = torch.ones(200, 1, 28, 28)
    out = augment(images, torch.Generator().manual_seed(0), max_shift=0, erase_prob=0.5)
    erased = (out == 0).sum((1, 2, 3)).float()
    share = (erased > 0).float().mean()
    assert 0.35 < share < 0.65
    assert erased.max() <= 0.3 * 28 * 28 and erased[erased > 0].min() >= 1


def test_reset_batches_repeat_the_first_pass_exactly():
    from helpers.data import Batches, ImageSet
    data = ImageSet(torch.randint(0, 256, (50, 28, 28), dtype=torch.uint8), torch.arange(50) % 10)
    batches = Batches(data, 16, shuffle=True, augment=True, seed=3, erase_prob=0.5)
    first = [(x.clone(), y.clone()) for x, y in batches]
    second = list(batches)
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(first, second))  # a plain second pass differs
    again = list(batches.reset())
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))


def _fake_shared(tmp_path, monkeypatch):
    """A fake shared folder of four small 'official' .gz files (each a tiny idx file), their md5s
    and unpacked sizes/sha256s made the official ones."""
    import gzip
    import hashlib

    shared = tmp_path / "shared" / "FashionMNIST" / "raw"
    shared.mkdir(parents=True)
    md5s, unpacked = {}, {}
    for i, name in enumerate(data.RAW_FILES):
        magic = 0x803 if "idx3" in name else 0x801
        content = magic.to_bytes(4, "big") + bytes([i]) * 1000
        (shared / name).write_bytes(gzip.compress(content, mtime=0))
        md5s[name] = hashlib.md5((shared / name).read_bytes()).hexdigest()
        unpacked[name[:-3]] = (len(content), hashlib.sha256(content).hexdigest())
    monkeypatch.setattr(data, "official_md5s", lambda: md5s)
    monkeypatch.setattr(data, "official_unpacked", lambda: unpacked)
    return shared, md5s


def test_a_truncated_copy_is_copied_again_from_shared(tmp_path, monkeypatch):
    shared, md5s = _fake_shared(tmp_path, monkeypatch)
    raw = tmp_path / "project" / "raw"
    raw.mkdir(parents=True)
    (raw / data.RAW_FILES[0]).write_bytes(bytes([0]) * 400)  # what a killed copy left
    data.check_unpacked(raw, shared, md5s)
    assert all((raw / n).read_bytes() == (shared / n).read_bytes() for n in data.RAW_FILES)
    assert data.damaged_raw_files(raw, md5s) == []


def test_a_killed_copy_leaves_no_partial_file(tmp_path, monkeypatch):
    shared, md5s = _fake_shared(tmp_path, monkeypatch)
    raw = tmp_path / "project" / "raw"

    def killed_copy(src, dst):
        with open(dst, "wb") as f:
            f.write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(data.shutil, "copyfile", killed_copy)
    with pytest.raises(KeyboardInterrupt):
        data.check_unpacked(raw, shared, md5s)
    assert list(raw.iterdir()) == []


def test_a_damaged_file_without_a_good_copy_is_named_with_what_to_do(tmp_path, monkeypatch):
    shared, md5s = _fake_shared(tmp_path, monkeypatch)
    (shared / data.RAW_FILES[1]).write_bytes(b"also damaged")
    monkeypatch.setattr(data, "SHARED_DATA_DIR", tmp_path / "shared")
    raw = tmp_path / "project" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / data.RAW_FILES[1]).write_bytes(b"cut short")
    with pytest.raises(DataMissingError, match=r"train-labels-idx1-ubyte.gz: not the official file .*Delete it"):
        data.load_fashion_mnist(tmp_path / "project", download=False)
