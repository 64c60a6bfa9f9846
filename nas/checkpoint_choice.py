"""Which hypernet checkpoint a study may start from: its space, and data it was never evaluated on.

A checkpoint meta-trained on a study's val or test examples would make the study's warm starts look
better than they are (and the exported model's test metrics meaningless). Checkpoints record a
fingerprint of their meta-training examples (`nas.data.data_fingerprint`, key `data_fingerprint` of
their metadata); a shipped checkpoint is chosen only when its data set matches the study's and it
shares no val or test example with it, and a checkpoint given by path that does is refused.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas.data import Dataset, overlap
from search_spaces import ConfigError

FINGERPRINT_KEY = "data_fingerprint"


@dataclass(frozen=True)
class Choice:
    path: Path | None  # None: no shipped checkpoint suits the study
    note: str  # why (recorded with version 0)


def seen_examples(meta: dict[str, Any], dataset: Dataset) -> dict[str, int] | None:
    """How many of the study's val/test examples the checkpoint was meta-trained on (None: the
    checkpoint does not say, or it was trained on another data set)."""
    fingerprint = meta.get(FINGERPRINT_KEY)
    if not isinstance(fingerprint, dict) or fingerprint.get("data") != dataset.name:
        return None
    return overlap(fingerprint, dataset)


def choose_shipped(space_signature: dict[str, Any], dataset: Dataset, directory: str | Path | None = None) -> Choice:
    """The first shipped checkpoint for this space, meta-trained on this data set and on none of
    the study's val/test examples."""
    from hypernet import pretrained_paths, read_header

    reasons = []
    for path in pretrained_paths(space_signature, directory):
        meta = read_header(path)["meta"]
        if meta.get("data") != dataset.name:
            reasons.append(f"{path.name} was meta-trained on data={meta.get('data')}")
            continue
        seen = seen_examples(meta, dataset)
        if seen is None:
            reasons.append(f"{path.name} records no fingerprint of its meta-training data")
        elif any(seen.values()):
            reasons.append(f"{path.name} was meta-trained on {seen['val']} val and {seen['test']} test examples "
                           "of this study's split")
        else:
            return Choice(path, f"pretrained {path.name}")
    if not reasons:
        return Choice(None, "no shipped checkpoint for this space")
    return Choice(None, "no shipped checkpoint for this space and data: " + "; ".join(reasons))


def check_given(path: str | Path, meta: dict[str, Any], dataset: Dataset) -> None:
    """A checkpoint the user named: refused when it saw any of the study's val/test examples."""
    seen = seen_examples(meta, dataset)
    if seen is not None and any(seen.values()):
        raise ConfigError("hypernet.checkpoint", str(path),
                          f"a checkpoint meta-trained on none of this study's val/test examples; {Path(path).name} "
                          f"saw {seen['val']} val and {seen['test']} test examples of data={dataset.name} as split "
                          "here (use the data options it was trained with, see its data_fingerprint metadata, or "
                          "hypernet.checkpoint=none)")


__all__ = ["Choice", "FINGERPRINT_KEY", "check_given", "choose_shipped", "seen_examples"]
