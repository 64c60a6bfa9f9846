"""Warm-started search vs the same search from random init: time and trials to a target loss.

Two studies with the same sampler seed, budget and training settings run one after the other in
fresh processes (one worker each, same thread count):

* warm: every trial starts from the hypernet (control_fraction=0), refits included in the wall
  time (they run between trials, as in a real search);
* cold: every trial starts from random init (control_fraction=1, no refits) — the baseline,
  measured in the same run.

Target = a quantile (default: the median) of the cold study's final val losses, so "reaching the
target" means finding a model as good as a typical random-init trial. For each study we report
the trials and seconds until the best-so-far val loss first reaches the target, the best loss,
and the mean loss at step 0 (what the warm start buys before any training).

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
            f"hypernet.checkpoint={args.checkpoint}", f"device={args.device}",
            f"storage=sqlite:///{tmp}/{arm}.db", f"artifacts_dir={tmp}/{arm}-artifacts"]


def worker(overrides: list[str]) -> dict:
    """One study in this process; returns per-trial (value, loss_step0, finished_at) and refit costs."""
    from optuna.trial import TrialState

    from nas.config import compose
    from nas.study import open_session, run_trials
    from nas.versions import list_versions

    cfg = compose(overrides)
    session = open_session(cfg, create=True)
    t0 = time.time()
    run_trials(session)
    wall = time.time() - t0
    trials = sorted(session.study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.datetime_complete)
    versions = list_versions(session.engine, cfg.study_name)
    return {
        "wall_s": wall,
        "trials": [{"number": t.number, "value": t.value, "loss_step0": t.user_attrs.get("loss_step0"),
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
    p.add_argument("--quantile", type=float, default=0.5, help="target = this quantile of the cold final losses")
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
    k = min(len(cold_values) - 1, max(0, round(args.quantile * (len(cold_values) - 1))))
    target = cold_values[k]
    rows = []
    for arm in ("warm", "cold"):
        r = results[arm]
        n, secs = _to_target(r, target)
        step0 = [t["loss_step0"] for t in r["trials"] if t["loss_step0"] is not None]
        rows.append({"arm": arm, "trials_to_target": n, "seconds_to_target": secs,
                     "best_val_loss": min(t["value"] for t in r["trials"]),
                     "median_val_loss": statistics.median(t["value"] for t in r["trials"]),
                     "mean_loss_step0": statistics.fmean(step0) if step0 else None,
                     "completed": len(r["trials"]), "wall_s": r["wall_s"], "refits": r["refits"],
                     "refit_s": r["refit_s"], "promoted": r["promoted"]})
    warm, cold = rows
    speedup = (cold["seconds_to_target"] / warm["seconds_to_target"]
               if warm["seconds_to_target"] and cold["seconds_to_target"] else None)
    payload = {"space": args.space, "data": args.data, "trials": args.trials, "steps": args.steps,
               "sampler": args.sampler, "seed": args.seed, "target_val_loss": target, "quantile": args.quantile,
               "hypernet_v0": results["warm"]["hypernet_v0"], "time_to_target_speedup": speedup,
               "arms": rows}
    human = table(rows, [("arm", "arm"), ("trials_to_target", "trials->target"),
                         ("seconds_to_target", "s->target"), ("best_val_loss", "best"),
                         ("median_val_loss", "median"), ("mean_loss_step0", "loss@step0"),
                         ("completed", "done"), ("wall_s", "wall s"), ("refits", "refits"),
                         ("refit_s", "refit s"), ("promoted", "promoted")])
    human += (f"\n\ntarget val_loss {target:.4f} = q{args.quantile:g} of the cold study's final losses; "
              f"hypernet v0: {results['warm']['hypernet_v0']}; warm time-to-target speedup: "
              + (f"{speedup:.2f}x" if speedup else "n/a"))
    emit("search", payload, human)


if __name__ == "__main__":
    main()
