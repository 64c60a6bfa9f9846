"""Unpickling the CIFAR "python version" files without letting them run code.

The official files are pickled dicts of numpy arrays, bytes and ints; a plain `pickle.load`
would import and call anything a tampered file names (e.g. `os.system`). We allow only the
three globals numpy needs to rebuild an array.
"""
from __future__ import annotations

import pickle
from typing import IO, Any

import numpy as np


def _reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct as fn  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct as fn
    return fn


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,  # what the official (numpy 1, Python 2) files name
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
}


class UnsafePickleError(pickle.UnpicklingError):
    """The file names a global we do not allow: it is not a plain CIFAR batch."""


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        factory = _ALLOWED.get((module, name))
        if factory is None:
            raise UnsafePickleError(
                f"refusing to load global {module}.{name}: a CIFAR batch may only contain numpy arrays, "
                "bytes, lists and ints (is the file corrupt or tampered with?)")
        return factory()


def load_numpy_pickle(f: IO[bytes]) -> Any:
    """`pickle.load(f, encoding="bytes")` restricted to numpy arrays (keys stay bytes, as in the originals)."""
    return _NumpyOnlyUnpickler(f, encoding="bytes").load()
