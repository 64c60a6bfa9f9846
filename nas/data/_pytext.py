"""A byte-level text corpus that is on every machine: the Python standard library's sources.

The default GPT-2 study needs text without a download; the stdlib `.py` files are a few tens of MB
of real, structured text. Files are split (not bytes), so val code is truly unseen.
"""
from __future__ import annotations

import os
import random
import sysconfig
from pathlib import Path

from search_spaces import ConfigError

from ._base import TextDataset, bytes_to_tokens, check_fraction

_SKIP_DIRS = {"site-packages", "dist-packages", "__pycache__", "test", "tests", "idle_test"}


def _source_files(root: Path) -> list[str]:
    """Relative paths of the stdlib `.py` files, sorted so the order never depends on the filesystem."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS]
        rel = Path(dirpath).relative_to(root)
        found.extend((rel / f).as_posix() for f in filenames if f.endswith(".py"))
    return sorted(found)


def load_pytext(max_bytes: int = 4_000_000, val_fraction: float = 0.1, seed: int = 0, context: int = 64,
                root: str | os.PathLike | None = None) -> TextDataset:
    """Files in a seeded shuffle of their sorted paths, read until `max_bytes`; the first files,
    up to `val_fraction` of the bytes, are the val split."""
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1024:
        raise ConfigError("max_bytes", max_bytes, "an integer >= 1024")
    check_fraction("val_fraction", val_fraction)
    root = Path(root if root is not None else sysconfig.get_paths()["stdlib"])
    files = _source_files(root) if root.is_dir() else []
    if len(files) < 2:
        raise FileNotFoundError(
            f"pytext needs the Python standard library sources: expected at least two '*.py' files under {root} "
            "(sysconfig.get_paths()['stdlib']). Install a Python build that ships its .py sources "
            "(e.g. the python3.11 package, not an embedded/stripped build), or use data=digits/wikitext103.")
    random.Random(seed).shuffle(files)
    # Whole files go to val until it holds val_fraction of the budget, the rest to train; only the
    # last file of each split is cut, so no file is in both.
    budget = min(max_bytes, sum((root / rel).stat().st_size for rel in files))
    caps = {"val": max(1, int(val_fraction * budget))}
    caps["train"] = budget - caps["val"]
    chunks: dict[str, list[bytes]] = {"val": [], "train": []}
    sizes = {"val": 0, "train": 0}
    for rel in files:
        split = "val" if sizes["val"] < caps["val"] else "train"
        if sizes[split] >= caps[split]:
            break
        data = (root / rel).read_bytes()[: caps[split] - sizes[split]]
        chunks[split].append(data)
        sizes[split] += len(data)
    val = bytes_to_tokens(b"".join(chunks["val"]))
    train = bytes_to_tokens(b"".join(chunks["train"]))
    return TextDataset("pytext", train, val, vocab_size=256, context=context)
