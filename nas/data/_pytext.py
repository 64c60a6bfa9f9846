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

from ._base import TextDataset, bytes_to_tokens, check_fractions

_SKIP_DIRS = {"site-packages", "dist-packages", "__pycache__", "test", "tests", "idle_test"}


def _source_files(root: Path) -> list[str]:
    """Relative paths of the stdlib `.py` files, sorted so the order never depends on the filesystem."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS]
        rel = Path(dirpath).relative_to(root)
        found.extend((rel / f).as_posix() for f in filenames if f.endswith(".py"))
    return sorted(found)


def load_pytext(max_bytes: int = 4_000_000, val_fraction: float = 0.05, test_fraction: float = 0.05, seed: int = 0,
                context: int = 64, root: str | os.PathLike | None = None) -> TextDataset:
    """Files in a seeded shuffle of their sorted paths, read until `max_bytes`; the first files, up to
    `val_fraction + test_fraction` of the bytes, are held out, and split by whole files into val
    (the first, up to `val_fraction`) and test (the rest). Train is what a two-way split with
    val_fraction + test_fraction gives, so a checkpoint meta-trained on it saw no held-out file."""
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1024:
        raise ConfigError("max_bytes", max_bytes, "an integer >= 1024")
    check_fractions(val_fraction, test_fraction)
    root = Path(root if root is not None else sysconfig.get_paths()["stdlib"])
    files = _source_files(root) if root.is_dir() else []
    if len(files) < 2:
        raise FileNotFoundError(
            f"pytext needs the Python standard library sources: expected at least two '*.py' files under {root} "
            "(sysconfig.get_paths()['stdlib']). Install a Python build that ships its .py sources "
            "(e.g. the python3.11 package, not an embedded/stripped build), or use data=digits/wikitext103.")
    random.Random(seed).shuffle(files)
    # Whole files are held out until they hold val_fraction + test_fraction of the budget, the rest
    # go to train; only the last file of each part is cut, so no file is in both.
    budget = min(max_bytes, sum((root / rel).stat().st_size for rel in files))
    caps = {"held": max(2, int((val_fraction + test_fraction) * budget))}
    caps["train"] = budget - caps["held"]
    chunks: dict[str, list[bytes]] = {"held": [], "train": []}
    sizes = {"held": 0, "train": 0}
    for rel in files:
        part = "held" if sizes["held"] < caps["held"] else "train"
        if sizes[part] >= caps[part]:
            break
        data = (root / rel).read_bytes()[: caps[part] - sizes[part]]
        chunks[part].append(data)
        sizes[part] += len(data)
    val_files, test_files = _split_files(chunks["held"], val_fraction / (val_fraction + test_fraction))
    splits = {"train": chunks["train"], "val": val_files, "test": test_files}
    tokens = {s: bytes_to_tokens(b"".join(parts)) for s, parts in splits.items()}
    documents = {s: _offsets(parts) for s, parts in splits.items()}
    return TextDataset("pytext", tokens["train"], tokens["val"], tokens["test"], vocab_size=256, context=context,
                       documents=documents)


def _split_files(files: list[bytes], share: float) -> tuple[list[bytes], list[bytes]]:
    """Whole files: the first ones up to `share` of the bytes, and the rest (both non-empty; with a
    single held-out file, its bytes are cut in two)."""
    if len(files) == 1:
        cut = max(1, min(len(files[0]) - 1, round(len(files[0]) * share)))
        return [files[0][:cut]], [files[0][cut:]]
    total, size, k = sum(len(f) for f in files), 0, 0
    while k < len(files) - 1 and (k == 0 or size + len(files[k]) <= share * total):
        size += len(files[k])
        k += 1
    return files[:k], files[k:]


def _offsets(parts: list[bytes]) -> list[int]:
    out, pos = [], 0
    for p in parts:
        out.append(pos)
        pos += len(p)
    return out
