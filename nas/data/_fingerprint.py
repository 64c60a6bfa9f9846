"""Which examples a hypernet was meta-trained on, in a form a checkpoint can carry.

A fingerprint names the data set and its options and lists short content hashes of every train
example (`Dataset.example_digests`), so a study can count how many of its own val and test
examples a checkpoint has seen, whatever seed or fractions either side used.
"""
from __future__ import annotations

import hashlib
from typing import Any

from ._base import Dataset

FINGERPRINT_FORMAT = "logah-nas/data-fingerprint/v1"
_DIGEST_CHARS = 16


def data_fingerprint(dataset: Dataset, options: dict[str, Any] | None = None, split: str = "train") -> dict[str, Any]:
    """{format, data, options, split, examples, sha256, digests}: `digests` is the sorted hashes joined
    into one string (compact JSON), `sha256` a digest of that string (equal data, equal value)."""
    digests = "".join(sorted(dataset.example_digests(split)))
    return {"format": FINGERPRINT_FORMAT, "data": dataset.name, "options": dict(options or {}), "split": split,
            "examples": len(digests) // _DIGEST_CHARS, "sha256": hashlib.sha256(digests.encode()).hexdigest(),
            "digests": digests}


def fingerprint_digests(fingerprint: dict[str, Any]) -> frozenset[str]:
    text = fingerprint.get("digests") or ""
    if fingerprint.get("format") != FINGERPRINT_FORMAT or len(text) % _DIGEST_CHARS:
        raise ValueError(f"not a {FINGERPRINT_FORMAT} fingerprint")
    return frozenset(text[i:i + _DIGEST_CHARS] for i in range(0, len(text), _DIGEST_CHARS))


def overlap(fingerprint: dict[str, Any], dataset: Dataset, splits: tuple[str, ...] = ("val", "test")) -> dict[str, int]:
    """How many examples of each of `dataset`'s `splits` the fingerprinted examples contain."""
    seen = fingerprint_digests(fingerprint)
    return {split: len(dataset.example_digests(split) & seen) for split in splits}


__all__ = ["FINGERPRINT_FORMAT", "data_fingerprint", "fingerprint_digests", "overlap"]
