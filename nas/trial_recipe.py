"""How every trial of a study is set up: its seed, whether it is a control, the val batches it is
scored on, its size. One module, so the objective, the refit and screening agree by construction.
"""
from __future__ import annotations

import math
import random

import torch

from search_spaces import ModelConfig, build_model


def trial_seed(study_seed: int, trial_number: int) -> int:
    """Seed of a trial's model init and batches: warm and control trials of the same number share
    the same W0, and a refit can rebuild any trial's init (its distillation baseline)."""
    return study_seed * 1_000_003 + trial_number


def trial_init(seed: int, trial_number: int, config: ModelConfig) -> dict[str, torch.Tensor]:
    """The random init a trial started from (the objective seeds every model build the same way)."""
    model = build_model(config, seed=trial_seed(seed, trial_number))
    return {name: p.detach() for name, p in model.named_parameters()}


def is_control(number: int, fraction: float, seed: int) -> bool:
    """Whether trial `number` is a random-init control trial.

    Stratified, not i.i.d.: exactly round(n * fraction) +- 1 of any n consecutive trials are
    controls (a coin per trial could give none in a short study), at a seed-dependent phase.
    """
    if fraction <= 0:
        return False
    if fraction >= 1:
        return True
    phase = random.Random(seed).random()
    return math.floor((number + 1) * fraction + phase) > math.floor(number * fraction + phase)


def eval_batch_size(study_cfg) -> int:
    """Every trial (and the refit's validation) scores `eval_batches` val batches of this size, whatever
    its own training batch size: the same val examples for all, so their metrics compare."""
    return max(study_cfg.batch_sizes)


def count_params(config: ModelConfig) -> int:
    """Parameters of a config without allocating them (meta device)."""
    with torch.device("meta"):
        model = build_model(config)
    return sum(p.numel() for p in model.parameters())


__all__ = ["count_params", "eval_batch_size", "is_control", "trial_init", "trial_seed"]
