"""Decoder rank ablation: r in {d/4, d/2, d} for LoGAH-Tiny (d = 64 -> r in {16, 32, 64}).

    python bench/rank_ablation.py [--space vit --data digits] [--steps 200]

Each rank gets the same short meta-training (same steps, seed, architecture stream and batches)
and is scored by the mean step-0 val loss of the models it predicts for the held-out
architectures (`nas.pretrain.unseen_architectures`). Baseline, measured in the same run: the
same architectures at random init (`build_model`). Every model of architecture i is built after
`torch.manual_seed(seed + i)`; a fresh-W0 hypernet (`--fresh-w0`) uses that init as W0, so its
"before" equals the baseline exactly; an anchored one (default) replaces it with the anchored init
(the same distribution, another draw). `--pure` ablates the residual design
(`LoGAHConfig(residual=False)`: the first version's pure low-rank prediction).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, table  # noqa: E402


@torch.no_grad()
def step0_loss(model, dataset, context=None) -> float:
    from nas.train_loop import evaluate

    return evaluate(model, dataset, batch_size=64, batches=4, context=context)["val_loss"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="vit")
    parser.add_argument("--data", default="digits")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--ranks", default="16,32,64")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--pure", action="store_true", help="residual=False: pure low-rank prediction")
    parser.add_argument("--fresh-w0", action="store_true", help="anchor_seed=None: W0 = each model's own init")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from hypernet import LoGAH, LoGAHConfig
    from nas.pretrain import sampler_excluding, unseen_architectures
    from hypernet import MetaTrainConfig, meta_train
    from nas.data import load_dataset
    from search_spaces import build_model, get_space

    dataset = load_dataset(args.data)
    space = get_space(args.space, **dataset.space_options())
    held = unseen_architectures(space)
    ctx = (lambda c: getattr(c, "context", None))

    def built(i: int, config):
        torch.manual_seed(args.seed + i)  # the same random init (W0) for every model of architecture i
        return build_model(config)

    baseline = statistics.mean(step0_loss(built(i, c), dataset, ctx(c)) for i, c in enumerate(held))
    rows = [{"rank": "random init", "params": None, "decoder": None, "heldout_step0": baseline}]
    cfg = MetaTrainConfig(steps=args.steps, batch_size=args.batch_size, seed=args.seed, device="cpu",
                          warmup_steps=max(1, args.steps // 20), log_every=max(1, args.steps // 10))
    for r in (int(v) for v in args.ranks.split(",")):
        torch.manual_seed(args.seed)
        hn = LoGAH(LoGAHConfig(variant="tiny", rank=r, residual=not args.pure, space_signature=space.signature(),
                               anchor_seed=None if args.fresh_w0 else 0))
        before = statistics.mean(step0_loss(hn.apply(built(i, c)), dataset, ctx(c)) for i, c in enumerate(held))
        t0 = time.perf_counter()
        result = meta_train(hn, space, dataset, cfg, sample_arch=sampler_excluding(space, held), progress=False)
        seconds = time.perf_counter() - t0
        hn.eval()
        after = [step0_loss(hn.apply(built(i, c)), dataset, ctx(c)) for i, c in enumerate(held)]
        rows.append({"rank": r, "params": hn.num_params(), "decoder": sum(p.numel() for p in hn.decoder.parameters()),
                     "heldout_step0_untrained": before, "heldout_step0": statistics.mean(after),
                     "heldout_step0_best": min(after), "train_loss_last": statistics.mean(result.losses[-20:]),
                     "meta_train_s": seconds, "residual": not args.pure,
                     "anchored": not args.pure and not args.fresh_w0})
        print(f"# rank {r}: held-out step-0 {before:.3f} -> {statistics.mean(after):.3f} ({seconds:.0f}s)",
              file=sys.stderr)
    human = table(rows, [("rank", "rank r"), ("params", "params"), ("decoder", "decoder"),
                         ("heldout_step0_untrained", "step0 before"), ("heldout_step0", "held-out step0"),
                         ("heldout_step0_best", "best arch"), ("train_loss_last", "meta loss (last 20)"),
                         ("meta_train_s", "seconds")])
    human += (f"\n\n{args.space}/{args.data}: {args.steps} meta-steps each "
              f"(seed {args.seed}, batch {args.batch_size}), "
              f"{len(held)} held-out architectures, d = 64, "
              f"{'pure low-rank (residual=False)' if args.pure else 'residual (W0 + g Delta), ' + ('fresh W0' if args.fresh_w0 else 'anchored W0')}.")
    emit("rank_ablation", {"args": vars(args), "rows": rows}, human)


if __name__ == "__main__":
    main()
