"""Moving a hypernet to another space of the same kind (LoGAH's transfer to new data, section 5.4).

Every LoGAH weight is shared across shapes (shape embeddings, layer keys, basis rows), so a
hypernet meta-trained for 8x8 digits can predict for 28x28 MNIST, or one trained on stdlib bytes
for another byte corpus: only the space signature changes. What does not carry over are the parts
of a *predicted model* whose meaning is bound to the data: a positional table for another patch
grid or context, a patch embedding for another channel count, a classifier for other labels, a
token table for another vocabulary. Those are named in `LoGAHConfig.keep_init` and left at the
standard init until a refit on the new data learns them.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from search_spaces import ConfigError

from .model import LoGAH

# signature field -> the model modules whose meaning depends on it (search_spaces' module names)
DATA_BOUND: dict[str, dict[str, tuple[str, ...]]] = {
    "vit": {"image_size": ("pos_embed",), "channels": ("patch_embed",), "num_classes": ("head",)},
    "gpt2": {"vocab_size": ("wte", "lm_head"), "context": ("wpe",)},
}


def data_bound_parts(source: Mapping[str, Any], target: Mapping[str, Any]) -> dict[str, str]:
    """module -> why, for the modules a change from signature `source` to `target` leaves
    meaningless (e.g. {"pos_embed": "image_size 8 -> 28"}). Both must be of one space kind."""
    kind = source.get("space")
    if kind != target.get("space"):
        raise ConfigError("space", target.get("space"), f"{kind!r} (a hypernet transfers within one space kind)")
    parts: dict[str, str] = {}
    for key, modules in DATA_BOUND.get(kind, {}).items():
        if source.get(key) != target.get(key):
            for module in modules:
                parts[module] = f"{key} {source.get(key)} -> {target.get(key)}"
    return parts


def transfer(hn: LoGAH, space_signature: Mapping[str, Any], keep_init: Iterable[str] = ()) -> LoGAH:
    """A copy of `hn` for the space `space_signature` that leaves the modules `keep_init` at the
    standard init. Every weight and coverage record carries over; `keep_init=()` with the same
    signature clears what an earlier transfer left out (a refit that learned those parts)."""
    return with_config(hn, space_signature=dict(space_signature), keep_init=tuple(sorted(set(keep_init))))


def with_config(hn: LoGAH, **changes: Any) -> LoGAH:
    """A copy of `hn` (same weights, device, coverage and mode) whose `LoGAHConfig` has `changes`:
    fields that keep the parameters' shapes (space, keep_init, correction_cap)."""
    moved = LoGAH(replace(hn.config, **changes)).to(next(hn.parameters()).device)
    moved.load_state_dict(hn.state_dict(), strict=True)
    return moved.train(hn.training)


__all__ = ["DATA_BOUND", "data_bound_parts", "transfer", "with_config"]
