"""CIFAR-10/100 from the official "python version" pickles, as a folder or the unextracted .tar.gz.

No download at run time (the search may run on machines without internet): users fetch the
archive once and pass `path=`.
"""
from __future__ import annotations

import os
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import torch

from search_spaces import ConfigError

from ._base import ImageDataset, check_fraction, split_sizes
from ._safe_pickle import UnsafePickleError, load_numpy_pickle


@dataclass(frozen=True)
class _Layout:
    folder: str
    archive: str
    url: str
    train: tuple[str, ...]
    test: str
    meta: str

    def files(self) -> tuple[str, ...]:
        return (*self.train, self.test, self.meta)

    def describe(self) -> str:
        return f"{self.folder}/{{{','.join(self.files())}}}"


_LAYOUTS = {
    "cifar10": _Layout("cifar-10-batches-py", "cifar-10-python.tar.gz",
                       "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                       tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"),
    "cifar100": _Layout("cifar-100-python", "cifar-100-python.tar.gz",
                        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", ("train",), "test", "meta"),
}


def _not_found(name: str, layout: _Layout, where: Path, missing: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{name}: {missing} not found under {where}. Expected path= to be the archive {layout.archive}, the "
        f"extracted folder {layout.folder}/ or its parent, with the files {layout.describe()} (the official "
        f"'CIFAR python version'). Download {layout.url} once on a machine with internet and pass data.path=...")


def _unpickle(name: str, where: str, f: IO[bytes]) -> dict:
    """One batch file. A damaged or tampered file is named in the error: the user must replace it."""
    try:
        batch = load_numpy_pickle(f)
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{name}: {where}: {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise ValueError(f"{name}: {where} is not a CIFAR python batch (damaged or truncated: {e})") from None
    if not isinstance(batch, dict):
        raise ValueError(f"{name}: {where} is not a CIFAR python batch (a pickled {type(batch).__name__}, "
                         "expected a dict)")
    return batch


def _read_files(name: str, layout: _Layout, path: Path) -> dict[str, dict]:
    """Unpickle every file of the layout from a folder or a tar archive (streamed, never extracted)."""
    if path.is_file():
        if not tarfile.is_tarfile(path):
            raise _not_found(name, layout, path, f"a tar archive at {path}")
        wanted = {f"{layout.folder}/{f}": f for f in layout.files()}
        found: dict[str, dict] = {}
        with tarfile.open(path, "r:*") as tar:
            for member in tar:  # one sequential pass: seeking backwards in a .gz is slow
                key = wanted.get(member.name.removeprefix("./"))
                if key is not None and member.isfile():
                    found[key] = _unpickle(name, f"{path}:{member.name}", tar.extractfile(member))
        missing = [f for f in layout.files() if f not in found]
        if missing:
            raise _not_found(name, layout, path, f"archive member {layout.folder}/{missing[0]}")
        return found
    if not path.is_dir():
        raise _not_found(name, layout, path, "the path itself")
    for folder in (path, path / layout.folder):
        if (folder / layout.meta).is_file():
            break
    else:
        if (path / layout.archive).is_file():
            return _read_files(name, layout, path / layout.archive)
        raise _not_found(name, layout, path, f"{layout.folder}/{layout.meta}")
    found = {}
    for f in layout.files():
        if not (folder / f).is_file():
            raise _not_found(name, layout, folder, f"file {f}")
        with open(folder / f, "rb") as fh:
            found[f] = _unpickle(name, str(folder / f), fh)
    return found


def _images_labels(name: str, batch: dict, label_key: bytes, file: str) -> tuple[torch.Tensor, torch.Tensor]:
    data, labels = batch.get(b"data"), batch.get(label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{name}: {file} has no uint8 b'data' array of shape [N, 3072]; not a CIFAR python batch")
    if labels is None or len(labels) != len(data):
        raise ValueError(f"{name}: {file} has no {label_key!r} list with one label per image")
    images = torch.from_numpy(np.ascontiguousarray(data).reshape(-1, 3, 32, 32))  # rows: 1024 R, 1024 G, 1024 B
    return images, torch.as_tensor(np.asarray(labels, dtype=np.int64))


def load_cifar(name: str, path: str | os.PathLike = "data", val_fraction: float = 0.1, seed: int = 0,
               label: str = "fine") -> ImageDataset:
    """val = a seeded `val_fraction` hold-out of the official train set (what a study selects on),
    test = the official test set (what an export reports)."""
    if name not in _LAYOUTS:
        raise ConfigError("data", name, f"one of {sorted(_LAYOUTS)}")
    if label not in ("fine", "coarse"):
        raise ConfigError("label", label, "'fine' (100 classes) or 'coarse' (20 superclasses), CIFAR-100 only")
    check_fraction("val_fraction", val_fraction)
    layout = _LAYOUTS[name]
    files = _read_files(name, layout, Path(path))
    if name == "cifar10":
        label_key, names_key = b"labels", b"label_names"
    else:
        label_key, names_key = (b"fine_labels", b"fine_label_names") if label == "fine" else \
            (b"coarse_labels", b"coarse_label_names")
    class_names = [n.decode() if isinstance(n, bytes) else str(n) for n in files[layout.meta].get(names_key, [])]
    parts = [_images_labels(name, files[f], label_key, f) for f in layout.train]
    train = (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
    test = _images_labels(name, files[layout.test], label_key, layout.test)
    perm = torch.randperm(len(train[1]), generator=torch.Generator().manual_seed(seed))
    n_train, _ = split_sizes(len(perm), val_fraction)
    val = (train[0][perm[n_train:]], train[1][perm[n_train:]])
    train = (train[0][perm[:n_train]], train[1][perm[:n_train]])
    num_classes = len(class_names) or int(max(train[1].max(), val[1].max(), test[1].max())) + 1
    for split, labels in (("train", train[1]), ("val", val[1]), ("test", test[1])):
        if labels.min() < 0 or labels.max() >= num_classes:
            raise ValueError(f"{name}: {split} labels outside [0, {num_classes}); the meta file lists {num_classes} classes")
    return ImageDataset(name, train, val, test, num_classes=num_classes, scale=255.0, class_names=class_names or None)
