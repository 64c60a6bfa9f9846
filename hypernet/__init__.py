"""LoGAH hypernetwork: architecture graph -> Graphormer -> low-rank parameter decoder.

`import hypernet` is cheap: torch_geometric is imported only when a graph is built or
encoded, and the meta-training API is loaded on first use.
"""
from __future__ import annotations

import importlib.util
from typing import Any

from .checkpoint import CheckpointError, load_checkpoint, pretrained_path, read_header, save_checkpoint
from .graph import Op, build_graph
from .model import VARIANTS, LoGAH, LoGAHConfig, functional_forward

_TRAINING = ("meta_train", "MetaTrainConfig", "MetaTrainResult")


def __getattr__(name: str) -> Any:
    """Re-export the meta-training API from hypernet.training (owned separately) on first use."""
    if name in _TRAINING and importlib.util.find_spec(f"{__name__}.training") is not None:
        from . import training

        return getattr(training, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CheckpointError", "LoGAH", "LoGAHConfig", "Op", "VARIANTS", "build_graph", "functional_forward",
    "load_checkpoint", "pretrained_path", "read_header", "save_checkpoint",
]
if importlib.util.find_spec(f"{__name__}.training") is not None:
    __all__ += list(_TRAINING)
