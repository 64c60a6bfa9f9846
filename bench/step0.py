"""Step-0 val loss of the hypernet's prediction against random inits, on architectures the shipped
hypernets never saw (issue 19's first target: below random init on every one).

    python bench/step0.py [--spaces vit,gpt2] [--seeds 0,1,2] [--out FILE.json] [--markdown]
    python bench/step0.py --from-json FILE.json      # the tables of a saved run

Architectures: every held-out shape class of `nas.unseen.unseen_shape_classes` (off-grid widths,
2x / 4x the widest width, 2x the deepest depth, an unseen MLP ratio) plus `paper_scale`, models
the size of the paper's targets at this data's input size (ViT 12 x 384 and 12 x 768; GPT-2
12 x 768). Arms (built as `bench/protocol.py` builds them, one seeded model per seed): the GPT-2
scheme and PyTorch's default init, mimetic init, and the hypernet at the study's warm strength and
at full strength (an anchored hypernet's prediction does not depend on the seed; the random arms'
do). No training: the val loss of each start on the protocol's val batches (digits: the whole val
split; text: 8 batches of 32 x 64 bytes), mean +- standard error over seeds.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import describe_arch, emit, parse_seeds, shipped_checkpoint, table, write_json  # noqa: E402
from protocol import CASES, _init_model, hypernet_strengths, mean_se, study_defaults  # noqa: E402

ARMS = ("random_gpt2", "random_pytorch", "mimetic", "hypernet_study", "hypernet_full")
TEXT_BATCHES = 8


def paper_scale(space) -> list:
    """Models the size of LoGAH's targets, at this space's data (input size, classes, vocab)."""
    from dataclasses import replace

    from nas.unseen import arch_at

    if space.__class__.__name__ == "ViTSpace":
        return [replace(arch_at(space, 12, 384), heads=6), replace(arch_at(space, 12, 768), heads=12)]
    return [replace(arch_at(space, 12, 768), heads=12)]


def run_space(space_name: str, data: str, seeds: tuple[int, ...], quick: bool = False,
              paper: bool = True) -> dict[str, Any]:
    from hypernet.checkpoint import load_checkpoint
    from nas.data import load_dataset
    from nas.train_loop import evaluate
    from nas.unseen import unseen_shape_classes
    from search_spaces import get_space

    dataset = load_dataset(data)
    space = get_space(space_name, **dataset.space_options())
    path = shipped_checkpoint(space, data)
    hn, _ = load_checkpoint(path, expected_signature=space.signature())
    hn.eval()
    strengths = hypernet_strengths(study_defaults(space_name, data)["warm_strength"])
    batches = None if dataset.kind == "image" else TEXT_BATCHES
    classes = {**unseen_shape_classes(space), **({"paper_scale": paper_scale(space)} if paper else {})}
    if quick:  # smoke run: one architecture of each held-out class, two val batches, no paper scale
        classes = {k: v[:1] for k, v in classes.items() if k != "paper_scale"}
        batches = 2
    rows = []
    for cls, configs in classes.items():
        for config in configs:
            context = getattr(config, "context", None) if dataset.kind == "text" else None
            arms = {}
            for arm in ARMS:
                losses = []
                for seed in seeds:
                    model, _ = _init_model(arm, config, seed, hn=hn, strength=strengths.get(arm, 1.0))
                    losses.append(evaluate(model, dataset, batch_size=32, batches=batches, context=context)["val_loss"])
                    del model
                arms[arm] = mean_se(losses)
            best_random = min(arms["random_gpt2"]["mean"], arms["random_pytorch"]["mean"])
            rows.append({"class": cls, "arch": describe_arch(config), "config": config.to_dict(), "arms": arms,
                         "best_random": best_random,
                         "below_random": {h: arms[h]["mean"] < best_random for h in ("hypernet_study", "hypernet_full")},
                         "grown_from": (describe_arch(c) if (c := hn.covered_config(config)) is not None else None)})
            print(f"# {space_name} {cls} {rows[-1]['arch']}: random {best_random:.3f}, hypernet "
                  f"{arms['hypernet_study']['mean']:.3f} / {arms['hypernet_full']['mean']:.3f}", file=sys.stderr)
    below = {h: sum(r["below_random"][h] for r in rows) for h in ("hypernet_study", "hypernet_full")}
    return {"data": data, "checkpoint": path.name, "eval_batches": batches, "rows": rows, "below_random": below,
            "n": len(rows)}


def human(spaces: dict[str, Any]) -> str:
    out = []
    for name, res in spaces.items():
        rows = [{"class": r["class"], "arch": r["arch"], **{a: f"{r['arms'][a]['mean']:.3f}" +
                 (f"+-{r['arms'][a]['se']:.3f}" if r["arms"][a]["se"] else "") for a in ARMS},
                 "grown from": r["grown_from"] or "-"} for r in res["rows"]]
        out.append(f"## {name} x {res['data']} ({res['checkpoint']}): step-0 val loss; hypernet below the better "
                   f"random init on {res['below_random']['hypernet_full']}/{res['n']} (full strength), "
                   f"{res['below_random']['hypernet_study']}/{res['n']} (study strength)")
        out.append(table(rows, [("class", "class"), ("arch", "arch"), *((a, a) for a in ARMS),
                                ("grown from", "grown from")]))
    return "\n\n".join(out)


def markdown(spaces: dict[str, Any]) -> str:
    """The compact tables bench/RESULTS.md quotes: per architecture the best of the three standard
    inits (which one, mean +- SE) beside the hypernet at the study's strength and at full strength."""
    out = []
    for name, res in spaces.items():
        out += [f"{name} x {res['data']} ({res['checkpoint']}): below the best init on "
                f"{res['below_random']['hypernet_study']} of {res['n']} at strength 0.5, "
                f"{res['below_random']['hypernet_full']} of {res['n']} at full strength", "",
                "| class | architecture | best init | hypernet 0.5 | hypernet 1 | grown from |", "|---|---|---|---|---|---|"]
        for r in res["rows"]:
            best = min(("random_gpt2", "random_pytorch", "mimetic"), key=lambda a: r["arms"][a]["mean"])
            b = r["arms"][best]
            se = f" ± {b['se']:.3f}" if b["se"] else ""
            out.append(f"| {r['class']} | {r['arch']} | {b['mean']:.3f}{se} {INIT_NAMES[best]} | "
                       f"{r['arms']['hypernet_study']['mean']:.3f} | {r['arms']['hypernet_full']['mean']:.3f} | "
                       f"{r['grown_from'] or '-'} |")
        out.append("")
    return "\n".join(out)


INIT_NAMES = {"random_gpt2": "GPT-2", "random_pytorch": "PyTorch", "mimetic": "mimetic"}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spaces", default="vit,gpt2")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--quick", action="store_true", help="smoke run: one architecture per class, 2 val batches")
    p.add_argument("--markdown", action="store_true", help="also print the compact tables RESULTS.md quotes")
    p.add_argument("--from-json", type=Path, default=None, help="print the tables of a saved --out FILE, run nothing")
    p.add_argument("--no-paper-scale", action="store_true", help="held-out classes only (paper scale is slow on CPU)")
    args = p.parse_args(argv)
    if args.from_json is not None:
        saved = json.loads(args.from_json.read_text())
        print(human(saved["spaces"]) + "\n\n" + markdown(saved["spaces"]))
        return saved
    torch.set_num_threads(args.threads)
    seeds = tuple(parse_seeds(args.seeds))
    t0 = time.perf_counter()
    spaces = {name: run_space(name, data, seeds, args.quick, not args.no_paper_scale)
              for name, data in CASES if name in args.spaces.split(",")}
    payload = {"seeds": list(seeds), "arms": list(ARMS), "spaces": spaces, "seconds": time.perf_counter() - t0}
    write_json(args.out, "step0", payload)
    emit("step0", payload, human(spaces) + ("\n\n" + markdown(spaces) if args.markdown else ""))
    return {"bench": "step0", **payload}


if __name__ == "__main__":
    main()
