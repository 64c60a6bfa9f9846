"""One error type for every invalid configuration, so callers can catch it and show its message."""
from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A configuration field is out of its allowed range.

    The message always names the field, the value given and what is allowed, because the
    person reading it is usually looking at a Hydra override, not at our source.
    """

    def __init__(self, field: str, value: Any, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field}={value!r} is invalid: allowed {allowed}")


def require_positive_int(field: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(field, value, "an integer >= 1")


def require_range(field: str, value: Any, lo: float, hi: float, *, lo_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (value > lo if lo_open else value >= lo) and value <= hi
    if not ok:
        bracket = "(" if lo_open else "["
        raise ConfigError(field, value, f"a number in {bracket}{lo}, {hi}]")


def require_depth_in(depth: Any, depth_range: tuple[int, int]) -> int:
    """`depth` itself, if it is one of a space's depths."""
    lo, hi = depth_range
    if isinstance(depth, bool) or not isinstance(depth, int) or not lo <= depth <= hi:
        raise ConfigError("depth", depth, f"an integer in [{lo}, {hi}] (the space's depth range)")
    return depth


def validate_block_dims(width: int, heads: int, mlp_ratio: float, dropout: float) -> None:
    """The checks every transformer block config needs (ViT and GPT-2 share the block)."""
    if width % heads:
        raise ConfigError("heads", heads, f"a divisor of width={width}")
    require_range("mlp_ratio", mlp_ratio, 0.0, 64.0, lo_open=True)
    require_range("dropout", dropout, 0.0, 1.0)
    if int(width * mlp_ratio) < 1:
        raise ConfigError("mlp_ratio", mlp_ratio, f"a ratio giving a hidden size >= 1 for width={width}")
