"""Validation of configuration values: one error type and the checks every package shares.

Every invalid value raises `ConfigError(field, value, allowed)`, so callers catch one type and
show its message. The `require_*` helpers are the one set of validators of the project
(search spaces, model configs, training, the hypernet, the Hydra config of `nas`): each returns
the value it accepted.
"""
from __future__ import annotations

from typing import Any, Sequence


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


def require_int(field: str, value: Any, lo: int = 0, hi: int | None = None) -> int:
    """An integer (not a bool) in [lo, hi] (hi None: no upper bound)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        raise ConfigError(field, value, f"an integer >= {lo}" + (f" and <= {hi}" if hi is not None else ""))
    return value


def require_positive_int(field: str, value: Any) -> int:
    return require_int(field, value, 1)


def require_range(field: str, value: Any, lo: float, hi: float, *, lo_open: bool = False) -> float:
    """A number (not a bool) in [lo, hi], or (lo, hi] with `lo_open` (so never NaN); returned as a float."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (value > lo if lo_open else value >= lo) and value <= hi
    if not ok:
        bracket = "(" if lo_open else "["
        raise ConfigError(field, value, f"a number in {bracket}{lo}, {hi}]")
    return float(value)


def require_interval(field: str, value: Any, lo: float, hi: float, *, lo_open: bool = False) -> tuple[float, float]:
    """A `[low, high]` pair with both ends as `require_range` allows and low <= high."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ConfigError(field, value, "[low, high]")
    a = require_range(f"{field}[0]", value[0], lo, hi, lo_open=lo_open)
    b = require_range(f"{field}[1]", value[1], lo, hi, lo_open=lo_open)
    if a > b:
        raise ConfigError(field, list(value), "[low, high] with low <= high")
    return a, b


def require_choice(field: str, value: Any, allowed: Sequence[Any]) -> Any:
    """One of `allowed` (the message lists them in the order given)."""
    if value not in allowed:
        raise ConfigError(field, value, f"one of {list(allowed)}")
    return value


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
