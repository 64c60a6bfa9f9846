"""What a meta-training run is told: its optimiser recipe (`MetaTrainConfig`) and the shapes of the
hooks and batch source the caller passes in. Apart from the loop so the loop, its losses and its
train state all read one definition.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import torch

from search_spaces import ConfigError
from search_spaces.validate import require_int, require_positive_int, require_range

SampleArch = Callable[[random.Random], Any]
ExtraLoss = Callable[[Any, dict[str, torch.Tensor]], torch.Tensor]
InitFor = Callable[[Any], "dict[str, torch.Tensor] | None"]


class BatchSource(Protocol):
    """Where meta-training batches come from (the application's data sets satisfy it)."""

    kind: str  # "image" | "text"

    def batch(self, split: str, batch_size: int, generator: torch.Generator,
              context: int | None = None) -> tuple[torch.Tensor, torch.Tensor]: ...


@dataclass(frozen=True)
class MetaTrainConfig:
    steps: int = 1000
    meta_batch: int = 1  # architectures per step (paper: m = 1 for ViT, 2 for GPT-2)
    lr: float = 3e-4
    weight_decay: float = 1e-2
    warmup_steps: int = 50
    grad_clip: float = 5.0  # max global grad norm; 0 disables clipping
    param_norm_reg: float = 3e-5  # gamma in gamma * sum ||p||_F
    lookahead: float = 0.0  # rho: also score the model after one Adam-like step of size U(0, rho); 0: off
    unroll_steps: int = 0  # K: also score the model after K real AdamW steps of fine-tuning (first order); 0: off
    unroll_lr: float = 1e-3  # peak lr of those steps, drawn log-uniformly in [lr / sqrt(10), lr * sqrt(10)]
    # The AdamW betas and grad clip of those steps: the trials' own (the application checks they agree).
    unroll_betas: tuple[float, float] = (0.9, 0.95)
    unroll_grad_clip: float = 1.0
    # Score init + strength * (prediction - init), what a warm trial at that strength starts from
    # (`LoGAH.predict`); 1: the prediction itself. A refit scores at its study's warm strength.
    strength: float = 1.0
    # std of Gaussian noise added to every meta-training image (normalised units); 0: off; images only.
    # Why: thousands of meta-steps show each image of a small train split hundreds of times, and the
    # predictions (and the fine-tuning that starts from them) then fit the train split better than val.
    input_noise: float = 0.0
    batch_size: int = 32
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 0  # 0: only at the end (when checkpoint_path is given)
    log_every: int = 10

    def __post_init__(self) -> None:
        for name in ("steps", "meta_batch", "batch_size", "log_every"):
            require_positive_int(name, getattr(self, name))
        for name in ("warmup_steps", "checkpoint_every", "seed", "unroll_steps"):
            require_int(name, getattr(self, name), 0)
        require_range("lr", self.lr, 0.0, 1.0, lo_open=True)
        require_range("weight_decay", self.weight_decay, 0.0, 1.0)
        require_range("grad_clip", self.grad_clip, 0.0, 1e6)
        require_range("param_norm_reg", self.param_norm_reg, 0.0, 1.0)
        require_range("lookahead", self.lookahead, 0.0, 1.0)
        require_range("unroll_lr", self.unroll_lr, 0.0, 0.3, lo_open=True)  # drawn up to x sqrt(10), still < 1
        if not isinstance(self.unroll_betas, (tuple, list)) or len(self.unroll_betas) != 2:
            raise ConfigError("unroll_betas", self.unroll_betas, "two numbers in [0, 1)")
        for beta in self.unroll_betas:
            require_range("unroll_betas", beta, 0.0, 0.999999)
        object.__setattr__(self, "unroll_betas", tuple(float(b) for b in self.unroll_betas))
        require_range("unroll_grad_clip", self.unroll_grad_clip, 0.0, 1e6, lo_open=True)
        require_range("input_noise", self.input_noise, 0.0, 10.0)
        require_range("strength", self.strength, 0.0, 1.0, lo_open=True)
        if not isinstance(self.device, str) or not self.device:
            raise ConfigError("device", self.device, "'auto', 'cpu', 'cuda' or 'cuda:N'")

    def lr_at(self, step: int) -> float:
        """Learning rate for update number `step` (0-based): linear warmup, then cosine to 0."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


__all__ = ["BatchSource", "ExtraLoss", "InitFor", "MetaTrainConfig", "SampleArch"]
