"""Architectures Optuna searches over and the hypernet predicts parameters for."""
from __future__ import annotations

from typing import Any, Union

from .validate import ConfigError
from .gpt2 import GPT2, GPT2_L, GPT2_M, GPT2_S, GPT2Config, GPT2Space
from .vit import VIT_B, VIT_L, VIT_S, ViT, ViTConfig, ViTSpace

ModelConfig = Union[ViTConfig, GPT2Config]
SearchSpace = Union[ViTSpace, GPT2Space]
SPACES = {"vit": ViTSpace, "gpt2": GPT2Space}


def get_space(name: str, **ranges: Any) -> SearchSpace:
    """The search space called `name` ("vit" or "gpt2") with the given ranges."""
    if name not in SPACES:
        raise ConfigError("space", name, f"one of {sorted(SPACES)}")
    return SPACES[name](**ranges)


def config_from_dict(d: dict[str, Any]) -> ModelConfig:
    """Inverse of `Config.to_dict()`: used for trial attrs, checkpoints and exports."""
    d = dict(d)
    space = d.pop("space", None)
    cls = {"vit": ViTConfig, "gpt2": GPT2Config}.get(space)
    if cls is None:
        raise ConfigError("space", space, "'vit' or 'gpt2'")
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(unknown[0], d[unknown[0]], f"a field of {cls.__name__}: {sorted(known)}")
    return cls(**d)


def build_model(config: ModelConfig, seed: int | None = None):
    """The randomly initialised model for a config.

    With `seed`, the init depends only on (config, seed) and the global RNG is left untouched, so
    a trial's starting weights can be rebuilt later (warm vs control, refit distillation).
    """
    cls = ViT if isinstance(config, ViTConfig) else GPT2
    if seed is None:
        return cls(config)
    import torch

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return cls(config)


__all__ = [
    "ConfigError", "GPT2", "GPT2Config", "GPT2Space", "GPT2_S", "GPT2_M", "GPT2_L",
    "ViT", "ViTConfig", "ViTSpace", "VIT_S", "VIT_B", "VIT_L",
    "ModelConfig", "SearchSpace", "SPACES", "get_space", "config_from_dict", "build_model",
]
