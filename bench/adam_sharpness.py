"""How sharp predicted parameters are along the step AdamW takes first, against trained ones.

    python bench/adam_sharpness.py [--space vit --data digits] [--archs 8] [--steps 150] [--deltas 3e-4,1e-3]

AdamW's first update moves every entry by ~lr in the sign direction of its gradient. For each held-out
architecture (`nas.pretrain.unseen_architectures`) this measures the val-loss change after one step
p -> p - delta * sign(g), g the mean gradient of `--grad-batches` train batches, for:
- the shipped hypernet's prediction (`hn.apply`, strength 1);
- baseline, same run: the same architecture trained `--steps` steps from random init (a network at a
  comparable loss that AdamW itself put there);
- the warm start after the same `--steps` of training.
Why: a warm start that loses ground in its first AdamW steps (bench/RESULTS.md, the ViT L1 d128 miss)
sits where this step raises the loss by nats, while a trained network of the same architecture moves
by hundredths; a meta-training change that makes predictions trainable should close that gap.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import describe_arch, emit, shipped_checkpoint, table  # noqa: E402

BATCH = 32


def sign_step_increase(model, dataset, *, deltas: list[float], grad_batches: int, val_batches: int) -> dict:
    """Val loss of `model` and its change after one step of -delta * sign(mean gradient), per delta.

    The model is restored afterwards; the gradient batches come from a fixed generator, so every
    model is probed with the same data."""
    from nas.train_loop import evaluate

    context = getattr(model.config, "context", None)
    generator = torch.Generator().manual_seed(0)
    params = dict(model.named_parameters())
    grads = {name: torch.zeros_like(p) for name, p in params.items()}
    model.train()
    for _ in range(grad_batches):
        x, y = dataset.batch("train", BATCH, generator, context=context)
        model.zero_grad(set_to_none=True)
        model(x, y)[1].backward()
        for name, p in params.items():
            if p.grad is not None:
                grads[name] += p.grad / grad_batches

    def val() -> float:
        return evaluate(model, dataset, batch_size=BATCH, batches=val_batches, context=context)["val_loss"]

    base, increases = val(), {}
    saved = {name: p.detach().clone() for name, p in params.items()}
    for delta in deltas:
        with torch.no_grad():
            for name, p in params.items():
                p.sub_(delta * grads[name].sign())
        increases[delta] = val() - base
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(saved[name])
    return {"val_loss": base, "increase": increases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="vit")
    parser.add_argument("--data", default="digits")
    parser.add_argument("--checkpoint", default=None, help="default: the shipped <space>_<data> checkpoint")
    parser.add_argument("--archs", type=int, default=8, help="held-out architectures")
    parser.add_argument("--steps", type=int, default=150, help="training steps of the baseline and the warm start")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--deltas", default="3e-4,1e-3", help="comma-separated sign-step sizes")
    parser.add_argument("--grad-batches", type=int, default=16)
    parser.add_argument("--val-batches", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from hypernet.checkpoint import load_checkpoint
    from nas.data import load_dataset
    from nas.pretrain import unseen_architectures
    from nas.train_loop import TrainConfig, train
    from search_spaces import build_model, get_space

    dataset = load_dataset(args.data)
    space = get_space(args.space, **dataset.space_options())
    path = Path(args.checkpoint) if args.checkpoint else shipped_checkpoint(space, args.data)
    hn, _ = load_checkpoint(path, expected_signature=space.signature())
    hn.eval()
    deltas = [float(d) for d in args.deltas.split(",")]
    cfg = TrainConfig(steps=args.steps, batch_size=BATCH, lr=args.lr, warmup_steps=max(1, args.steps // 20),
                      eval_every=args.steps, seed=0, device="cpu")

    def probe(who: str, model) -> dict[str, float]:  # the row's columns for one model
        result = sign_step_increase(model, dataset, deltas=deltas, grad_batches=args.grad_batches,
                                    val_batches=args.val_batches)
        return {f"{who}_val": result["val_loss"], **{f"{who}_{d:g}": result["increase"][d] for d in deltas}}

    rows = []
    for config in unseen_architectures(space)[:args.archs]:
        torch.manual_seed(0)
        predicted = hn.apply(build_model(config))
        row = {"arch": describe_arch(config), **probe("predicted", predicted)}
        torch.manual_seed(0)
        trained = build_model(config)
        train(trained, dataset, cfg)
        row.update(probe("random_trained", trained))
        train(predicted, dataset, cfg)  # the warm start, trained the same way
        row.update(probe("warm_trained", predicted))
        rows.append(row)
        print(f"# {row['arch']}: {row[f'predicted_{deltas[-1]:g}']:+.3f} predicted vs "
              f"{row[f'random_trained_{deltas[-1]:g}']:+.3f} trained from random init", file=sys.stderr)

    columns = [("arch", "held-out arch")]
    for who, label in (("predicted", "predicted"), ("random_trained", f"random+{args.steps}"),
                       ("warm_trained", f"warm+{args.steps}")):
        columns.append((f"{who}_val", f"{label} val"))
        columns += [(f"{who}_{d:g}", f"+{d:g}") for d in deltas]
    emit("adam_sharpness", {"space": args.space, "data": args.data, "checkpoint": path.name, "steps": args.steps,
                            "deltas": deltas, "rows": rows},
         table(rows, columns) + f"\n\nval-loss change after one step p - delta * sign(mean gradient of "
         f"{args.grad_batches} train batches); baseline: the same architecture trained {args.steps} steps from random init.")


if __name__ == "__main__":
    main()
