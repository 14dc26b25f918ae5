"""Fashion-MNIST: the data sets, a fixed validation split, QUICK subsets and fast in-memory batches.

Images are served as float tensors in [0, 1] of shape N x 1 x 28 x 28 (what ``ToTensor()`` gives);
the models normalise inside. The whole data set (47 MB as uint8) is held in memory and batched
from tensors, which is several times faster on a 2-core CPU than a per-image PIL pipeline.
"""
from __future__ import annotations

import gzip
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .io_utils import atomic_path, file_digest
from .paths import SHARED_DATA_DIR, data_root

CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
RAW_FILES = (
    "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
)
# Size and sha256 of each unpacked official file, computed once by gunzipping the four .gz files
# (md5-verified against torchvision's list) of the course's shared folder ../shared/data.
UNPACKED_FILES = {
    "train-images-idx3-ubyte": (47_040_016, "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
    "train-labels-idx1-ubyte": (60_008, "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    "t10k-images-idx3-ubyte": (7_840_016, "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
    "t10k-labels-idx1-ubyte": (10_008, "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
}
SOURCE_URL = "https://github.com/zalandoresearch/fashion-mnist"
VALIDATION_SIZE = 5_000
SPLIT_SEED = 20_170_825  # fixed forever: every notebook tunes on the same validation images


class DataMissingError(FileNotFoundError):
    """Fashion-MNIST is neither in the data folder nor downloadable, or a file there is damaged."""


def official_md5s() -> dict[str, str]:
    """File name -> md5 of the four official Fashion-MNIST files (as torchvision lists them)."""
    from torchvision.datasets import FashionMNIST

    return {url.rsplit("/", 1)[-1]: md5 for url, md5 in FashionMNIST.resources}


def official_unpacked() -> dict[str, tuple[int, str]]:
    """Unpacked file name -> (size in bytes, sha256) of the four official idx files."""
    return dict(UNPACKED_FILES)


_DIGESTS: dict[tuple, str] = {}  # (algorithm, path, size, mtime, inode) -> hex digest


def _digest(path: Path, algorithm: str) -> str:
    """The ``algorithm`` digest of ``path``, hashed once per process for each version of the file."""
    st = path.stat()
    key = (algorithm, str(Path(path).resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _DIGESTS:
        _DIGESTS[key] = file_digest(path, algorithm)
    return _DIGESTS[key]


def _md5(path: Path) -> str:
    return _digest(path, "md5")


def damaged_raw_files(raw_dir: Path, md5s: dict[str, str]) -> list[Path]:
    """The .gz files in ``raw_dir`` whose md5 is not the official one (e.g. cut short by a killed copy)."""
    return [raw_dir / n for n in RAW_FILES if (raw_dir / n).is_file() and _md5(raw_dir / n) != md5s[n]]


def _good_gz(raw_dir: Path, shared_raw: Path, name: str, md5s: dict[str, str]) -> Path | None:
    """``raw_dir / name`` when it has the official md5, else copied there (atomically) from the
    read-only shared folder when that copy is good; None when there is no good copy."""
    target, source = raw_dir / name, shared_raw / name
    if target.is_file() and _md5(target) == md5s[name]:
        return target
    if source.is_file() and _md5(source) == md5s[name]:
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)
        return target
    return None


def unpacked_problem(path: Path, size: int, sha256: str) -> str | None:
    """What is wrong with the unpacked idx file ``path`` (size, magic number, sha256); None if official."""
    actual = path.stat().st_size
    if actual != size:
        return f"{'truncated' if actual < size else 'too long'}: {actual:,} bytes, expected {size:,}"
    expected_magic = 0x800 + int(path.name.split("-idx")[1][0])  # idx3 -> 0x00000803
    with open(path, "rb") as f:
        magic = int.from_bytes(f.read(4), "big")
    if magic != expected_magic:
        return f"bad magic number 0x{magic:08x}, expected 0x{expected_magic:08x}"
    if _digest(path, "sha256") != sha256:
        return "content differs from the official file"
    return None


def _extract(gz: Path, target: Path) -> None:
    """Unpack ``gz`` into ``target`` atomically (a killed run leaves the old file or none)."""
    with atomic_path(target) as tmp, gzip.open(gz, "rb") as src, open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)


def _unrepairable(path: Path, problem: str, shared_raw: Path, md5s: dict[str, str]) -> DataMissingError:
    """The error for a damaged unpacked file without a good .gz to re-extract it from."""
    gz_name = path.name + ".gz"
    gz, shared = path.with_name(gz_name), shared_raw / gz_name
    local = f"{gz} is {'not the official file (md5 differs)' if gz.exists() else 'missing'}"
    other = f"{shared} is {'not the official file either' if shared.exists() else 'missing'}"
    return DataMissingError(
        f"{path}: {problem}. It cannot be re-extracted: {local} and {other}. Put the official "
        f"{gz_name} (md5 {md5s[gz_name]}, from {SOURCE_URL}) into {path.parent} and run again to "
        f"re-extract it, or delete {path} and {gz} and run again with internet access.")


def check_unpacked(raw_dir: Path, shared_raw: Path, md5s: dict[str, str]) -> None:
    """Verify each unpacked idx file in ``raw_dir``; (re-)extract a missing or damaged one from its
    verified .gz (copied again from ``shared_raw`` if need be), warning once for each repair.

    A missing file without a good .gz is left to torchvision's download; a damaged one raises
    ``DataMissingError`` saying what is wrong and how to fix it.
    """
    for name, (size, sha256) in official_unpacked().items():
        path = raw_dir / name
        problem = unpacked_problem(path, size, sha256) if path.exists() else None
        if path.exists() and problem is None:
            continue
        gz = _good_gz(raw_dir, shared_raw, name + ".gz", md5s)
        if gz is None:
            if problem is None:
                continue
            raise _unrepairable(path, problem, shared_raw, md5s)
        _extract(gz, path)
        still = unpacked_problem(path, size, sha256)
        if still:
            raise DataMissingError(f"{path}: {still} even after re-extracting it from the verified "
                                   f"{gz}; delete {raw_dir} and run again with internet access.")
        if problem:
            warnings.warn(f"Repaired {path} ({problem}): re-extracted it from the verified {gz}.",
                          stacklevel=3)


def load_fashion_mnist(root=None, download: bool = True):
    """The (train, test) ``torchvision.datasets.FashionMNIST`` sets under ``root``.

    Root: the argument, else ``$COURSE_DATA_DIR``, else ``<repo>/data``. Files that are missing or
    not the official ones (md5) are copied in atomically from ``../shared/data`` when it holds good
    copies; unpacked files that are missing or not the official ones (size, sha256) are re-extracted
    from the verified .gz files; torchvision then downloads (checking the md5) what is still missing.
    """
    from torchvision.datasets import FashionMNIST

    root = data_root(root)
    raw_dir = root / "FashionMNIST" / "raw"
    md5s = official_md5s()
    shared_raw = SHARED_DATA_DIR / "FashionMNIST" / "raw"
    check_unpacked(raw_dir, shared_raw, md5s)
    try:
        train = FashionMNIST(root, train=True, download=download)
        test = FashionMNIST(root, train=False, download=download)
    except (OSError, RuntimeError) as err:  # URLError is an OSError
        damaged = damaged_raw_files(raw_dir, md5s)
        if damaged:
            raise DataMissingError(
                f"{', '.join(str(p) for p in damaged)}: not the official file (md5 differs; a copy or "
                "download cut short?), and no good copy could be fetched. Delete it and run again "
                "with internet access, or put the official file (md5 "
                f"{', '.join(md5s[p.name] for p in damaged)}) there.") from err
        raise DataMissingError(
            f"Fashion-MNIST is not in {raw_dir} and "
            f"{'could not be downloaded' if download else 'downloading is off (download=False)'} "
            f"({err}). Put the four files {', '.join(RAW_FILES)} (from {SOURCE_URL}) into that "
            "folder, or set $COURSE_DATA_DIR to a folder that holds FashionMNIST/raw/."
        ) from err
    return train, test


@dataclass
class ImageSet:
    """Images (uint8, N x 28 x 28) and labels (int64, N), held in memory."""

    images: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: Tensor) -> "ImageSet":
        return ImageSet(self.images[indices], self.labels[indices])

    def head(self, n: int | None) -> "ImageSet":
        """The first ``n`` images (all when ``n`` is None), e.g. a QUICK subset."""
        return self if n is None else ImageSet(self.images[:n], self.labels[:n])

    def as_float(self) -> tuple[Tensor, Tensor]:
        """Images as float in [0, 1], N x 1 x 28 x 28, and labels."""
        return self.images.unsqueeze(1).float().div_(255.0), self.labels


@dataclass
class FashionMNISTSplits:
    """train (55,000), val (5,000, a fixed seeded split of the training set), test (10,000)."""

    train: ImageSet
    val: ImageSet
    test: ImageSet


def validation_indices(n_train: int = 60_000, n_val: int = VALIDATION_SIZE) -> tuple[Tensor, Tensor]:
    """(train_idx, val_idx): a fixed, seeded, disjoint split of the training indices."""
    perm = torch.randperm(n_train, generator=torch.Generator().manual_seed(SPLIT_SEED))
    return perm[n_val:].sort().values, perm[:n_val].sort().values


def load_splits(root=None, quick: bool = False, quick_sizes=(2_000, 1_000, 1_000)) -> FashionMNISTSplits:
    """Train/val/test splits; QUICK keeps only the first ``quick_sizes`` images of each."""
    train_ds, test_ds = load_fashion_mnist(root)
    full = ImageSet(train_ds.data, train_ds.targets)
    train_idx, val_idx = validation_indices(len(full))
    splits = FashionMNISTSplits(full.subset(train_idx), full.subset(val_idx),
                                ImageSet(test_ds.data, test_ds.targets))
    if quick:
        n_train, n_val, n_test = quick_sizes
        splits = FashionMNISTSplits(splits.train.head(n_train), splits.val.head(n_val),
                                    splits.test.head(n_test))
    return splits


def augment(images: Tensor, generator: torch.Generator, max_shift: int = 2,
            erase_prob: float = 0.0) -> Tensor:
    """Random horizontal flips, shifts of up to ``max_shift`` pixels (zero padding), and, with
    probability ``erase_prob``, one random rectangle erased to background (random erasing)."""
    n = images.shape[0]
    flip = torch.rand(n, generator=generator) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    padded = torch.nn.functional.pad(images, [max_shift] * 4)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator)
    rows = (dy[:, None] + torch.arange(28))[:, None, :, None].expand(n, 1, 28, 28 + 2 * max_shift)
    cropped = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(28))[:, None, None, :].expand(n, 1, 28, 28)
    images = cropped.gather(3, cols)
    if erase_prob > 0:
        images = images * ~_erasing_masks(n, erase_prob, generator)
    return images


def _erasing_masks(n: int, prob: float, generator: torch.Generator) -> Tensor:
    """Boolean N x 1 x 28 x 28 masks, each one rectangle (2-20% of the area) or, with 1-prob, empty."""
    area = 28 * 28 * (0.02 + 0.18 * torch.rand(n, generator=generator))
    aspect = torch.exp(torch.empty(n).uniform_(-1.2, 1.2, generator=generator))
    h = (area * aspect).sqrt().round().clamp(1, 27).long()
    w = (area / aspect).sqrt().round().clamp(1, 27).long()
    top = (torch.rand(n, generator=generator) * (29 - h)).long()
    left = (torch.rand(n, generator=generator) * (29 - w)).long()
    r, c = torch.arange(28), torch.arange(28)
    inside_r = (r[None] >= top[:, None]) & (r[None] < (top + h)[:, None])
    inside_c = (c[None] >= left[:, None]) & (c[None] < (left + w)[:, None])
    apply = torch.rand(n, generator=generator) < prob
    return (inside_r[:, :, None] & inside_c[:, None, :] & apply[:, None, None])[:, None]


class Batches:
    """An iterable of (images, labels) batches over an ``ImageSet``, like a DataLoader.

    ``shuffle`` and ``augment`` draw from a seeded generator, so a run is repeatable.
    """

    def __init__(self, data: ImageSet, batch_size: int = 256, shuffle: bool = False,
                 augment: bool = False, seed: int = 0, erase_prob: float = 0.0):
        if len(data) == 0:
            raise ValueError("no images to batch: the data set is empty")
        self.images, self.labels = data.as_float()
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
        self.erase_prob, self.seed = erase_prob, seed
        self.generator = torch.Generator().manual_seed(seed)

    def reset(self) -> "Batches":
        """Restart the shuffling and augmentation from ``seed``: the next pass draws exactly the
        batches of the first pass again (call it before each of several runs that must see the
        same images)."""
        self.generator.manual_seed(self.seed)
        return self

    def __len__(self) -> int:
        return (len(self.labels) + self.batch_size - 1) // self.batch_size

    @property
    def num_images(self) -> int:
        return len(self.labels)

    def __iter__(self):
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for start in range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size]
            images = self.images[idx]
            if self.augment:
                images = augment(images, self.generator, erase_prob=self.erase_prob)
            yield images, self.labels[idx]


def calibration_batch(data: ImageSet, num_images: int, seed: int = 0) -> Tensor:
    """``num_images`` random images (float, [0, 1]) for calibration, drawn from ``data``."""
    if num_images <= 0 or len(data) == 0:
        raise ValueError(f"calibration needs at least one image (asked for {num_images} "
                         f"from a set of {len(data)})")
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:num_images]
    return data.subset(idx).as_float()[0]
