"""Does the closed loop pay? A cold study against the online-warm study, same seeds and budget.

    python bench/closed_loop.py [--settings mnist5k_transfer,textdir_transfer,digits_scratch]
                                [--seeds 0,1,2] [--trials 16] [--steps 200] [--refit-every 4]
                                [--refit-max-share 1.0] [--set KEY=VALUE ...] [--warm-set KEY=VALUE ...]
                                [--workers 1] [--refit-in worker|refitter] [--out FILE.json]
    python bench/closed_loop.py --quick       # smoke run: one setting, one seed, 4 trials of 8 steps

Settings:
- `mnist5k_transfer`: ViT x MNIST-5k (28x28); version 0 transferred from the shipped digits hypernet;
- `textdir_transfer`: GPT-2 x the Python sources of an installed third-party package (`--text-package`,
  default optuna: text the shipped pytext hypernet never saw), via `textdir`; version 0 transferred;
- `digits_scratch`: ViT x digits with `hypernet.checkpoint=none`: the loop learns from scratch.

For each setting and seed two studies run with `logah-nas search`, `--workers` processes of one
thread each (default 1):
- cold: every trial from random init (`study.init=random`, no controls, no refits, no screening);
- warm: the defaults (hypernet warm starts with `study.control_fraction` controls, screening), refits
  every `--refit-every` completed trials made inside the worker (`--refit-in worker`, the default) so
  every second of hypernet work (version 0, screening, refits, predictions) is on the same clock; or
  (`--refit-in refitter`, as `search` runs by default) by a refitter process beside the workers, which
  shares the machine's cores with them: the wall clock then counts its work as the time it takes
  from the trials;
  `--refit-max-share S` caps refits at that share of the study's compute (`hypernet.refit_max_share`),
  `--warm-set KEY=VALUE` sets any other config key of the warm study (e.g. hypernet.screen_pick),
  `--set KEY=VALUE` one of both studies (e.g. study.lr: the search space both share).
Reported: the time each study needs to reach the cold study's final best val loss (the target;
time from the `search` start, so set-up counts), the ratio warm / cold (mean +- SE over seeds;
"never" when the warm study does not reach it), the same ratio with the seconds of every refit
that ended before the warm study got there taken off (a diagnostic, not a result: how much of the
gap the refits make; exact with `--refit-in worker`, where trials wait for refits; with a refitter
the refits overlap the trials and it undercounts the warm study), the warm study's best at equal
time (when the cold study had finished: a short budget favours the study without refits, a long one
the study that learns), refits made and promoted, and the warm-vs-control gain per hypernet version
(`nas.gain`). Targets: >= 50 % of refits promoted, the gain
growing from version 0 to the last version, time to target <= 0.7x the cold study's.
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (command_line, fmt_mean_se, mean_se, parse_seeds, run_search, table,  # noqa: E402
                           write_json)

SETTINGS = {
    "mnist5k_transfer": ["space=vit", "data=mnist5k", "space.patch_sizes=[4,7]", "hypernet.checkpoint=auto"],
    "textdir_transfer": ["space=gpt2", "data=textdir", "data.options.glob=**/*.py", "data.options.max_bytes=2000000",
                         "hypernet.checkpoint=auto"],
    "digits_scratch": ["space=vit", "data=digits", "hypernet.checkpoint=none"],
}
COLD = ["study.init=random", "study.control_fraction=0.0", "hypernet.refit_every=0", "hypernet.screen_candidates=0"]


def _package_dir(name: str) -> str:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"--text-package {name}: not an installed package")
    return list(spec.submodule_search_locations)[0]


def _time_to(curve: list[tuple[float, float]], target: float) -> float | None:
    return next((t for t, best in curve if best <= target + 1e-12), None)


def _without_refits(t: float | None, refit_spans: list[tuple[float, float]]) -> float | None:
    """`t` less the seconds of every refit that ended before it: when the study would have got there
    had its refits cost nothing (exact where refits run in the worker, which waits for them)."""
    return None if t is None else t - sum(seconds for end, seconds in refit_spans if end <= t)


def _best_at(curve: list[tuple[float, float]], seconds: float) -> float:
    """The study's best val loss `seconds` after its start (inf before its first completed trial)."""
    return min((best for t, best in curve if t <= seconds), default=math.inf)


def run_setting(name: str, seeds: list[int], trials: int, steps: int, refit_every: int, text_package: str,
                timeout: float, refit_max_share: float = 1.0, warm_set: Sequence[str] = (),
                both_set: Sequence[str] = (), workers: int = 1, refit_in: str = "worker") -> dict[str, Any]:
    base = [*SETTINGS[name], *both_set, f"n_trials={trials}", f"study.steps={steps}", f"study.eval_every={max(1, steps // 4)}",
            f"hypernet.refit_every={refit_every}", f"hypernet.refit_in={refit_in}"]
    if name == "textdir_transfer":
        base.append(f"data.options.path={_package_dir(text_package)}")
    runs = []
    for seed in seeds:
        with tempfile.TemporaryDirectory(prefix="logah-loop-") as cold_dir, \
                tempfile.TemporaryDirectory(prefix="logah-loop-") as warm_dir:
            cold = run_search([*base, f"seed={seed}", *COLD], Path(cold_dir), timeout, workers)
            warm = run_search([*base, f"seed={seed}", f"hypernet.refit_max_share={refit_max_share}", *warm_set],
                        Path(warm_dir), timeout, workers)
        target = cold["best"]
        cold_t, warm_t = _time_to(cold["curve"], target), _time_to(warm["curve"], target)
        # equal time: the warm study's best when the cold one had finished (its whole budget)
        runs.append({"seed": seed, "target": target, "cold": cold, "warm": warm, "cold_time": cold_t,
                     "warm_time": warm_t, "ratio": None if warm_t is None else warm_t / cold_t,
                     "warm_best_at_cold_end": _best_at(warm["curve"], cold["seconds"]),
                     "ratio_refits_free": None if warm_t is None else
                     _without_refits(warm_t, warm.get("refit_spans", [])) / cold_t})
        print(f"{name} seed {seed}: target {target:.4f}; cold reached it at {cold_t:.0f}s, warm "
              + ("never" if warm_t is None else f"at {warm_t:.0f}s") + f"; warm best {warm['best']:.4f}, "
              f"refits {warm['refits']} ({warm['promoted']} promoted)", flush=True)
    return {"setting": name, "seeds": seeds, "runs": runs, "summary": summarize(runs)}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Over seeds: time ratio, refits promoted, and whether the gain grew from the first to the last
    version whose gain is known (warm trials and a control in its period; `nas.gain`)."""
    ratios = [r["ratio"] for r in runs if r["ratio"] is not None]
    refits = sum(r["warm"]["refits"] for r in runs)
    promoted = sum(r["warm"]["promoted"] for r in runs)
    known = ([x for x in r["warm"]["gain_per_version"] if x["warm_trials"] and math.isfinite(x["gain"])] for r in runs)
    first_last = [(g[0]["gain"], g[-1]["gain"]) for g in known if len(g) >= 2]
    ratio, ratio_se = mean_se(ratios)
    free = mean_se([r["ratio_refits_free"] for r in runs if r["ratio_refits_free"] is not None])
    return {"ratio_mean": ratio, "ratio_se": ratio_se, "reached": f"{len(ratios)}/{len(runs)}",
            "refits": refits, "promoted": promoted, "promoted_share": promoted / refits if refits else math.nan,
            "gain_grew": f"{sum(last > first for first, last in first_last)}/{len(first_last)}",
            "cold_best": mean_se([r["cold"]["best"] for r in runs]),
            "warm_best": mean_se([r["warm"]["best"] for r in runs]),
            "warm_best_at_cold_end": mean_se([r["warm_best_at_cold_end"] for r in runs]),
            "ratio_refits_free": free,
            "ahead_at_cold_end": f"{sum(r['warm_best_at_cold_end'] < r['target'] for r in runs)}/{len(runs)}",
            "cold_seconds": mean_se([r["cold"]["seconds"] for r in runs]),
            "warm_seconds": mean_se([r["warm"]["seconds"] for r in runs])}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--settings", default=",".join(SETTINGS))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--refit-every", type=int, default=4)
    p.add_argument("--refit-max-share", type=float, default=1.0,
                   help="the warm study's hypernet.refit_max_share (1: refits every --refit-every trials, no cap)")
    p.add_argument("--set", dest="both_set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides for both studies (e.g. 'study.lr=[3e-4,1e-2]')")
    p.add_argument("--warm-set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides for the warm study only (e.g. hypernet.screen_pick=best_per_size)")
    p.add_argument("--workers", type=int, default=1, help="worker processes of each study (one thread each)")
    p.add_argument("--refit-in", choices=("worker", "refitter"), default="worker",
                   help="the warm study's hypernet.refit_in: inside a worker, or a refitter process beside them")
    p.add_argument("--text-package", default="optuna")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per study")
    p.add_argument("--quick", action="store_true", help="one setting, one seed, 4 trials of 8 steps")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.settings, args.seeds, args.trials, args.steps, args.refit_every = "digits_scratch", "0", 4, 8, 2
    names = args.settings.split(",")
    for name in names:
        if name not in SETTINGS:
            p.error(f"--settings: {name!r} is not one of {sorted(SETTINGS)}")
    seeds = parse_seeds(args.seeds)
    results = [run_setting(n, seeds, args.trials, args.steps, args.refit_every, args.text_package, args.timeout,
                           args.refit_max_share, args.warm_set, args.both_set, args.workers, args.refit_in)
               for n in names]
    rows = [{"setting": r["setting"], "reached": r["summary"]["reached"],
             "ratio": fmt_mean_se((r["summary"]["ratio_mean"], r["summary"]["ratio_se"]), ".2f"),
             "free": fmt_mean_se(r["summary"]["ratio_refits_free"], ".2f"),
             "promoted": f"{r['summary']['promoted']}/{r['summary']['refits']}", "grew": r["summary"]["gain_grew"],
             "cold": fmt_mean_se(r["summary"]["cold_best"]), "warm": fmt_mean_se(r["summary"]["warm_best"]),
             "equal": fmt_mean_se(r["summary"]["warm_best_at_cold_end"]), "ahead": r["summary"]["ahead_at_cold_end"],
             "cold_s": fmt_mean_se(r["summary"]["cold_seconds"], ".0f"), "warm_s": fmt_mean_se(r["summary"]["warm_seconds"], ".0f")}
            for r in results]
    print(table(rows, [("setting", "setting"), ("reached", "warm reached target"), ("ratio", "time warm/cold"),
                       ("free", "same, refits' seconds taken off"),
                       ("promoted", "refits promoted"), ("grew", "gain grew first->last known"), ("cold", "cold best"),
                       ("warm", "warm best"), ("equal", "warm best at cold's end"), ("ahead", "warm lower then"),
                       ("cold_s", "cold s"), ("warm_s", "warm s")]))
    payload = {"bench": "closed_loop", "trials": args.trials, "steps": args.steps, "refit_every": args.refit_every,
               "workers": args.workers, "refit_in": args.refit_in,
               "refit_max_share": args.refit_max_share, "set": args.both_set, "warm_set": args.warm_set,
               "command": command_line(__file__, argv),
               "results": results}
    write_json(args.out, "closed_loop", payload)
    return payload


if __name__ == "__main__":
    main()
