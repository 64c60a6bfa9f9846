"""Statistics the hypernet tests compare predicted tensors by."""
from __future__ import annotations

import torch


def rms(t: torch.Tensor) -> float:
    """Root mean square, in float64 (a bound checked to a few percent must not hide in fp32 rounding)."""
    return float(t.double().pow(2).mean().sqrt())
