"""A byte-level text corpus that is on every machine: the Python standard library's sources.

The default GPT-2 study needs text without a download; the stdlib `.py` files are a few tens of MB
of real, structured text. It is `textdir` over the stdlib root with its own file filter (no tests,
no site-packages), so both split files the same way: whole files, so val code is truly unseen.
"""
from __future__ import annotations

import os
import sysconfig
from pathlib import Path

from ._base import TextDataset, check_fractions
from ._textdir import check_max_bytes, load_text_files

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
    """The stdlib's `.py` files split as `textdir` splits files (`load_text_files`): a seeded shuffle
    of their sorted paths, read until `max_bytes`, whole files held out first into val then test;
    train is what a two-way split with val_fraction + test_fraction gives, so a checkpoint
    meta-trained on it saw no held-out file."""
    check_max_bytes(max_bytes)
    check_fractions(val_fraction, test_fraction)
    root = Path(root if root is not None else sysconfig.get_paths()["stdlib"])
    files = _source_files(root) if root.is_dir() else []
    if len(files) < 2:
        raise FileNotFoundError(
            f"pytext needs the Python standard library sources: expected at least two '*.py' files under {root} "
            "(sysconfig.get_paths()['stdlib']). Install a Python build that ships its .py sources "
            "(e.g. the python3.11 package, not an embedded/stripped build), or use data=digits/wikitext103.")
    return load_text_files("pytext", root, files, max_bytes, val_fraction, test_fraction, seed, context,
                           what=f"'*.py' files under {root}")
