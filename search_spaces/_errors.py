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
