"""Warm-started search vs the same search from random init: time and trials to a target loss.

Two studies with the same sampler seed, budget and training settings run one after the other in
fresh processes (one worker each, same thread count):

* warm: every trial starts from the hypernet (control_fraction=0), refits included in the wall
  time (they run between trials, as in a real search); its startup architectures are the best of
  `--screen` candidates scored by the hypernet (nas/screen.py; `--screen 0`: random ones);
* cold: every trial starts from random init (control_fraction=1, no refits) — the baseline,
  measured in the same run.

Targets = quantiles of the cold study's final val losses. The headline is q0, the cold study's
BEST loss: "how long until the warm study finds a model as good as the best one the cold study
found in its whole budget" (a target the first cold trial does not already meet). q0.25 and q0.5
(a typical random-init trial) are reported too. For each study and target we report the trials
and seconds (from the study's start: opening it, screening and refits included) until the
best-so-far val loss first reaches the target, plus the best and median loss and the mean loss at step 0 (what the warm
start buys before any training). Speed-up = cold seconds / warm seconds; the issue's target is
warm <= 0.5x cold, i.e. speed-up >= 2.

    python bench/bench_search.py                       # ViT on digits, 16 trials per study
    python bench/bench_search.py --trials 8 --steps 60 # quicker
    python bench/bench_search.py --space gpt2 --data pytext
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, run_worker, table  # noqa: E402


def _overrides(args, tmp: Path, arm: str) -> list[str]:
    control = "1.0" if arm == "cold" else "0.0"
    return [f"space={args.space}", f"data={args.data}", f"study_name=bench-{arm}", f"n_trials={args.trials}",
            "workers=1", f"seed={args.seed}", f"study.control_fraction={control}", f"study.steps={args.steps}",
            f"study.eval_every={max(1, args.steps // 3)}", f"study.sampler={args.sampler}", "study.pruner=none",
            f"study.n_startup_trials={min(4, args.trials)}", f"hypernet.refit_every={args.refit_every if arm == 'warm' else 0}",
            f"hypernet.checkpoint={args.checkpoint}", f"hypernet.warm_strength={args.warm_strength}",
            f"hypernet.screen_candidates={args.screen}",
            f"device={args.device}",
            f"storage=sqlite:///{tmp}/{arm}.db", f"artifacts_dir={tmp}/{arm}-artifacts"]


def worker(overrides: list[str]) -> dict:
    """One study in this process; returns per-trial (value, loss_step0, finished_at) and refit costs."""
    from optuna.trial import TrialState

    from nas import attrs
    from nas.config import compose
    from nas.study import open_session, run_trials
    from nas.versions import list_versions

    cfg = compose(overrides)
    t0 = time.time()  # before open_session: the warm arm's architecture screening is part of its cost
    session = open_session(cfg, create=True)
    setup = time.time() - t0
    run_trials(session)
    wall = time.time() - t0
    trials = sorted(session.study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.datetime_complete)
    versions = list_versions(session.storage.engine, cfg.study_name)
    return {
        "wall_s": wall, "setup_s": setup,
        "trials": [{"number": t.number, "value": t.value, "loss_step0": t.user_attrs.get(attrs.LOSS_STEP0),
                    "t": t.datetime_complete.timestamp() - t0} for t in trials],
        "refits": len(versions) - 1,
        "refit_s": sum(v.seconds for v in versions[1:]),
        "promoted": sum(v.promoted for v in versions[1:]),
        "hypernet_v0": versions[0].note,
    }


def _to_target(result: dict, target: float) -> tuple[int | None, float | None]:
    best = float("inf")
    for i, t in enumerate(result["trials"], start=1):
        best = min(best, t["value"])
        if best <= target:
            return i, t["t"]
    return None, None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="vit")
    p.add_argument("--data", default="digits")
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--sampler", default="tpe")
    p.add_argument("--refit-every", type=int, default=6)
    p.add_argument("--checkpoint", default="auto", help="hypernet.checkpoint: auto | none | path")
    p.add_argument("--warm-strength", type=float, default=0.5, help="hypernet.warm_strength (the study default: 0.5)")
    p.add_argument("--screen", type=int, default=16,
                   help="hypernet.screen_candidates: the warm study's startup architectures are the best of N "
                        "scored by the hypernet (0: random, as the cold study)")
    p.add_argument("--quantiles", default="0,0.25,0.5",
                   help="targets = these quantiles of the cold final losses; the first is the headline")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--worker", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker is not None:
        print(json.dumps(worker(args.worker)))
        return

    script = Path(__file__).resolve()
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        results = {arm: run_worker(script, ["--worker", *_overrides(args, Path(tmp), arm)], threads=args.threads)
                   for arm in ("cold", "warm")}
    cold_values = sorted(t["value"] for t in results["cold"]["trials"])
    if not cold_values or not results["warm"]["trials"]:
        raise SystemExit("a study completed no trial; nothing to compare")
    quantiles = [float(q) for q in args.quantiles.split(",")]
    if not quantiles or any(not 0 <= q <= 1 for q in quantiles):
        raise SystemExit(f"--quantiles: comma-separated numbers in [0, 1], got {args.quantiles!r}")
    targets = []
    for q in quantiles:
        value = cold_values[min(len(cold_values) - 1, max(0, round(q * (len(cold_values) - 1))))]
        reach = {arm: _to_target(results[arm], value) for arm in ("warm", "cold")}
        (wn, ws), (cn, cs) = reach["warm"], reach["cold"]
        targets.append({"quantile": q, "target_val_loss": value, "warm_trials": wn, "warm_s": ws,
                        "cold_trials": cn, "cold_s": cs, "speedup": cs / ws if ws and cs else None,
                        "ok": bool(ws and cs and ws <= 0.5 * cs)})
    rows = []
    for arm in ("warm", "cold"):
        r = results[arm]
        step0 = [t["loss_step0"] for t in r["trials"] if t["loss_step0"] is not None]
        rows.append({"arm": arm, "best_val_loss": min(t["value"] for t in r["trials"]),
                     "median_val_loss": statistics.median(t["value"] for t in r["trials"]),
                     "mean_loss_step0": statistics.fmean(step0) if step0 else None,
                     "completed": len(r["trials"]), "wall_s": r["wall_s"], "setup_s": r["setup_s"], "refits": r["refits"],
                     "refit_s": r["refit_s"], "promoted": r["promoted"]})
    headline = targets[0]
    payload = {"space": args.space, "data": args.data, "trials": args.trials, "steps": args.steps,
               "sampler": args.sampler, "seed": args.seed, "warm_strength": args.warm_strength, "screen": args.screen, "hypernet_v0": results["warm"]["hypernet_v0"],
               "time_to_target_speedup": headline["speedup"], "target_val_loss": headline["target_val_loss"],
               "targets": targets, "arms": rows}
    human = table(rows, [("arm", "arm"), ("best_val_loss", "best"), ("median_val_loss", "median"),
                         ("mean_loss_step0", "loss@step0"), ("completed", "done"), ("wall_s", "wall s"), ("setup_s", "of which setup s"),
                         ("refits", "refits"), ("refit_s", "refit s"), ("promoted", "promoted")])
    human += "\n\n" + table(targets, [("quantile", "cold quantile"), ("target_val_loss", "target"),
                                      ("warm_trials", "warm trials"), ("warm_s", "warm s"),
                                      ("cold_trials", "cold trials"), ("cold_s", "cold s"),
                                      ("speedup", "speed-up"), ("ok", "warm <= 0.5x cold")])
    human += (f"\n\nseconds from each study's start (opening it included: data, hypernet v0, screening), refits "
              f"included; hypernet v0: {results['warm']['hypernet_v0']}, warm strength {args.warm_strength}, "
              f"screened startup architectures: best of {args.screen}")
    emit("search", payload, human)


if __name__ == "__main__":
    main()
