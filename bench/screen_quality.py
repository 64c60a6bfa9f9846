"""How well does the hypernet's screening score rank architectures? (nas/screen.py)

    python bench/screen_quality.py [--space vit --data digits] [--archs 32] [--steps 150] [--top 4]

Draws `--archs` architectures as screening does (`candidate_architectures`, seeded), scores them
(`score_architectures`: val loss of the predicted parameters, no training), then trains every one
warm-started at `--strength` (the study default 0.5) for `--steps` steps with one fixed recipe and
records its final val loss. Reported: Spearman rank correlation between score and final loss, and
the mean final loss of the `--top` best-scored architectures against the baseline measured in the
same run: `--top` architectures picked at random (the mean over all; the expected best of a random
`--top` is computed exactly over all subsets).
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import describe_arch, emit, shipped_checkpoint, table  # noqa: E402


def expected_best_of_random(values: list[float], k: int) -> float:
    """E[min of k distinct values drawn uniformly without replacement], exactly."""
    ordered, n = sorted(values), len(values)
    total = math.comb(n, k)
    # The i-th smallest (0-based) is the minimum of the subsets made of it and k-1 larger ones.
    return sum(v * math.comb(n - 1 - i, k - 1) for i, v in enumerate(ordered)) / total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="vit")
    p.add_argument("--data", default="digits")
    p.add_argument("--archs", type=int, default=32)
    p.add_argument("--top", type=int, default=4)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--strength", type=float, default=0.5)
    p.add_argument("--max-params", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=123)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    if not 1 <= args.top < args.archs:
        raise SystemExit(f"--top: an integer in [1, --archs - 1], got {args.top}")
    torch.set_num_threads(args.threads)

    from scipy.stats import spearmanr

    from hypernet import load_checkpoint
    from nas.data import load_dataset
    from nas.screen import candidate_architectures, score_architectures
    from nas.train_loop import TrainConfig, train
    from search_spaces import build_model, get_space

    dataset = load_dataset(args.data)
    space = get_space(args.space, **dataset.space_options())
    hn, _ = load_checkpoint(shipped_checkpoint(space, args.data))
    hn.eval()
    configs = candidate_architectures(space, args.archs, seed=args.seed, max_params=args.max_params)
    scored = score_architectures(hn, configs, dataset, batch_size=64, batches=4)
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=max(1, args.steps // 20),
                      eval_every=args.steps, eval_batches=4, eval_batch_size=64, seed=0, device="cpu")
    rows = []
    for rank, s in enumerate(scored):
        model = hn.apply(build_model(s.config, seed=rank), strength=args.strength)
        result = train(model, dataset, cfg)
        rows.append({"rank": rank, "arch": describe_arch(s.config), "n_params": sum(p.numel() for p in model.parameters()),
                     "score": s.loss, "final": result.val_loss})
        print(f"# {rows[-1]['arch']}: score {s.loss:.3f} final {result.val_loss:.3f}", file=sys.stderr)
    finals = [r["final"] for r in rows]
    top = finals[:args.top]
    summary = {
        "spearman": float(spearmanr([r["score"] for r in rows], finals).statistic),
        "top_mean_final": statistics.fmean(top), "random_mean_final": statistics.fmean(finals),
        "top_best_final": min(top), "random_best_final_expected": expected_best_of_random(finals, args.top),
        "best_final": min(finals), "rank_of_best": finals.index(min(finals)),
    }
    human = table(rows, [("rank", "score rank"), ("arch", "architecture"), ("n_params", "params"),
                         ("score", "score (predicted val loss)"), ("final", f"final after {args.steps} steps")])
    human += "\n\n" + table([summary], [("spearman", "Spearman"), ("top_mean_final", f"top-{args.top} mean"),
                                        ("random_mean_final", f"random-{args.top} mean"),
                                        ("top_best_final", f"top-{args.top} best"),
                                        ("random_best_final_expected", f"random-{args.top} best (expected)"),
                                        ("rank_of_best", "score rank of the best")])
    human += (f"\n\n{len(rows)} architectures of {args.space} x {args.data} (seed {args.seed}), each trained warm "
              f"(strength {args.strength}) {args.steps} steps, lr {args.lr}, batch {args.batch_size}, CPU.")
    emit("screen_quality", {"args": vars(args), "rows": rows, "summary": summary}, human)


if __name__ == "__main__":
    main()
