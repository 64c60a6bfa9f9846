"""Version 0 by transfer: which parts of a hypernet's prediction survive a change of data set.

    python bench/transfer.py [--data mnist5k] [--archs 6] [--seeds 0,1,2] [--steps 20] [--out FILE.json]

The study's version 0 for `--data` (`nas.hypernets.initial_hypernet`: the closest shipped checkpoint
of the space kind, moved to the data's space) is compared with variants that leave fewer or more
modules at the standard init (`hypernet.transfer`), and with random init (the GPT-2 scheme), on
`--archs` architectures the study's space samples: the val loss of the prediction at strength 1.0
and 0.5 (step 0) and after `--steps` AdamW steps from strength 0.5 (lr 1e-3). Mean +- SE over
architectures (each seed draws `--archs` of them and their inits).
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import command_line, fmt_mean_se, mean_se, parse_seeds, table, write_json  # noqa: E402

VARIANTS = {"ImageDataset": (("pos_embed",), ("pos_embed", "head"), ("pos_embed", "head", "patch_embed")),
            "TextDataset": ((), ("wpe",), ("wte", "lm_head", "wpe"))}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    import torch

    from hypernet import transfer
    from nas.config import compose
    from nas.hypernets import initial_hypernet
    from nas.train_loop import TrainConfig, evaluate, train
    from search_spaces import build_model

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="mnist5k")
    p.add_argument("--space", default=None, help="vit or gpt2 (default: by the data's kind)")
    p.add_argument("--override", action="append", default=[], help="more config overrides, e.g. space.patch_sizes=[4,7]")
    p.add_argument("--archs", type=int, default=6)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    overrides = [f"data={args.data}", *([f"space={args.space}"] if args.space else []), *args.override]
    if args.data == "mnist5k" and not args.override:
        overrides.append("space.patch_sizes=[4,7]")  # 7x7 and 4x4 patches of 28x28 images
    cfg = compose(overrides)
    data = cfg.data.load()
    space = cfg.make_space(**data.space_options())
    initial = initial_hypernet(cfg.hypernet, space, data)
    hn = initial.hn
    arms = {"version 0": hn}
    for keep in VARIANTS[type(data).__name__]:
        if tuple(sorted(keep)) != hn.config.keep_init:
            arms["reset " + "+".join(keep or ("nothing",))] = transfer(hn, space.signature(), keep)
    results: dict[str, dict[str, list[float]]] = {name: {"step0_full": [], "step0_half": [], "tuned": []}
                                                  for name in [*arms, "random init"]}
    context = getattr(data, "context", None)
    for seed in parse_seeds(args.seeds):
        rng = random.Random(seed)
        for i in range(args.archs):
            config = space.sample(rng)
            init_seed = 1000 * seed + i
            for name in results:
                for strength, key in ((1.0, "step0_full"), (0.5, "step0_half")):
                    model = build_model(config, seed=init_seed)
                    if name in arms:
                        arms[name].apply(model, strength=strength)
                    results[name][key].append(evaluate(model, data, batch_size=64, batches=4, context=context)["val_loss"])
                model = build_model(config, seed=init_seed)
                if name in arms:
                    arms[name].apply(model, strength=0.5)
                run = train(model, data, TrainConfig(steps=args.steps, batch_size=64, lr=1e-3, warmup_steps=2,
                                                     eval_every=args.steps, eval_batches=4, seed=init_seed,
                                                     device="cpu"))
                results[name]["tuned"].append(run.val_loss)
    rows = [{"arm": name, **{k: fmt_mean_se(mean_se(v), ".3f") for k, v in r.items() if v}} for name, r in results.items()]
    print(table(rows, [("arm", "init"), ("step0_full", "step 0, strength 1"), ("step0_half", "step 0, strength 0.5"),
                       ("tuned", f"after {args.steps} steps (0.5)")]))
    print(f"version 0: {initial.note}")
    payload = {"bench": "transfer", "data": args.data, "overrides": overrides, "version0": initial.note,
               "archs": args.archs, "seeds": args.seeds, "steps": args.steps, "results": results,
               "command": command_line(__file__, argv)}
    write_json(args.out, "transfer", payload)
    return payload


if __name__ == "__main__":
    main()
