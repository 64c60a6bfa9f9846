"""Pretrain a LoGAH hypernet on a search space + dataset: how the shipped checkpoints are made.

    python -m hypernet.pretrain --space vit --data digits --steps 3000 --out hypernet/pretrained/vit_digits.safetensors

A few architectures of every space are held out of pretraining (`heldout_configs`, drawn with
`HELDOUT_SEED`), so `bench/warm_start_quality.py` measures warm starts on architectures the
hypernet has never seen. The run is resumable: killed and restarted with the same arguments it
continues from its last checkpoint (see `hypernet.training`).
"""
from __future__ import annotations

import argparse
import logging
import random
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from search_spaces import ConfigError, get_space
from search_spaces._errors import require_positive_int, require_range

from .checkpoint import CheckpointError
from .training import MetaTrainConfig, meta_train, trainstate_path

HELDOUT_SEED = 777_777  # never use it as a pretraining seed
HELDOUT_COUNT = 8
DEFAULT_STEPS = 2000


def heldout_configs(space: Any, n: int = HELDOUT_COUNT) -> list:
    """The first `n` distinct architectures `space.sample` draws with `HELDOUT_SEED`.

    Tiny spaces keep most architectures for training: at most a quarter of the distinct ones
    seen in 200 draws are held out.
    """
    rng = random.Random(HELDOUT_SEED)
    found: list = []
    for _ in range(200):
        config = space.sample(rng)
        if config not in found:
            found.append(config)
    return found[:min(n, len(found) // 4)]


def sampler_excluding(space: Any, excluded: list, shallow_share: float = 0.0):
    """`sample_arch` for meta_train that never returns one of `excluded` (rejection sampling).

    With `shallow_share` > 0 that share of the draws is made at the space's smallest depth (the
    rest uniformly over the space, that depth included): the hypernet underfits the shallowest
    architectures most (bench/RESULTS.md, eighth session), so they get more meta-steps.
    """
    require_range("shallow_share", shallow_share, 0.0, 1.0)
    banned = set(excluded)

    def sample(rng: random.Random):
        for _ in range(10_000):
            depth = space.depth[0] if shallow_share and rng.random() < shallow_share else None
            config = space.sample(rng, depth=depth)
            if config not in banned:
                return config
        raise ConfigError("space", space, "a space with more architectures than the held-out ones")

    return sample


# What a restarted run must share with the one it resumes, besides MetaTrainConfig (checked there).
_RUN_DEFINING = ("space_signature", "space_ranges", "data", "data_options", "variant", "shallow_share",
                 "init_checkpoint")


def default_out(space: str, data: str) -> Path:
    return Path("logah_runs") / "pretrained" / f"{space}_{data}.safetensors"


@dataclass(frozen=True)
class Recipe:
    """How a hypernet is meta-trained: what a checkpoint's metadata records and its command replays.

    `lookahead` > 0 also scores each prediction after one Adam-like step (`MetaTrainConfig.lookahead`),
    `unroll_steps` > 0 after that many real AdamW steps at a peak lr around `unroll_lr`
    (`MetaTrainConfig.unroll_steps`); `input_noise` > 0 adds that much Gaussian noise to the
    meta-training images (`MetaTrainConfig.input_noise`); `shallow_share` > 0 draws that share of the
    architectures at the space's smallest depth (`sampler_excluding`).
    """

    steps: int = DEFAULT_STEPS
    seed: int = 0
    meta_batch: int = 1
    batch_size: int = 32
    lr: float = 1e-3
    lookahead: float = 0.0
    unroll_steps: int = 0
    unroll_lr: float = 1e-3
    input_noise: float = 0.0
    shallow_share: float = 0.0

    def __post_init__(self) -> None:
        require_positive_int("steps", self.steps)  # the schedule below divides it
        if self.seed == HELDOUT_SEED:
            raise ConfigError("seed", self.seed,
                              f"any integer >= 0 except {HELDOUT_SEED} (reserved for held-out architectures)")
        require_range("shallow_share", self.shallow_share, 0.0, 1.0)

    def meta_train_config(self, device: str, checkpoint_every: int | None = None) -> MetaTrainConfig:
        """The MetaTrainConfig (which validates the rest): warmup 5% of the steps (at most 100),
        checkpoints every 5% (at least every 50 steps) unless `checkpoint_every` says otherwise."""
        steps = self.steps
        return MetaTrainConfig(
            steps=steps, meta_batch=self.meta_batch, batch_size=self.batch_size, lr=self.lr, seed=self.seed,
            device=device, warmup_steps=min(100, max(1, steps // 20)),
            lookahead=self.lookahead, unroll_steps=self.unroll_steps, unroll_lr=self.unroll_lr,
            input_noise=self.input_noise,
            checkpoint_every=checkpoint_every if checkpoint_every is not None else max(50, steps // 20),
            log_every=max(1, min(50, steps // 10)))

    def cli_args(self) -> list[str]:
        """The `python -m hypernet.pretrain` flags that give this recipe (optional ones only when on)."""
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
        return args


def pretrain(
    space: str = "vit",
    data: str = "digits",
    variant: str = "tiny",
    out: str | Path | None = None,
    device: str = "auto",
    checkpoint_every: int | None = None,
    data_options: dict[str, Any] | None = None,
    space_options: dict[str, Any] | None = None,
    hypernet_options: dict[str, Any] | None = None,
    progress: bool = True,
    keep_trainstate: bool = False,
    init: str | Path | None = None,
    **recipe: Any,
) -> Path:
    """Meta-train a fresh `LoGAH(variant)` (or, with `init`, a copy of that checkpoint) on `space` x
    `data` and write its checkpoint to `out`; `recipe` holds the fields of `Recipe` (steps, seed, lr, ...).

    With `init` the metadata keeps the init checkpoint's sha256 and command, so a multi-stage recipe
    stays reproducible.
    `space_options` override the space ranges (the dataset's `space_options()` are always applied,
    so models fit the data). Returns the checkpoint path; its metadata records the space signature,
    the data, the recipe, wall time, git commit and the command that reproduces it.
    """
    from nas.data import load_dataset

    from .checkpoint import load_checkpoint, save_checkpoint
    from .model import LoGAH, LoGAHConfig

    unknown = set(recipe) - {f.name for f in fields(Recipe)}
    if unknown:
        raise TypeError(f"pretrain() got unknown arguments {sorted(unknown)}")
    the_recipe = Recipe(**recipe)
    out = Path(out) if out is not None else default_out(space, data)
    dataset = load_dataset(data, **(data_options or {}))
    the_space = get_space(space, **{**(space_options or {}), **dataset.space_options()})
    cfg = the_recipe.meta_train_config(device, checkpoint_every)
    parent: dict[str, Any] | None = None
    if init is not None:
        if hypernet_options:
            raise ConfigError("hypernet_options", hypernet_options, "empty when starting from a checkpoint (init)")
        hn, init_meta = load_checkpoint(init, expected_signature=the_space.signature())
        variant = hn.config.variant
        parent = {"path": Path(init).name, "sha256": init_meta.get("sha256"), "command": init_meta.get("command"),
                  "steps": init_meta.get("steps"), "parent": init_meta.get("init_checkpoint")}
    else:
        torch.manual_seed(the_recipe.seed)  # hypernet initialisation
        hn = LoGAH(LoGAHConfig(variant=variant, space_signature=the_space.signature(), **(hypernet_options or {})))
    held_out = heldout_configs(the_space)
    meta: dict[str, Any] = {
        "space_signature": the_space.signature(),
        "space_ranges": _ranges(the_space),
        "data": data,
        "data_options": data_options or {},
        "variant": variant,
        **asdict(the_recipe),
        "init_checkpoint": parent,
        "anchor_seed": hn.config.anchor_seed,
        "heldout_seed": HELDOUT_SEED,
        "heldout_count": len(held_out),
        "git_commit": _git_commit(),
        "torch": torch.__version__,
        # exact for the default data/space options; others are recorded in data_options / space_ranges
        "command": reproduce_command(space=space, data=data, variant=variant, out=out, recipe=the_recipe, init=init),
    }
    t0 = time.perf_counter()
    sample_arch = sampler_excluding(the_space, held_out, the_recipe.shallow_share)
    result = meta_train(hn, the_space, dataset, cfg, sample_arch=sample_arch, checkpoint_path=out,
                        checkpoint_meta=meta, resume=True, progress=progress,
                        resume_must_match={k: meta[k] for k in _RUN_DEFINING})
    meta.update({
        "seconds": round(time.perf_counter() - t0, 1),  # this call; a resumed run adds to its earlier part
        "device": result.device,
        "loss_first": _mean(result.losses[:20]),
        "loss_last": _mean(result.losses[-50:]),
        "meta_train": {"step": result.steps, "steps": the_recipe.steps, "resumed_from": result.start_step},
    })
    save_checkpoint(hn.to("cpu").eval(), out, meta)
    if not keep_trainstate:
        trainstate_path(out).unlink(missing_ok=True)
    return out


def reproduce_command(*, space: str, data: str, variant: str, out: str | Path, recipe: Recipe,
                      init: str | Path | None = None) -> str:
    args = ["python", "-m", "hypernet.pretrain", "--space", space, "--data", data, "--variant", variant,
            *recipe.cli_args(), "--out", str(out)]
    if init is not None:
        args += ["--init", str(init)]
    return shlex.join(args)


def _ranges(space: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(space).items()}


def _mean(values: list[float]) -> float | None:
    finite = [v for v in values if v == v]
    return round(sum(finite) / len(finite), 5) if finite else None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hypernet.pretrain", description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="vit", help="vit | gpt2")
    parser.add_argument("--data", default="digits", help="digits | pytext | cifar10 | cifar100 | wikitext103")
    parser.add_argument("--variant", default="tiny", help="tiny | small | base | large")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--out", default=None, help="checkpoint path (.safetensors)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--meta-batch", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lookahead", type=float, default=0.0,
                        help="also score predictions after one Adam-like step of size U(0, rho) (0: off)")
    parser.add_argument("--unroll-steps", type=int, default=0,
                        help="also score predictions after this many real AdamW steps (0: off)")
    parser.add_argument("--unroll-lr", type=float, default=1e-3,
                        help="peak lr of those steps, drawn log-uniformly in [lr / sqrt(10), lr * sqrt(10)]")
    parser.add_argument("--input-noise", type=float, default=0.0,
                        help="std of Gaussian noise added to the meta-training images (0: off; images only)")
    parser.add_argument("--shallow-share", type=float, default=0.0,
                        help="share of meta-steps whose architecture has the space's smallest depth (0: uniform)")
    parser.add_argument("--init", default=None, help="start from this checkpoint instead of a fresh hypernet")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        path = pretrain(space=args.space, data=args.data, variant=args.variant, out=args.out, device=args.device,
                        progress=not args.no_progress, init=args.init,
                        **{f.name: getattr(args, f.name) for f in fields(Recipe)})
    except (ConfigError, FileNotFoundError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
