"""How much of a start's final loss is the luck of its random draw, and whether a warm start can have its own.

    python bench/draw_luck.py --archs 1x64,1x128,3x128 [--draws 6] [--checkpoint CKPT] [--strength 0.5]
        [--perturb 0.7] [--steps study] [--lr 1e-3] [--out FILE.json] [--markdown]

A residual hypernet refines one fixed init W0 (its checkpoint's anchor seed: hypernet/anchor.py), so
all warm starts of an architecture share one draw: their spread over training seeds leaves out the
draw's own variance, which the random-init arms of bench/protocol.py average over. For k = 0..N-1
(`--draws`; training seed k, so the batches pair up) this trains, at the study's budget:

* `fresh`: the GPT-2 init drawn with seed k (the protocol's `random_gpt2` arm);
* `anchored`: the anchored W0 of anchor seed (checkpoint's + 1 + k): same distribution, other draws;
* `shipped W0`: the checkpoint's own W0 (what its warm starts refine; the `strength` -> 0 limit);
* `warm`: the warm start at `--strength`;
* `perturbed` (with `--perturb a`): shrink and perturb, a warm start with a draw of its own per seed:
  every matrix a * (full prediction) + sqrt(1 - a^2) * (fresh draw k), vectors a of the way from
  their standard init to the prediction.

Per start: final val loss, mean +- SE over k; and the rank of the shipped W0's mean among the N
anchored draws (0: better than all). Draw luck explains a warm start's loss where `shipped W0` sits
above `anchored` and `warm` follows it; `perturbed` then says whether the prediction still helps on a
draw of its own.
"""
from __future__ import annotations

import argparse
import copy
import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command_line, describe_arch, emit, fmt_mean_se, mean_se, table, write_json  # noqa: E402
from protocol import DATA, _init_model, add_study_training_args, parse_archs, study_training_from  # noqa: E402

STARTS = ("fresh", "anchored", "shipped W0", "warm", "perturbed")


def anchored_init(hn, config, anchor_seed: int, seed: int) -> torch.nn.Module:
    """The model `hn` would refine if its anchor seed were `anchor_seed` (nas.safety.init_model)."""
    from nas.safety import init_model

    other = copy.copy(hn)  # shares hn's parameters; only its config differs
    other.config = replace(hn.config, anchor_seed=anchor_seed)
    return init_model(other, config, seed)


@torch.no_grad()
def perturbed(prediction: torch.nn.Module, fresh: torch.nn.Module, a: float) -> torch.nn.Module:
    """`fresh` overwritten with a * prediction + sqrt(1 - a^2) * fresh (matrices; `fresh` holds the
    standard vector inits, which move a of the way to the prediction's)."""
    pred = dict(prediction.named_parameters())
    b = math.sqrt(1.0 - a * a)
    for name, p in fresh.named_parameters():
        p.copy_(a * pred[name] + b * p if p.dim() >= 2 else p + a * (pred[name] - p))
    return fresh


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from nas.train_loop import train
    from nas.unseen import arch_at

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_study_training_args(p)
    p.add_argument("--draws", type=int, default=6, help="N: draws (and training seeds) per start, >= 2")
    p.add_argument("--perturb", type=float, default=None, help="a in (0, 1): also train `perturbed`")
    args = p.parse_args(argv)
    if args.draws < 2:
        raise SystemExit(f"--draws: at least 2 (a standard error needs two), got {args.draws}")
    if args.perturb is not None and not 0.0 < args.perturb < 1.0:
        raise SystemExit(f"--perturb: in (0, 1), got {args.perturb}")
    archs = parse_archs(args.archs)
    torch.set_num_threads(1)
    run = study_training_from(args)
    hn = run.hn
    if not hn.config.anchored:
        raise SystemExit("--checkpoint: an anchored residual hypernet (its W0 is one fixed draw), got one without")
    own_seed = hn.config.anchor_seed
    starts = [s for s in STARTS if s != "perturbed" or args.perturb is not None]

    def start(name: str, config, k: int) -> torch.nn.Module:
        if name == "fresh":
            return _init_model("random_gpt2", config, k)[0]
        if name == "anchored":
            return anchored_init(hn, config, own_seed + 1 + k, k)
        if name == "shipped W0":
            return anchored_init(hn, config, own_seed, k)
        if name == "warm":
            return _init_model("hypernet_study", config, k, hn=hn, strength=run.strength)[0]
        full = _init_model("hypernet_full", config, k, hn=hn, strength=1.0)[0]
        return perturbed(full, _init_model("random_gpt2", config, k)[0], args.perturb)

    rows = []
    for depth, width in archs:
        config = arch_at(run.space, depth, width)
        runs = {s: [train(start(s, config, k), run.dataset, replace(run.cfg, seed=k)).val_loss
                    for k in range(args.draws)] for s in starts}
        finals = {s: mean_se(v) for s, v in runs.items()}
        rank = sum(v < finals["shipped W0"][0] for v in runs["anchored"])
        rows.append({"arch": describe_arch(config), "depth": depth, "width": width, "finals": finals, "runs": runs,
                     "shipped_rank": rank})
        print(f"# {rows[-1]['arch']}: " + ", ".join(f"{s} {fmt_mean_se(finals[s], '.3f')}" for s in starts)
              + f"; shipped W0 ranks {rank} of {args.draws} anchored draws", file=sys.stderr)
    payload = {"space": args.space, "data": DATA[args.space], "anchor_seed": own_seed, "strength": run.strength,
               "perturb": args.perturb, "steps": run.steps, "lr": args.lr, "draws": args.draws, "rows": rows,
               "command": command_line(__file__, argv)}
    human = table([{"arch": r["arch"], "start": s, "final": fmt_mean_se(r["finals"][s], ".3f")}
                   for r in rows for s in starts], [("arch", "architecture"), ("start", "start"),
                                                    ("final", "final val loss")])
    emit("draw_luck", payload, human)
    if args.markdown:
        print()
        print(markdown_table(rows, starts, args.draws))
    write_json(args.out, "draw_luck", payload)
    return payload


def markdown_table(rows: list[dict[str, Any]], starts: Sequence[str], draws: int) -> str:
    """One row per architecture: each start's final val loss and the shipped draw's rank."""
    lines = ["| architecture | " + " | ".join(starts) + f" | shipped W0's rank among {draws} anchored draws |",
             "|---|" + "---|" * (len(starts) + 1)]
    for r in rows:
        lines.append(f"| {r['arch']} | " + " | ".join(fmt_mean_se(r["finals"][s], ".3f") for s in starts)
                     + f" | {r['shipped_rank']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
