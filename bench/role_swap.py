"""Which parts of a prediction help or hurt training: swap one parameter group at a time.

    python bench/role_swap.py --space vit --archs 1x128,3x128 [--other random_gpt2|mimetic|CKPT.safetensors]
        [--groups pos_embed,patch_embed,...] [--checkpoint CKPT] [--strength 0.5] [--steps study] [--lr 1e-3]
        [--seeds 0,1,2] [--out FILE.json] [--markdown]

Two starts per architecture and seed: the prediction P (the shipped hypernet, or `--checkpoint`, at
`--strength`) and the other start O (`--other`: an init arm of bench/protocol.py, or another
checkpoint's prediction at the same strength). For each parameter group G (one module's tensors in
every layer: `param_group`, e.g. `blocks.attn.c_proj` is every block's attention output projection)
two more: P with G taken from O, and O with G taken from P. Every start trains `--steps` AdamW steps
as the protocol trains its arms (the study's warmup and clipping, lr `--lr`, the same seeds and
batches); final val loss, mean +- SE over seeds. A group whose swap alone carries P's final loss to
O's (or O's to P's) is the part of the prediction that decides how it trains; a start is a joint
state, so the effects of two groups need not add up.
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
from protocol import (DATA, RANDOM_ARMS, _init_model, add_study_training_args, parse_archs,  # noqa: E402
                      study_training_from)

INIT_ARMS = (*RANDOM_ARMS, "mimetic")


def param_group(name: str) -> str:
    """A parameter's group: its module path without layer indices or the tensor's kind
    ('blocks.3.attn.c_proj.weight' -> 'blocks.attn.c_proj', 'pos_embed' -> 'pos_embed')."""
    parts = [p for p in name.split(".") if not p.isdigit()]
    if len(parts) > 1 and parts[-1] in ("weight", "bias"):
        parts = parts[:-1]
    return ".".join(parts)


def swapped(base: dict[str, torch.Tensor], donor: dict[str, torch.Tensor], group: str) -> dict[str, torch.Tensor]:
    """`base` with the tensors of `group` taken from `donor` (same names and shapes)."""
    return {k: (donor[k] if param_group(k) == group else v) for k, v in base.items()}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from hypernet.checkpoint import load_checkpoint
    from nas.train_loop import train
    from nas.unseen import arch_at
    from search_spaces import build_model

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_study_training_args(p)
    p.add_argument("--other", default="random_gpt2",
                   help=f"one of {INIT_ARMS} or a checkpoint (predicting at --strength)")
    p.add_argument("--groups", default=None, help="comma-separated parameter groups (default: every group)")
    p.add_argument("--seeds", default="0,1,2")
    args = p.parse_args(argv)
    seeds = parse_seeds(args.seeds)
    archs = parse_archs(args.archs)
    torch.set_num_threads(1)
    run = study_training_from(args)
    hn, strength, dataset, space, cfg = run.hn, run.strength, run.dataset, run.space, run.cfg
    other = None
    if args.other not in INIT_ARMS:
        if not Path(args.other).is_file():
            raise SystemExit(f"--other: one of {INIT_ARMS} or an existing checkpoint file, got {args.other!r}")
        other, _ = load_checkpoint(Path(args.other), expected_signature=space.signature())

    def start(config, seed: int, source) -> dict[str, torch.Tensor]:
        if isinstance(source, str):
            model, _ = _init_model(source, config, seed)
        else:
            model, _ = _init_model("hypernet_study", config, seed, hn=source, strength=strength)
        return {k: v.detach().clone() for k, v in model.named_parameters()}  # tied tensors once

    def final(config, seed: int, state: dict[str, torch.Tensor]) -> float:
        model = build_model(config, seed=seed)
        with torch.no_grad():
            for k, v in model.named_parameters():
                v.copy_(state[k])
        return train(model, dataset, replace(cfg, seed=seed)).val_loss  # what the protocol calls final

    rows = []
    for depth, width in archs:
        config = arch_at(space, depth, width)
        states = {s: (start(config, s, hn), start(config, s, other or args.other)) for s in seeds}
        names = list(states[seeds[0]][0])
        groups = list(dict.fromkeys(param_group(k) for k in names))
        wanted = [g.strip() for g in args.groups.split(",")] if args.groups else groups
        unknown = [g for g in wanted if g not in groups]
        if unknown:
            raise SystemExit(f"--groups: {unknown} not in {describe_arch(config)}'s groups {groups}")
        runs: dict[str, list[float]] = {"P": [], "O": []}
        for s in seeds:
            pred, oth = states[s]
            runs["P"].append(final(config, s, pred))
            runs["O"].append(final(config, s, oth))
            for g in wanted:
                runs.setdefault(f"P, {g} from O", []).append(final(config, s, swapped(pred, oth, g)))
                runs.setdefault(f"O, {g} from P", []).append(final(config, s, swapped(oth, pred, g)))
        row = {"arch": describe_arch(config), "depth": depth, "width": width, "groups": wanted,
               "finals": {k: mean_se(v) for k, v in runs.items()}, "runs": runs}
        rows.append(row)
        print(f"# {row['arch']}: P {fmt_mean_se(row['finals']['P'], '.3f')}, "
              f"O {fmt_mean_se(row['finals']['O'], '.3f')}", file=sys.stderr)
    payload = {"space": args.space, "data": DATA[args.space], "other": args.other, "strength": strength,
               "steps": run.steps, "lr": args.lr, "seeds": seeds, "rows": rows,
               "command": command_line(__file__, argv)}
    human = table([{"arch": r["arch"], "start": k, "final": fmt_mean_se(v, ".3f")}
                   for r in rows for k, v in r["finals"].items()], [("arch", "architecture"), ("start", "start"),
                                                                     ("final", "final val loss")])
    emit("role_swap", payload, human)
    if args.markdown:
        print()
        print(markdown_table(rows))
    write_json(args.out, "role_swap", payload)
    return payload


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """One row per group: P with it from O | O with it from P, per architecture (P and O on top)."""
    def cell(stat) -> str:
        return fmt_mean_se(stat, ".3f")

    lines = ["| group | " + " | ".join(f"{r['arch']}: P, group from O | O, group from P" for r in rows) + " |",
             "|---|" + "---|---|" * len(rows),
             "| (none) | " + " | ".join(f"P {cell(r['finals']['P'])} | O {cell(r['finals']['O'])}"
                                        for r in rows) + " |"]
    for g in rows[0]["groups"]:
        lines.append(f"| {g} | " + " | ".join(f"{cell(r['finals'][f'P, {g} from O'])} | "
                                              f"{cell(r['finals'][f'O, {g} from P'])}" for r in rows) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
