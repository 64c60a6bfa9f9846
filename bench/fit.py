"""Does a start that ends higher on val fit its training data less, or generalise worse?

    python bench/fit.py --archs 1x40,1x128,3x64,3x128 [--starts random_gpt2,mimetic,hypernet_study,hypernet_full]
        [--train-batches 16] [--checkpoint CKPT] [--strength 0.5] [--steps study] [--lr 1e-3] [--seeds 0,1,2]
        [--out FILE.json] [--markdown]

Every start (an init arm of bench/protocol.py; `hypernet_study` at `--strength`, `hypernet_full` at 1)
trains `--steps` AdamW steps as the protocol trains its arms (same seeds, batches and schedule), then is
scored on the val split (the protocol's final val loss) and on `--train-batches` fixed batches of the
train split (drawn once, the same for every start). A start whose val loss is higher than another's
with a train loss as low fits as well and generalises worse (regularise it); with a higher train loss
too it trains slower (an optimisation problem: its parameters sit where AdamW makes less progress).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (command_line, describe_arch, emit, fmt_mean_se, mean_se, parse_seeds, table,  # noqa: E402
                     write_json)
from protocol import (DATA, HYPERNET_ARMS, RANDOM_ARMS, _init_model, add_study_training_args,  # noqa: E402
                      hypernet_strengths, parse_archs, study_training_from)

STARTS = (*RANDOM_ARMS, "mimetic", *HYPERNET_ARMS)  # inheritance needs a trained pool: bench/protocol.py


@torch.no_grad()
def mean_loss(model: torch.nn.Module, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Mean loss over `batches` in eval mode (equal-sized batches: the mean of their means)."""
    model.eval()
    return sum(model(x, y)[1].item() for x, y in batches) / len(batches)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from nas.train_loop import train
    from nas.unseen import arch_at

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_study_training_args(p)
    p.add_argument("--starts", default="random_gpt2,mimetic,hypernet_study,hypernet_full", help=f"of {STARTS}")
    p.add_argument("--train-batches", type=int, default=16, help="train-split batches scored after training, >= 1")
    p.add_argument("--seeds", default="0,1,2")
    args = p.parse_args(argv)
    seeds = parse_seeds(args.seeds)
    starts = [s.strip() for s in args.starts.split(",")]
    if not starts or any(s not in STARTS for s in starts):
        raise SystemExit(f"--starts: comma-separated, each one of {STARTS}, got {args.starts!r}")
    if args.train_batches < 1:
        raise SystemExit(f"--train-batches: at least 1, got {args.train_batches}")
    archs = parse_archs(args.archs)
    torch.set_num_threads(1)
    run = study_training_from(args)
    generator = torch.Generator().manual_seed(0)  # one fixed sample of training batches for every start
    context = run.space.context if run.dataset.kind == "text" else None
    train_batches = [run.dataset.batch("train", run.cfg.batch_size, generator, context=context)
                     for _ in range(args.train_batches)]

    strengths = hypernet_strengths(run.strength)
    rows = []
    for depth, width in archs:
        config = arch_at(run.space, depth, width)
        for start in starts:
            strength = strengths.get(start, 1.0)
            val, fit = [], []
            for seed in seeds:
                model, _ = _init_model(start, config, seed, hn=run.hn, strength=strength)
                val.append(train(model, run.dataset, replace(run.cfg, seed=seed)).val_loss)
                fit.append(mean_loss(model, train_batches))
            rows.append({"arch": describe_arch(config), "depth": depth, "width": width, "start": start,
                         "val": mean_se(val), "train": mean_se(fit), "runs": {"val": val, "train": fit}})
            print(f"# {rows[-1]['arch']} {start}: val {fmt_mean_se(rows[-1]['val'], '.3f')}, "
                  f"train {fmt_mean_se(rows[-1]['train'], '.3f')}", file=sys.stderr)
    payload = {"space": args.space, "data": DATA[args.space], "strength": run.strength, "steps": run.steps,
               "lr": args.lr, "seeds": seeds, "train_batches": args.train_batches, "rows": rows,
               "command": command_line(__file__, argv)}
    human = table([{"arch": r["arch"], "start": r["start"], "val": fmt_mean_se(r["val"], ".3f"),
                    "train": fmt_mean_se(r["train"], ".3f")} for r in rows],
                  [("arch", "architecture"), ("start", "start"), ("val", "final val loss"),
                   ("train", "train loss")])
    emit("fit", payload, human)
    if args.markdown:
        print()
        print(markdown_table(rows, starts))
    write_json(args.out, "fit", payload)
    return payload


def markdown_table(rows: list[dict[str, Any]], starts: Sequence[str]) -> str:
    """One row per architecture: each start's final val loss / train loss."""
    lines = ["| architecture | " + " | ".join(f"{s}: val / train" for s in starts) + " |",
             "|---|" + "---|" * len(starts)]
    for arch in dict.fromkeys(r["arch"] for r in rows):
        cells = {r["start"]: r for r in rows if r["arch"] == arch}
        lines.append(f"| {arch} | " + " | ".join(
            f"{fmt_mean_se(cells[s]['val'], '.3f')} / {fmt_mean_se(cells[s]['train'], '.3f')}" for s in starts) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
