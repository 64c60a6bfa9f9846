"""Warm start vs random init on architectures the shipped hypernets never saw.

    python bench/warm_start_quality.py [--steps 150] [--archs 3] [--eval-every 5] [--seeds 0,1,2,3,4]

For each shipped checkpoint (vit_digits, gpt2_pytext) and each held-out architecture
(`nas.pretrain.unseen_architectures`: drawn with a seed pretraining never used and excluded from
its samples), both inits are trained with `nas.train_loop.train` under the same TrainConfig:
- the baseline (random init, `build_model`) for S steps gives its final val loss L_rand;
- the warm start (`hn.apply`) is trained the same way; we record its step-0 val loss and the first
  eval step at which its val loss <= L_rand ("steps to match").
Target (issue 3): steps to match <= S / 3.
Val loss is measured on the whole validation split for images (digits: 179 images; a fixed-size
subsample is too noisy to decide an architecture's verdict on) and on 4 batches for text (4 x 32 windows x 64 bytes: 8,192 predicted tokens); `--eval-batches` overrides.
With several `--seeds` (training seeds: init draw and batch order), L_rand is the mean of the random
runs' final losses and "steps to match" is read off the warm runs' mean curve; each seed's own
match (warm vs the random run of the same seed) is reported too.

With the anchored residual hypernet (default) the warm start is the anchored init W0 (the same
N(0, 0.02^2) distribution as the baseline's init, hypernet/anchor.py) plus the learned gated
correction g_role * Delta; the learned gains g_role are printed per checkpoint. `--anchor-only`
adds a third arm, the anchored W0 alone (no correction), to show the gain is the correction's.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import describe_arch, emit, parse_seeds, shipped_checkpoint, table  # noqa: E402

CASES = (("vit", "digits", "vit_digits"), ("gpt2", "pytext", "gpt2_pytext"))
TARGET_FRACTION = 1 / 3


def gains(hn) -> dict[str, float] | None:
    """The learned g_role of a residual hypernet (None for a pure low-rank one)."""
    from hypernet.decoder import GAIN_SCALE
    from hypernet.graph import Role

    if not hn.config.residual:
        return None
    return {role: round(GAIN_SCALE * float(v), 4) for role, v in zip(Role.ALL, hn.decoder.gain.detach())}


def run_case(space_name: str, data: str, ckpt: str, *, steps: int, archs: int, eval_every: int, lr: float,
             batch_size: int, seeds: tuple[int, ...], anchor_only: bool = False, path: Path | None = None,
             strength: float = 1.0, eval_batches: int | None = None) -> list[dict]:
    from hypernet.checkpoint import CheckpointError, load_checkpoint
    from nas.data import load_dataset
    from nas.pretrain import unseen_architectures
    from nas.train_loop import TrainConfig, train
    from search_spaces import build_model, get_space

    dataset = load_dataset(data)
    space = get_space(space_name, **dataset.space_options())
    if path is None:
        path = shipped_checkpoint(space, data)
    try:
        hn, _ = load_checkpoint(path)
    except CheckpointError as err:
        raise SystemExit(str(err)) from None
    if hn.config.space_signature not in (None, space.signature()):  # an unsigned hypernet fits any space
        raise SystemExit(f"{path} was trained for {hn.config.space_signature}, not {space.signature()}")
    hn.eval()
    print(f"# {ckpt} ({path.name}): residual={hn.config.residual} gains {gains(hn)}", file=sys.stderr)
    if eval_batches is None:
        eval_batches = default_eval_batches(dataset, batch_size)
    cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, warmup_steps=max(1, steps // 20),
                      eval_every=eval_every, eval_batches=eval_batches, seed=seeds[0], device="cpu")
    rows = []
    for config in unseen_architectures(space)[:archs]:
        rand_runs, warm_runs, predict_s = [], [], 0.0
        for seed in seeds:
            cfg = replace(cfg, seed=seed)
            torch.manual_seed(seed)
            rand_runs.append(train(build_model(config), dataset, cfg))
            torch.manual_seed(seed)  # same RNG state for build_model, whose values apply() overwrites
            t0 = time.perf_counter()
            model = hn.apply(build_model(config), strength=strength)
            predict_s += (time.perf_counter() - t0) / len(seeds)
            warm_runs.append(train(model, dataset, cfg))
        # With several seeds, both inits are compared by their MEAN val-loss curve: random init's final
        # loss is itself a random variable (one lucky draw can set a target no init reaches).
        target = statistics.mean(r.val_loss for r in rand_runs)
        warm_curve = _mean_curve(warm_runs)
        match = next((step for step, loss in warm_curve if loss <= target), None)
        per_seed = [next((h["step"] for h in w.history if h["val_loss"] <= r.val_loss), None)
                    for r, w in zip(rand_runs, warm_runs)]
        n_params = sum(p.numel() for p in model.parameters())
        anchor = None
        if anchor_only and hn.config.anchored:  # ablation: the anchored W0 without the correction
            model = build_model(config)
            with torch.no_grad():
                w0 = hn.base_init(config)
                for name, p in model.named_parameters():
                    if name in w0:
                        p.copy_(w0[name])
            anchor = train(model, dataset, replace(cfg, seed=seeds[0]))
        row = {
            "space": space_name, "arch": describe_arch(config), "n_params": n_params,
            "rand_step0": statistics.mean(r.loss_step0 for r in rand_runs),
            "warm_step0": statistics.mean(w.loss_step0 for w in warm_runs),
            "rand_final": target, "warm_final": warm_curve[-1][1], "seeds": list(seeds),
            "eval_batches": cfg.eval_batches,
            "per_seed_steps_to_match": per_seed,
            "per_seed_ok": sum(m is not None and m <= TARGET_FRACTION * steps for m in per_seed),
            "steps_to_match": match, "fraction": (match / steps) if match is not None else None,
            "ok": match is not None and match <= TARGET_FRACTION * steps, "predict_s": predict_s,
            "train_s": sum(r.seconds for r in rand_runs + warm_runs), "gains": gains(hn),
            "anchor_step0": anchor.loss_step0 if anchor else None, "anchor_final": anchor.val_loss if anchor else None,
        }
        rows.append(row)
        print(f"# {row['space']} {row['arch']}: step0 {row['rand_step0']:.3f} -> {row['warm_step0']:.3f}, "
              f"match at {match}/{steps}", file=sys.stderr)
    return rows


def default_eval_batches(dataset, batch_size: int) -> int:
    """The whole validation split for images (a few hundred examples: a subsample is too noisy to
    compare inits on), 4 batches for text (thousands of predicted tokens each)."""
    if dataset.kind == "image":
        return math.ceil(dataset.num_examples("val") / batch_size)
    return 4


def _mean_curve(runs) -> list[tuple[int, float]]:
    """(step, mean val loss over `runs`) at every eval step all runs share."""
    by_step = [{h["step"]: h["val_loss"] for h in r.history} for r in runs]
    steps = sorted(set.intersection(*(set(d) for d in by_step)))
    return [(step, statistics.mean(d[step] for d in by_step)) for step in steps]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--archs", type=int, default=3, help="held-out architectures per space")
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--eval-batches", type=int, default=None,
                        help="val batches per eval (default: the whole split for images, 4 for text)")
    parser.add_argument("--seeds", default="0",
                        help="comma-separated training seeds; with several, the inits are compared by mean curves")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--spaces", default="vit,gpt2", help="comma-separated subset of vit,gpt2")
    parser.add_argument("--anchor-only", action="store_true",
                        help="also train from the anchored W0 without the correction (ablation)")
    parser.add_argument("--strength", type=float, default=1.0,
                        help="warm start = init + strength * (prediction - init), as hypernet.warm_strength")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="SPACE=PATH",
                        help="evaluate this checkpoint instead of the shipped one for SPACE (repeatable)")
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.checkpoint if "=" in item)
    if len(overrides) != len(args.checkpoint) or not set(overrides) <= {"vit", "gpt2"}:
        raise SystemExit(f"--checkpoint: SPACE=PATH with SPACE vit or gpt2, got {args.checkpoint}")
    seeds = tuple(parse_seeds(args.seeds))
    torch.set_num_threads(args.threads)
    cases = [c for c in CASES if c[0] in args.spaces.split(",")]
    if not cases:
        raise SystemExit(f"--spaces: a comma-separated subset of vit,gpt2, got {args.spaces!r}")
    rows = []
    for space_name, data, ckpt in cases:
        rows += run_case(space_name, data, ckpt, steps=args.steps, archs=args.archs, eval_every=args.eval_every,
                         lr=args.lr, batch_size=args.batch_size, seeds=seeds, anchor_only=args.anchor_only, strength=args.strength,
                         eval_batches=args.eval_batches, path=Path(overrides[space_name]) if space_name in overrides else None)
    summary = {}
    for space_name, _, _ in cases:
        sub = [r for r in rows if r["space"] == space_name]
        fractions = [r["fraction"] if r["fraction"] is not None else float("inf") for r in sub]
        summary[space_name] = {
            "median_fraction": statistics.median(fractions),
            "mean_step0_gain": statistics.mean(r["rand_step0"] - r["warm_step0"] for r in sub),
            "all_ok": all(r["ok"] for r in sub),
        }
    human = table(rows, [("space", "space"), ("arch", "held-out arch"), ("n_params", "params"),
                         ("rand_step0", "rand step0"), ("warm_step0", "warm step0"), ("rand_final", "rand final"),
                         ("warm_final", "warm final"), ("steps_to_match", "warm steps to rand final"),
                         ("fraction", "fraction"), ("ok", "<= 1/3"),
                         ("per_seed_ok", "seeds <= 1/3")]
                  + ([("anchor_step0", "W0-only step0"), ("anchor_final", "W0-only final")] if args.anchor_only else []))
    val = f"{args.eval_batches} batches" if args.eval_batches else "whole split (images) / 4 batches (text)"
    human += (f"\n\nS = {args.steps} steps, eval every {args.eval_every} (match resolution), lr {args.lr}, "
              f"batch {args.batch_size}, val: {val}, CPU. Target: warm reaches random's final val loss in <= S/3 steps.")
    for name, s in summary.items():
        human += (f"\n{name}: median fraction {s['median_fraction']:.3f}, mean step-0 gain "
                  f"{s['mean_step0_gain']:.3f} nats, all <= 1/3: {s['all_ok']}")
    emit("warm_start_quality", {"args": vars(args), "rows": rows, "summary": summary}, human)


if __name__ == "__main__":
    main()
