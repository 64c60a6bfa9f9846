"""Classification images from a folder: one sub-folder per class (`path/<class>/<image>`).

Lets a ViT study run on the user's own images without writing a loader. Images are read once with
Pillow (PNG, JPEG and every other format it opens), converted to `channels` and resized to a square
`image_size`, then kept as uint8 like CIFAR. If `path` holds exactly `train/`, `val/` and `test/`
folders (each with the class folders), those splits are used as given.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from search_spaces import ConfigError

from ._base import ImageDataset, check_fractions, heldout_split, split_sizes

_MODES = {1: "L", 3: "RGB"}
_COMMON = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}  # named in the error
_LAYOUT = "path/<class>/<image>.png|.jpg|... (class names = the sorted sub-folder names)"


def _image_extensions() -> frozenset[str]:
    """Suffixes Pillow can open (not save-only ones such as .pdf); other files (README, .DS_Store)
    in a class folder are ignored."""
    from PIL import Image

    return frozenset(ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def _visible(rel: Path) -> bool:
    return not any(part.startswith(".") for part in rel.parts)


def _class_dirs(root: Path) -> list[Path]:
    return sorted((d for d in root.iterdir() if d.is_dir() and _visible(d.relative_to(root))), key=lambda d: d.name)


def _image_files(folder: Path, extensions: frozenset[str]) -> list[Path]:
    """The class folder's images, recursively, sorted by relative path so the order never depends on
    the filesystem."""
    return sorted((p for p in folder.rglob("*") if p.suffix.lower() in extensions and p.is_file()
                   and _visible(p.relative_to(folder))), key=lambda p: p.relative_to(folder).as_posix())


def _read_image(file: Path, mode: str, size: int) -> np.ndarray:
    """[C, size, size] uint8. A damaged file is named: the user must replace or delete it."""
    from PIL import Image

    try:
        with Image.open(file) as img:
            img = img.convert(mode).resize((size, size), Image.Resampling.BILINEAR)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ValueError(f"imagefolder: {file} is not a readable image ({type(e).__name__}: {e}); "
                         "replace or delete it") from None
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _read_classes(root: Path, class_names: list[str] | None, image_size: int, channels: int
                  ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(images [N, C, H, W] uint8, labels, class names) of a class-folder tree. With `class_names`
    (a val/test folder of the split layout) its classes must be among them."""
    if not root.is_dir():
        raise FileNotFoundError(f"imagefolder: folder {root} not found"
                                f"{' (it is a file)' if root.exists() else ''}. Expected {_LAYOUT}")
    dirs = _class_dirs(root)
    if not dirs:
        raise FileNotFoundError(f"imagefolder: no class folders under {root}. Expected {_LAYOUT}")
    names = class_names if class_names is not None else [d.name for d in dirs]
    unknown = [d.name for d in dirs if d.name not in names]
    if unknown:
        raise FileNotFoundError(f"imagefolder: {root} has class folder(s) {unknown} that train/ does not have "
                                f"(train's classes: {names})")
    extensions = _image_extensions()
    images, labels = [], []
    for d in dirs:
        files = _image_files(d, extensions)
        if not files:
            raise FileNotFoundError(f"imagefolder: class folder {d} holds no image (looked for "
                                    f"{', '.join(sorted(e for e in extensions if e in _COMMON))}, ... recursively)")
        images.extend(_read_image(f, _MODES[channels], image_size) for f in files)
        labels.extend([names.index(d.name)] * len(files))
    return torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.long), names



def _stratified_order(labels: torch.Tensor, seed: int) -> torch.Tensor:
    """A seeded permutation whose every tail holds each class in proportion: images are ranked by
    their (shuffled) position within their class, so `heldout_split`'s held-out end, and its val
    and test parts, get about `fraction` of every class."""
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    shuffled = labels[perm]
    key = torch.empty(len(labels), dtype=torch.float64)
    for c in shuffled.unique():
        idx = (shuffled == c).nonzero().flatten()
        key[idx] = (torch.arange(len(idx), dtype=torch.float64) + 0.5) / len(idx)
    return perm[torch.sort(key, stable=True).indices]


def load_imagefolder(path: str | os.PathLike = "data/images", image_size: int = 32, channels: int = 3,
                     val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0,
                     stratified: bool = True) -> ImageDataset:
    """A seeded train/val/test split (`heldout_split`; with `stratified`, each class in proportion) of
    the images in `path/<class>/`; or `path/{train,val,test}/<class>/` as given (fractions and seed
    unused). Pixels 0..255 are scaled to [0, 1] then standardised with the train split's statistics."""
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigError("path", path, "a folder (str or path) with one sub-folder of images per class")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or not 4 <= image_size <= 1024:
        raise ConfigError("image_size", image_size, "an integer in [4, 1024] (images are resized to a square)")
    if isinstance(channels, bool) or not isinstance(channels, int) or channels not in _MODES:
        raise ConfigError("channels", channels, "1 (grayscale, Pillow mode 'L') or 3 (RGB)")
    check_fractions(val_fraction, test_fraction)
    if not isinstance(stratified, bool):
        raise ConfigError("stratified", stratified, "true or false")
    root = Path(path)
    if root.is_dir() and sorted(d.name for d in _class_dirs(root)) == ["test", "train", "val"]:
        train = _read_classes(root / "train", None, image_size, channels)
        names = train[2]
        val, test = (_read_classes(root / s, names, image_size, channels) for s in ("val", "test"))
        return ImageDataset("imagefolder", train[:2], val[:2], test[:2], num_classes=len(names), scale=255.0,
                            class_names=names)
    images, labels, names = _read_classes(root, None, image_size, channels)
    n = len(labels)
    if n < 3:
        raise FileNotFoundError(f"imagefolder: found {n} image(s) under {root}; need at least 3 "
                                "(one each for train, val and test)")
    if split_sizes(n, val_fraction + test_fraction)[1] < 2:
        raise ConfigError("val_fraction", val_fraction,
                          f"a share that holds out at least 2 of the {n} images under {root} (one val, one test): "
                          f"val_fraction + test_fraction >= {2 / n:.3g}, or add images")
    perm = _stratified_order(labels, seed) if stratified else \
        torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    train, val, test = heldout_split(perm, val_fraction, test_fraction)
    return ImageDataset("imagefolder", (images[train], labels[train]), (images[val], labels[val]),
                        (images[test], labels[test]), num_classes=len(names), scale=255.0, class_names=names)
