"""Which torch device a spec names: one rule for trials, meta-training and refits.

A spec is syntax-checked when a config is built (a config written on a CPU machine for a GPU worker
still validates) and resolved where the work runs.
"""
from __future__ import annotations

from typing import Any

import torch

from .validate import ConfigError

DEVICE_CHOICES = "'auto', 'cpu', 'cuda' or 'cuda:N'"


def parse_device(spec: Any) -> torch.device | None:
    """The device a spec names (None for "auto"), checking syntax only, so a config written on a
    CPU machine for a GPU worker still validates."""
    if spec == "auto":
        return None
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError):
        raise ConfigError("device", spec, DEVICE_CHOICES) from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError("device", spec, DEVICE_CHOICES)
    return device


def resolve_device(spec: str = "auto") -> torch.device:
    """"auto" -> CUDA if available else CPU; an unusable spec is a ConfigError, not a late CUDA crash."""
    device = parse_device(spec)
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device", spec, f"{DEVICE_CHOICES}; CUDA is not available on this machine, use 'cpu' or 'auto'")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError("device", spec, f"cuda:0..cuda:{torch.cuda.device_count() - 1}")
    return device


__all__ = ["DEVICE_CHOICES", "parse_device", "resolve_device"]
