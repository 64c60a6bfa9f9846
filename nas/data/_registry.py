"""`load_dataset(name, **options)`: one entry point so Hydra's `data=` group maps to a loader."""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

from search_spaces import ConfigError

from ._base import Dataset
from ._cifar import load_cifar
from ._digits import load_digits
from ._imagefolder import load_imagefolder
from ._mnist5k import load_mnist5k
from ._pytext import load_pytext
from ._textdir import load_textdir
from ._wikitext import load_wikitext

DATASETS: dict[str, Callable[..., Dataset]] = {
    "digits": load_digits,
    "pytext": load_pytext,
    "cifar10": functools.partial(load_cifar, "cifar10"),
    "cifar100": functools.partial(load_cifar, "cifar100"),
    "wikitext103": functools.partial(load_wikitext, "wikitext103"),
    "wikitext2": functools.partial(load_wikitext, "wikitext2"),
    "textdir": load_textdir,
    "imagefolder": load_imagefolder,
    "mnist5k": load_mnist5k,
}


# (image_size, channels) of the image data sets whose size is fixed; imagefolder's come from its options
_IMAGE_SHAPES = {"digits": (8, 1), "mnist5k": (28, 1), "cifar10": (32, 3), "cifar100": (32, 3)}


def image_shape(name: str, options: dict[str, Any] | None = None) -> tuple[int, int]:
    """(image_size, channels) the images of data set `name` will have with `options`, without
    loading them: what a config checks its ViT ranges against (patch sizes must divide the image)."""
    given = {**dataset_options(name), **(options or {})}
    if "image_size" in given:
        return int(given["image_size"]), int(given.get("channels", 3))
    return _IMAGE_SHAPES.get(name, (8, 1))


def dataset_options(name: str) -> dict[str, Any]:
    """The options `name` accepts and their defaults (for docs, the CLI and error messages)."""
    if name not in DATASETS:
        raise ConfigError("data", name, f"one of {sorted(DATASETS)}")
    return {p.name: p.default for p in inspect.signature(DATASETS[name]).parameters.values()}


def load_dataset(name: str, **options: Any) -> Dataset:
    """Load dataset `name`; unknown names and options raise `ConfigError`, missing files `FileNotFoundError`."""
    known = dataset_options(name)
    for key, value in options.items():
        if key not in known:
            raise ConfigError(key, value, f"an option of data={name}: {sorted(known)}")
    return DATASETS[name](**options)
