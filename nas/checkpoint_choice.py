"""Which hypernet checkpoint a study may start from: its space, and data it was never evaluated on.

A checkpoint meta-trained on a study's val or test examples would make the study's warm starts look
better than they are (and the exported model's test metrics meaningless). Checkpoints record a
fingerprint of their meta-training examples (`nas.data.data_fingerprint`, key `data_fingerprint` of
their metadata); a shipped checkpoint is chosen only when its data set matches the study's and it
shares no val or test example with it, and a checkpoint given by path that does is refused. When
none matches, the closest one of the same space kind is transferred (`Choice.keep_init`).
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
    keep_init: dict[str, str] | None = None  # a transfer: module -> why it starts at the standard init

    @property
    def transfer(self) -> bool:
        return self.keep_init is not None


def seen_examples(meta: dict[str, Any], dataset: Dataset) -> dict[str, int] | None:
    """How many of the study's val/test examples the checkpoint was meta-trained on (None: the
    checkpoint does not say). Examples are compared by content whatever data set the checkpoint
    names: a `textdir` over the stdlib shares files with `pytext`."""
    fingerprint = meta.get(FINGERPRINT_KEY)
    if not isinstance(fingerprint, dict):
        return None
    try:
        return overlap(fingerprint, dataset)
    except ValueError:  # not a fingerprint this code reads
        return None


def _label_parts(signature: dict[str, Any], meta: dict[str, Any], dataset: Dataset) -> dict[str, str]:
    """A predicted classifier fits only the features the hypernet predicts for its own data: on
    other images, even with the same labels (digits 8x8 -> MNIST 28x28), it is confidently wrong
    (bench/RESULTS.md, "Version 0 by transfer"). So it transfers only within one data set."""
    if signature.get("space") != "vit":
        return {}
    theirs, ours = meta.get("class_names"), getattr(dataset, "class_names", None)
    if meta.get("data") != dataset.name:
        return {"head": f"a classifier for data={meta.get('data')}"}
    if theirs and ours and list(theirs) == list(ours):
        return {}
    if not theirs or not ours:
        return {"head": "class names unknown on one side"}
    return {"head": f"classes {_short(theirs)} -> {_short(ours)}"}


def _short(names: list[str]) -> str:
    return "[" + ", ".join(map(str, names[:4])) + (", ...]" if len(names) > 4 else "]")


def choose_shipped(space_signature: dict[str, Any], dataset: Dataset, directory: str | Path | None = None) -> Choice:
    """The shipped checkpoint a study starts from.

    First choice: one for this space, meta-trained on this data set and on none of the study's
    val/test examples. Else a transfer (LoGAH section 5.4): the closest checkpoint of the same space
    kind (fewest data-bound parts to leave out, then same data set) that saw none of those
    examples either, with the parts its data cannot teach (`hypernet.data_bound_parts`, labels)
    left at the standard init. Else none (version 0 is an untrained hypernet), with the reasons."""
    from hypernet import data_bound_parts, pretrained_paths, read_header

    reasons, candidates = [], []
    for path in pretrained_paths(space_signature, directory, same_kind=True):
        header = read_header(path)
        meta, signature = header["meta"], header["space_signature"]
        seen = seen_examples(meta, dataset)
        if seen is None:
            reasons.append(f"{path.name} (meta-trained on data={meta.get('data')}) records no fingerprint of its "
                           "meta-training data")
            continue
        if any(seen.values()):
            reasons.append(f"{path.name} was meta-trained on {seen['val']} val and {seen['test']} test examples "
                           "of this study's split")
            continue
        if signature == space_signature and meta.get("data") == dataset.name:
            return Choice(path, f"pretrained {path.name}")
        parts = {**_label_parts(signature, meta, dataset), **data_bound_parts(signature, space_signature)}
        candidates.append(((len(parts), meta.get("data") != dataset.name, path.name), path, meta, parts))
    if candidates:
        _, path, meta, parts = min(candidates, key=lambda c: c[0])
        name = meta.get("version") or path.name
        left = ("; re-initialised: " + ", ".join(f"{m} ({why})" for m, why in sorted(parts.items()))
                if parts else "; every part transfers")
        return Choice(path, f"transferred from {name} ({path.name}, meta-trained on data={meta.get('data')}, "
                            f"study data={dataset.name}){left}", keep_init=parts)
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
