"""Does a refit slow the workers down? A worker's trial throughput while the refitter refits.

    python bench/refit_throughput.py [--seeds 0,1,2] [--trials 24] [--steps 100] [--refit-every 4]
                                     [--workers 1] [--set KEY=VALUE ...] [--out FILE.json]
    python bench/refit_throughput.py --quick      # smoke run: one seed, 6 trials of 8 steps

For each seed three `logah-nas search` studies of ViT x digits (`hypernet.checkpoint=none`) run one
after the other, `--workers` processes of one thread each, with the random sampler (its proposals do
not depend on results: each worker proposes the same architectures, batch sizes and lrs, in the same
order, in all three) and no pruner (every trial trains all its steps):
- `no_refit`: no refits (the baseline);
- `refitter`: refits every `--refit-every` completed trials in a refitter process beside the workers
  (`hypernet.refit_in=refitter`, how `search` runs by default);
- `in_worker`: the same refits inside the worker (`hypernet.refit_in=worker`): it trains no trial
  while it refits.
Each trial's wall seconds (start to complete; picking up a new version counts) are divided by the
seconds of the trial with the same parameters in `no_refit`; a trial is "during a refit" when a refit ran for at least half of
it. Reported per study, mean +- SE over seeds: that ratio for trials during a refit and for the
others, refits made, and the study's wall seconds against `no_refit`'s. Target (issue 20): a worker's
trial throughput unchanged while a refit runs, i.e. a ratio of 1 during refits (the refitter needs a
core of its own: `--workers 2` on this 2-core machine shows what sharing one costs).
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (command_line, fmt_mean_se, mean_se, parse_seeds, run_search, table,  # noqa: E402
                           write_json)

BASE = ["space=vit", "data=digits", "hypernet.checkpoint=none", "hypernet.screen_candidates=0",
        "study.sampler=random", "study.pruner=none"]
ARMS = {"no_refit": ["hypernet.refit_every=0"],
        "refitter": ["hypernet.refit_in=refitter"],
        "in_worker": ["hypernet.refit_in=worker"]}
DURING = 0.5  # share of a trial a refit must cover for the trial to count as during a refit


def overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Seconds the intervals a and b share."""
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))


def refit_intervals(refit_spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(start, end) of each refit from (end, seconds) as `run_search` reports them."""
    return [(end - seconds, end) for end, seconds in refit_spans]


def _key(trial_span: dict[str, Any]) -> str:
    """A trial's parameters: the same trial in two studies (with several workers trial numbers
    interleave differently, while each worker's sampler proposes the same sequence)."""
    return json.dumps(trial_span["params"], sort_keys=True)


def paired_ratios(run: dict[str, Any], base: dict[str, Any]) -> dict[str, list[float]]:
    """Each trial completed in both studies: its seconds / the seconds of the trial with the same
    parameters in `base`, split by whether refits covered at least `DURING` of it."""
    base_seconds = {_key(t): t["end"] - t["start"] for t in base["trial_spans"] if t["state"] == "COMPLETE"}
    refits = refit_intervals(run["refit_spans"])
    out: dict[str, list[float]] = {"during": [], "between": []}
    for t in run["trial_spans"]:
        seconds, twin = t["end"] - t["start"], base_seconds.get(_key(t))
        if t["state"] != "COMPLETE" or twin is None or seconds <= 0 or twin <= 0:
            continue
        covered = sum(overlap((t["start"], t["end"]), r) for r in refits) / seconds
        out["during" if covered >= DURING else "between"].append(seconds / twin)
    return out


def run_seed(seed: int, trials: int, steps: int, refit_every: int, workers: int, both_set: Sequence[str],
             timeout: float) -> dict[str, Any]:
    common = [*BASE, *both_set, f"seed={seed}", f"n_trials={trials}", f"study.steps={steps}",
              f"study.eval_every={max(1, steps // 4)}", f"hypernet.refit_every={refit_every}"]
    studies = {}
    for arm, extra in ARMS.items():
        with tempfile.TemporaryDirectory(prefix="logah-tput-") as tmp:
            studies[arm] = run_search([*common, *extra], Path(tmp), timeout, workers)
    base = studies["no_refit"]
    result = {"seed": seed, "studies": studies}
    for arm in ("refitter", "in_worker"):
        ratios = paired_ratios(studies[arm], base)
        result[arm] = {"during": ratios["during"], "between": ratios["between"],
                       "mean_during": statistics.fmean(ratios["during"]) if ratios["during"] else math.nan,
                       "mean_between": statistics.fmean(ratios["between"]) if ratios["between"] else math.nan,
                       "refits": studies[arm]["refits"], "wall_ratio": studies[arm]["seconds"] / base["seconds"]}
    print(f"seed {seed}: " + "; ".join(
        f"{arm}: {result[arm]['refits']} refits, trial seconds x{result[arm]['mean_during']:.3f} during them "
        f"({len(result[arm]['during'])} trials), x{result[arm]['mean_between']:.3f} between, study wall "
        f"x{result[arm]['wall_ratio']:.2f}" for arm in ("refitter", "in_worker")), flush=True)
    return result


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for arm in ("refitter", "in_worker"):
        rows.append({"arm": arm, "refits": sum(r[arm]["refits"] for r in runs),
                     "trials_during": sum(len(r[arm]["during"]) for r in runs),
                     "during": mean_se(x for r in runs if math.isfinite(x := r[arm]["mean_during"])),
                     "between": mean_se(x for r in runs if math.isfinite(x := r[arm]["mean_between"])),
                     "wall": mean_se(r[arm]["wall_ratio"] for r in runs)})
    return rows


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--trials", type=int, default=24)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--refit-every", type=int, default=4)
    p.add_argument("--workers", type=int, default=1, help="worker processes of each study (one thread each)")
    p.add_argument("--set", dest="both_set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides for the three studies")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per study")
    p.add_argument("--quick", action="store_true", help="one seed, 6 trials of 8 steps, a refit every 2")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.trials, args.steps, args.refit_every = "0", 6, 8, 2
    if args.refit_every < 1:
        p.error(f"--refit-every: {args.refit_every} is not an integer >= 1")
    seeds = parse_seeds(args.seeds)
    runs = [run_seed(s, args.trials, args.steps, args.refit_every, args.workers, args.both_set, args.timeout)
            for s in seeds]
    rows = summarize(runs)
    print(table([{"arm": r["arm"], "refits": r["refits"], "n": r["trials_during"], "during": fmt_mean_se(r["during"], ".3f"),
                  "between": fmt_mean_se(r["between"], ".3f"), "wall": fmt_mean_se(r["wall"], ".2f")} for r in rows],
                [("arm", "refits run in"), ("refits", "refits"), ("n", "trials during a refit"),
                 ("during", "trial seconds / no refits: during a refit"), ("between", "between refits"),
                 ("wall", "study wall / no refits")]))
    payload = {"bench": "refit_throughput", "seeds": seeds, "trials": args.trials, "steps": args.steps,
               "refit_every": args.refit_every, "workers": args.workers, "set": args.both_set,
               "command": command_line(__file__, argv),
               "summary": rows, "runs": runs}
    write_json(args.out, "refit_throughput", payload)
    return payload


if __name__ == "__main__":
    main()
