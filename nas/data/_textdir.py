"""A byte-level text corpus from any folder: the files under `path` that match `glob`.

Lets a GPT-2 study run on the user's own text (a code base, notes, a book per file) without a
tokenizer or a download. Like `pytext` (which is this loader over the stdlib sources), files are
split whole, so val and test text is truly unseen.
"""
from __future__ import annotations

import os
import random
from pathlib import Path, PurePosixPath

from search_spaces import ConfigError

from ._base import TextDataset, bytes_to_tokens, check_fractions


def check_max_bytes(max_bytes: int | None, allow_none: bool = False) -> None:
    if max_bytes is None and allow_none:
        return
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1024:
        raise ConfigError("max_bytes", max_bytes, "None (every byte) or an integer >= 1024" if allow_none
                          else "an integer >= 1024")


def _check_glob(glob: str) -> None:
    """Relative patterns only: an absolute one or `..` would read files outside `path`."""
    ok = isinstance(glob, str) and glob.strip() and not PurePosixPath(glob).is_absolute() \
        and not os.path.isabs(glob) and ".." not in PurePosixPath(glob.replace("\\", "/")).parts
    if not ok:
        raise ConfigError("glob", glob, "a non-empty pattern relative to path, e.g. '**/*' (every file) or '**/*.py'")


def _matching_files(root: Path, glob: str, hidden: bool) -> list[str]:
    """Relative paths of the files matching `glob`, sorted so the order never depends on the
    filesystem. Without `hidden`, dot files and anything under a dot folder (.git, .venv) are skipped."""
    found = []
    for p in root.glob(glob):
        rel = p.relative_to(root)
        if not hidden and any(part.startswith(".") for part in rel.parts):
            continue
        if p.is_file():
            found.append(rel.as_posix())
    return sorted(found)


def load_text_files(name: str, root: Path, files: list[str], max_bytes: int | None, val_fraction: float,
                    test_fraction: float, seed: int, context: int, what: str) -> TextDataset:
    """The split shared by `textdir` and `pytext`: files (sorted relative paths under `root`) in a
    seeded shuffle, read until `max_bytes` (None: all); the first files, up to
    `val_fraction + test_fraction` of the bytes, are held out, and split by whole files into val
    (the first, up to `val_fraction`) and test (the rest). Train is what a two-way split with
    val_fraction + test_fraction gives, so a checkpoint meta-trained on it saw no held-out file.
    `what` describes the files for the error when they hold no byte."""
    files = list(files)
    random.Random(seed).shuffle(files)
    total = sum((root / rel).stat().st_size for rel in files)
    if total == 0:
        raise FileNotFoundError(f"{name}: the {len(files)} {what} are all empty; expected text in at least two "
                                "of them (whole files are split into train and held-out val/test)")
    # Whole files are held out until they hold val_fraction + test_fraction of the budget, the rest
    # go to train; only the last file of each part is cut, so no file is in both.
    budget = total if max_bytes is None else min(max_bytes, total)
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
    return TextDataset(name, tokens["train"], tokens["val"], tokens["test"], vocab_size=256, context=context,
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


def load_textdir(path: str | os.PathLike = "data/text", glob: str = "**/*", max_bytes: int | None = None,
                 val_fraction: float = 0.05, test_fraction: float = 0.05, seed: int = 0, context: int = 64,
                 hidden: bool = False) -> TextDataset:
    """Bytes (vocab 256) of the files under `path` matching `glob` (recursive with `**`; files only),
    split by whole files exactly as `pytext` is (`load_text_files`). `hidden` also reads dot files
    and dot folders, which are skipped by default so a repository's .git is not read as text."""
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigError("path", path, "a folder (str or path) holding the text files")
    _check_glob(glob)
    check_max_bytes(max_bytes, allow_none=True)
    check_fractions(val_fraction, test_fraction)
    if not isinstance(hidden, bool):
        raise ConfigError("hidden", hidden, "true or false")
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(
            f"textdir: folder {root} not found{' (it is a file)' if root.exists() else ''}. Expected path= a folder "
            f"whose files matching glob={glob!r} are the corpus, e.g. data.options.path=src data.options.glob='**/*.py'")
    files = _matching_files(root, glob, hidden)
    if len(files) < 2:
        raise FileNotFoundError(
            f"textdir: found {len(files)} file(s) matching glob={glob!r} under {root}"
            f"{'' if hidden else ' (dot files and folders skipped; hidden=true reads them)'}; expected at least 2, "
            "as whole files are split into train and held-out val/test. Point path= at a folder with more files "
            "or widen glob= (e.g. '**/*').")
    return load_text_files("textdir", root, files, max_bytes, val_fraction, test_fraction, seed, context,
                           what=f"files matching glob={glob!r} under {root}")
