"""Pretrain a LoGAH hypernet on a search space + dataset: how the shipped checkpoints are made.

    python -m nas.pretrain --space vit --data digits --steps 3000 --out hypernet/pretrained/vit_digits.safetensors

The application's side of meta-training: it wires a data set (`nas.data`) and a `Recipe`
(`nas.recipe`) to the `hypernet` library. A few architectures of every space are never sampled in
pretraining (`unseen_architectures`, drawn with `UNSEEN_SEED`), so `bench/warm_start_quality.py`
measures warm starts on architectures the hypernet has never seen. The run is resumable: killed
and restarted with the same arguments it continues from its last checkpoint (see `hypernet.meta_train`).
"""
from __future__ import annotations

import argparse
import logging
import random
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import torch

from hypernet import (CheckpointError, LoGAH, LoGAHConfig, load_checkpoint, meta_train, save_checkpoint,
                      trainstate_path, with_config)
from nas.recipe import DEFAULT_STEPS, UNSEEN_SEED, WIDTH_SAMPLING, Recipe, RecipeOptions
from nas.unseen import off_grid_widths
from search_spaces import ConfigError, get_space
from search_spaces.validate import require_range

UNSEEN_COUNT = 8
COVERAGE_DRAWS = 2000  # grid draws that stand for an unrecorded checkpoint's training architectures


def unseen_architectures(space: Any, n: int = UNSEEN_COUNT) -> list:
    """The first `n` distinct architectures `space.sample` draws with `UNSEEN_SEED`: never sampled in
    pretraining, so benchmarks can warm-start architectures the hypernet has never seen.

    Tiny spaces keep most architectures for training: at most a quarter of the distinct ones
    seen in 200 draws are held out.
    """
    rng = random.Random(UNSEEN_SEED)
    found: list = []
    for _ in range(200):
        config = space.sample(rng)
        if config not in found:
            found.append(config)
    return found[:min(n, len(found) // 4)]


def sampler_excluding(space: Any, excluded: list, shallow_share: float = 0.0, widths: str = "grid"):
    """`sample_arch` for meta_train that never returns one of `excluded` (rejection sampling).

    With `shallow_share` > 0 that share of the draws is made at the space's smallest depth (the
    rest uniformly over the space, that depth included): the hypernet underfits the shallowest
    architectures most, so they get more meta-steps. `widths="range"` replaces the grid width by
    any width of the space's range that one of its head counts divides, except the held-out
    off-grid widths (`nas.unseen`), with a head count drawn among those dividing it: the hypernet
    learns the whole range, not only the grid, and the protocol's off-grid class stays unseen.
    """
    require_range("shallow_share", shallow_share, 0.0, 1.0)
    if widths not in WIDTH_SAMPLING:
        raise ConfigError("widths", widths, f"one of {list(WIDTH_SAMPLING)}")
    banned = set(excluded)
    free = range_widths(space) if widths == "range" else None

    def sample(rng: random.Random):
        for _ in range(10_000):
            depth = space.depth[0] if shallow_share and rng.random() < shallow_share else None
            config = space.sample(rng, depth=depth)
            if free is not None:
                width = rng.choice(free)
                config = replace(config, width=width, heads=rng.choice([h for h in space.heads if width % h == 0]))
            if config not in banned:
                return config
        raise ConfigError("space", space, "a space with more architectures than the unseen ones")

    return sample


def range_widths(space: Any) -> list[int]:
    """Every width in the space's [low, high] that a head count divides, minus the held-out off-grid
    widths (`nas.unseen.off_grid_widths`)."""
    lo, hi, _ = space.width
    held_out = set(off_grid_widths(space))
    found = [w for w in range(lo, hi + 1) if w not in held_out and any(w % h == 0 for h in space.heads)]
    if not found:
        raise ConfigError("width", space.width, "a range with a width one of the head counts divides")
    return found


# What a restarted run must share with the one it resumes, besides MetaTrainConfig (checked there).
_RUN_DEFINING = ("space_signature", "space_ranges", "data", "data_options", "variant", "shallow_share",
                 "widths", "init_checkpoint", "correction_cap")


def default_out(space: str, data: str) -> Path:
    return Path("logah_runs") / "pretrained" / f"{space}_{data}.safetensors"


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
    correction_cap: float | None = None,
    **recipe: Any,
) -> Path:
    """Meta-train a fresh `LoGAH(variant)` (or, with `init`, a copy of that checkpoint) on `space` x
    `data` and write its checkpoint to `out`; `recipe` holds the fields of `Recipe` (steps, seed, lr, ...).

    With `init` the metadata keeps the init checkpoint's sha256 and command, so a multi-stage recipe
    stays reproducible. `correction_cap` (`LoGAHConfig.correction_cap`) bounds the predicted
    corrections from this stage on, also when `init` was meta-trained without one (None: the
    init's own setting, or none for a fresh hypernet).
    `space_options` override the space ranges (the dataset's `space_options()` are always applied,
    so models fit the data). Returns the checkpoint path; its metadata records the space signature,
    the data, the recipe, wall time, git commit and the command that reproduces it.
    """
    from nas.data import data_fingerprint, load_dataset

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
        if correction_cap is not None and correction_cap != hn.config.correction_cap:
            hn = with_config(hn, correction_cap=correction_cap)
        variant = hn.config.variant
        parent = {"path": Path(init).name, "sha256": init_meta.get("sha256"), "command": init_meta.get("command"),
                  "steps": init_meta.get("steps"), "parent": init_meta.get("init_checkpoint")}
    else:
        torch.manual_seed(the_recipe.seed)  # hypernet initialisation
        options = dict(hypernet_options or {})
        if correction_cap is not None:
            options["correction_cap"] = correction_cap
        hn = LoGAH(LoGAHConfig(variant=variant, space_signature=the_space.signature(), **options))
    unseen = unseen_architectures(the_space)
    meta: dict[str, Any] = {
        "space_signature": the_space.signature(),
        "space_ranges": _ranges(the_space),
        "data": data,
        "data_options": data_options or {},
        # which examples it learns from: a study refuses a checkpoint that saw its val/test examples
        "data_fingerprint": data_fingerprint(dataset, data_options),
        "class_names": getattr(dataset, "class_names", None),  # a transfer keeps the classifier on equal labels
        "variant": variant,
        **asdict(the_recipe),
        "init_checkpoint": parent,
        "anchor_seed": hn.config.anchor_seed,
        "correction_cap": hn.config.correction_cap,
        "heldout_seed": UNSEEN_SEED,  # the keys shipped checkpoints carry
        "heldout_count": len(unseen),
        "git_commit": _git_commit(),
        "torch": torch.__version__,
        # exact for the default data/space options; others are recorded in data_options / space_ranges
        "command": reproduce_command(space=space, data=data, variant=variant, out=out, recipe=the_recipe, init=init,
                                     correction_cap=correction_cap),
    }
    t0, cpu0 = time.perf_counter(), time.process_time()
    if init is not None and not hn.coverage_recorded():  # a checkpoint from before coverage was recorded:
        hn.reset_coverage()  # it was meta-trained on this space's grid (minus the held-out architectures)
        grid = sampler_excluding(the_space, unseen)
        rng = random.Random(the_recipe.seed)
        hn.record_coverage(list({grid(rng) for _ in range(COVERAGE_DRAWS)}))
    sample_arch = sampler_excluding(the_space, unseen, the_recipe.shallow_share, the_recipe.widths)
    result = meta_train(hn, the_space, dataset, cfg, sample_arch=sample_arch, checkpoint_path=out,
                        checkpoint_meta=meta, resume=True, progress=progress,
                        resume_must_match={k: meta[k] for k in _RUN_DEFINING})
    stage = {"command": meta["command"], "steps": the_recipe.steps, "device": result.device,
             "threads": torch.get_num_threads(), "seconds": round(time.perf_counter() - t0, 1),
             "cpu_seconds": round(time.process_time() - cpu0, 1)}
    meta.update({
        # every stage from a fresh hypernet to this file: its command and its cost (None: not recorded)
        "stages": [*_parent_stages(init_meta if init is not None else None), stage],
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
                      init: str | Path | None = None, correction_cap: float | None = None) -> str:
    args = ["python", "-m", "nas.pretrain", "--space", space, "--data", data, "--variant", variant,
            *recipe.cli_args(), "--out", str(out)]
    if correction_cap is not None:
        args += ["--correction-cap", repr(correction_cap)]
    if init is not None:
        args += ["--init", str(init)]
    return shlex.join(args)


def _parent_stages(init_meta: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The stages behind an init checkpoint: its own `stages`, or for a file written before they
    were recorded its chain of commands with their seconds where the metadata kept them."""
    if init_meta is None:
        return []
    if init_meta.get("stages"):
        return list(init_meta["stages"])
    chain, node = [], init_meta
    while node:
        chain.append({"command": node.get("command"), "steps": node.get("steps"),
                      "seconds": node.get("seconds"), "cpu_seconds": None})
        node = node.get("init_checkpoint") or node.get("parent")
    return chain[::-1]


def total_cpu_hours(meta: dict[str, Any]) -> tuple[float, int]:
    """(CPU-hours recorded over a checkpoint's stages, number of stages whose cost was not recorded)."""
    stages = meta.get("stages") or []
    known = [s["cpu_seconds"] for s in stages if s.get("cpu_seconds") is not None]
    return sum(known) / 3600, len(stages) - len(known)


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
    parser = argparse.ArgumentParser(prog="python -m nas.pretrain", description=__doc__.splitlines()[0])
    d = Recipe()  # the recipe's defaults, written once (nas/recipe.py)
    parser.add_argument("--space", default="vit", help="vit | gpt2")
    parser.add_argument("--data", default="digits", help="digits | pytext | cifar10 | cifar100 | wikitext103")
    parser.add_argument("--variant", default="tiny", help="tiny | small | base | large")
    parser.add_argument("--steps", type=int, default=d.steps)
    parser.add_argument("--out", default=None, help="checkpoint path (.safetensors)")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--meta-batch", type=int, default=d.meta_batch)
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--lookahead", type=float, default=d.lookahead,
                        help="also score predictions after one Adam-like step of size U(0, rho) (0: off)")
    parser.add_argument("--unroll-steps", type=int, default=d.unroll_steps,
                        help="also score predictions after this many real AdamW steps (0: off)")
    parser.add_argument("--unroll-lr", type=float, default=d.unroll_lr,
                        help="peak lr of those steps, drawn log-uniformly in [lr / sqrt(10), lr * sqrt(10)]")
    parser.add_argument("--input-noise", type=float, default=d.input_noise,
                        help="std of Gaussian noise added to the meta-training images (0: off; images only)")
    parser.add_argument("--shallow-share", type=float, default=d.shallow_share,
                        help="share of meta-steps whose architecture has the space's smallest depth (0: uniform)")
    parser.add_argument("--widths", default=d.widths, choices=list(WIDTH_SAMPLING),
                        help="meta-training widths: the space's grid, or any width of its range a head count divides")
    parser.add_argument("--init", default=None, help="start from this checkpoint instead of a fresh hypernet")
    parser.add_argument("--correction-cap", type=float, default=None,
                        help="bound the predicted corrections' RMS to about this many times W0's (hypernet design; "
                             "default: the init's, or none)")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        path = pretrain(space=args.space, data=args.data, variant=args.variant, out=args.out, device=args.device,
                        progress=not args.no_progress, init=args.init, correction_cap=args.correction_cap,
                        **{f.name: getattr(args, f.name) for f in fields(Recipe)})
    except (ConfigError, FileNotFoundError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(path)
    return 0


__all__ = ["DEFAULT_STEPS", "Recipe", "RecipeOptions", "UNSEEN_COUNT", "UNSEEN_SEED", "default_out", "main",
           "pretrain", "range_widths", "reproduce_command", "total_cpu_hours", "sampler_excluding",
           "unseen_architectures"]


if __name__ == "__main__":
    sys.exit(main())
