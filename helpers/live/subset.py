"""What the live views of notebooks 02, 04, 05 and 07 share: the fixed validation subset they
measure on, the accuracy on it, and reading one stage's committed records as a table."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
from torch import Tensor, nn

from ..data import FashionMNISTSplits
from ..training import accuracy

SUBSET_SIZE = 1000  # validation images a slider move is measured on


def fixed_val_subset(splits: FashionMNISTSplits, n: int = SUBSET_SIZE) -> tuple[Tensor, Tensor]:
    """(images in [0, 1], N x 1 x 28 x 28; labels) of the first ``n`` validation images."""
    if int(n) != n or n < 1:
        raise ValueError(f"the validation subset needs at least one image, got n={n!r}")
    if len(splits.val) == 0:
        raise ValueError("the validation split is empty: nothing to measure a live view on")
    return splits.val.head(int(n)).as_float()


def subset_accuracy(model: nn.Module, images: Tensor, labels: Tensor) -> float:
    """Accuracy (percent) of ``model`` on the subset, in one batch."""
    return accuracy(model, [(images, labels)])


def stage_table(results_dir: str | os.PathLike, stage: str) -> pd.DataFrame:
    """The records of ``<results_dir>/<stage>.json`` as a DataFrame (empty when the file is missing)."""
    path = Path(results_dir) / f"{stage}.json"
    if not path.is_file():
        return pd.DataFrame()
    return pd.DataFrame(json.loads(path.read_text()))
