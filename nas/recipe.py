"""The pretraining recipe: how a hypernet is meta-trained, written once.

`Recipe` is what a pretrained checkpoint's metadata records and its command replays
(`nas.pretrain`); the config's `pretrain` block (`nas.config.PretrainConfig`) is the same
`RecipeOptions` plus where the checkpoint goes (`out`) and what it starts from (`init`), its seed
being the config's top-level `seed`. The library's optimiser settings (`hypernet.MetaTrainConfig`)
are derived from a recipe by `Recipe.meta_train_config`.

Import-light (no torch of its own, no `hypernet`): `nas.config` imports it when it validates a config.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

from search_spaces.validate import ConfigError, require_int, require_positive_int, require_range

UNSEEN_SEED = 777_777  # draws `nas.pretrain.unseen_architectures`: never a pretraining seed
DEFAULT_STEPS = 2000
WIDTH_SAMPLING = ("grid", "range")  # meta-training widths: the space's grid, or its whole range


@dataclass(frozen=True, kw_only=True)
class RecipeOptions:
    """Every field of a `Recipe` but its seed, validated (errors name `<prefix><field>`).

    `lookahead` > 0 also scores each prediction after one Adam-like step (`MetaTrainConfig.lookahead`),
    `unroll_steps` > 0 after that many real AdamW steps at a peak lr around `unroll_lr`
    (`MetaTrainConfig.unroll_steps`); `input_noise` > 0 adds that much Gaussian noise to the
    meta-training images (`MetaTrainConfig.input_noise`); `shallow_share` > 0 draws that share of the
    architectures at the space's smallest depth (`nas.pretrain.sampler_excluding`). `widths` "range"
    draws any width of the space's range that a head count divides (bar the held-out ones), "grid"
    only the space's grid.
    """

    _prefix: ClassVar[str] = ""  # how errors name the fields: "" (a Recipe) or "pretrain." (the config block)

    steps: int = DEFAULT_STEPS
    meta_batch: int = 1
    batch_size: int = 32
    lr: float = 1e-3
    lookahead: float = 0.0
    unroll_steps: int = 0
    unroll_lr: float = 1e-3
    input_noise: float = 0.0
    shallow_share: float = 0.0
    widths: str = "grid"

    def __post_init__(self) -> None:
        p = self._prefix
        require_positive_int(f"{p}steps", self.steps)  # the schedule divides it
        require_positive_int(f"{p}meta_batch", self.meta_batch)
        require_positive_int(f"{p}batch_size", self.batch_size)
        require_range(f"{p}lr", self.lr, 0.0, 1.0, lo_open=True)
        require_range(f"{p}lookahead", self.lookahead, 0.0, 1.0)
        require_int(f"{p}unroll_steps", self.unroll_steps, 0)
        require_range(f"{p}unroll_lr", self.unroll_lr, 0.0, 0.3, lo_open=True)  # drawn up to x sqrt(10), still < 1
        require_range(f"{p}input_noise", self.input_noise, 0.0, 10.0)
        require_range(f"{p}shallow_share", self.shallow_share, 0.0, 1.0)
        if self.widths not in WIDTH_SAMPLING:
            raise ConfigError(f"{p}widths", self.widths, f"one of {list(WIDTH_SAMPLING)}")

    def options(self) -> dict[str, Any]:
        """The `RecipeOptions` fields of this object (a subclass's own fields left out)."""
        return {f.name: getattr(self, f.name) for f in fields(RecipeOptions)}


@dataclass(frozen=True, kw_only=True)
class Recipe(RecipeOptions):
    """How a hypernet is meta-trained: what a checkpoint's metadata records and its command replays."""

    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        require_int("seed", self.seed, 0)
        if self.seed == UNSEEN_SEED:
            raise ConfigError("seed", self.seed,
                              f"any integer >= 0 except {UNSEEN_SEED} (reserved: it draws the unseen architectures)")

    def meta_train_config(self, device: str, checkpoint_every: int | None = None):
        """The `hypernet.MetaTrainConfig`: warmup 5% of the steps (at most 100), checkpoints every 5%
        (at least every 50 steps) unless `checkpoint_every` says otherwise. Unrolled steps use the
        trials' own AdamW betas and grad clip."""
        from hypernet import MetaTrainConfig
        from nas.train_loop import ADAM_BETAS, TrainConfig

        steps = self.steps
        return MetaTrainConfig(
            steps=steps, meta_batch=self.meta_batch, batch_size=self.batch_size, lr=self.lr, seed=self.seed,
            device=device, warmup_steps=min(100, max(1, steps // 20)),
            lookahead=self.lookahead, unroll_steps=self.unroll_steps, unroll_lr=self.unroll_lr,
            unroll_betas=ADAM_BETAS, unroll_grad_clip=TrainConfig().grad_clip, input_noise=self.input_noise,
            checkpoint_every=checkpoint_every if checkpoint_every is not None else max(50, steps // 20),
            log_every=max(1, min(50, steps // 10)))

    def cli_args(self) -> list[str]:
        """The `python -m nas.pretrain` flags that give this recipe (optional ones only when on)."""
        args = ["--steps", str(self.steps), "--seed", str(self.seed), "--meta-batch", str(self.meta_batch),
                "--batch-size", str(self.batch_size), "--lr", repr(self.lr)]
        if self.lookahead:
            args += ["--lookahead", repr(self.lookahead)]
        if self.unroll_steps:
            args += ["--unroll-steps", str(self.unroll_steps), "--unroll-lr", repr(self.unroll_lr)]
        if self.input_noise:
            args += ["--input-noise", repr(self.input_noise)]
        if self.shallow_share:
            args += ["--shallow-share", repr(self.shallow_share)]
        if self.widths != "grid":
            args += ["--widths", self.widths]
        return args


__all__ = ["DEFAULT_STEPS", "Recipe", "RecipeOptions", "UNSEEN_SEED", "WIDTH_SAMPLING"]
