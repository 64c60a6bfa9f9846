"""LoGAH hypernetwork: architecture graph -> Graphormer -> low-rank parameter decoder.

A library: it imports only `search_spaces` (plus torch, torch_geometric, safetensors), never the
application (`nas`, `app`); data sets reach meta-training as a `BatchSource`. `import hypernet` is
cheap: torch_geometric is imported only when a PyG graph is built (`build_graph`) or several graphs
are encoded as one batch (meta-training), never on the single-model prediction path, and the
meta-training API is loaded on first use.
"""
from __future__ import annotations

from typing import Any

from .checkpoint import (CheckpointError, load_checkpoint, pretrained_path, pretrained_paths, read_header,
                         save_checkpoint)
from .graph import Op, build_graph
from .model import VARIANTS, LoGAH, LoGAHConfig, functional_forward
from .transfer import data_bound_parts, transfer, with_config

_TRAINING = ("BatchSource", "meta_train", "MetaTrainConfig", "MetaTrainResult", "trainstate_path")


def __getattr__(name: str) -> Any:
    """The meta-training API (hypernet.meta_training), loaded on first use."""
    if name in _TRAINING:
        from . import meta_training

        return getattr(meta_training, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CheckpointError", "LoGAH", "LoGAHConfig", "Op", "VARIANTS", "build_graph", "data_bound_parts", "functional_forward",
    "load_checkpoint", "pretrained_path", "pretrained_paths", "read_header", "save_checkpoint", "transfer",
    "with_config", *_TRAINING,
]
