"""Helpers shared by the bench scripts: memory probes, subprocess workers, table printing."""
from __future__ import annotations

import datetime as dt
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

ROOT = Path(__file__).resolve().parent.parent


def proc_status_kb(field: str) -> int:
    """A field of /proc/self/status in KiB (VmRSS = now, VmHWM = peak resident set)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def rss_mb() -> float:
    return proc_status_kb("VmRSS") / 1024


def peak_rss_mb() -> float:
    return proc_status_kb("VmHWM") / 1024


def run_worker(script: Path, args: list[str], threads: int, timeout: float = 1800) -> dict[str, Any]:
    """Run `script --worker ...` in a fresh interpreter (so peak RSS is its own); parse its last JSON line."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_search(overrides: list[str], tmp: Path, timeout: float, workers: int = 1) -> dict[str, Any]:
    """One `logah-nas search` (`workers` processes, 1 thread each) in `tmp`; the study's trials, refits
    and hypernet versions on the search's clock (seconds from its start)."""
    import optuna
    from optuna.trial import TrialState

    from nas.gain import gain_per_version
    from nas.versions import list_versions

    storage = f"sqlite:///{tmp}/study.db"
    args = [*overrides, f"storage={storage}", f"artifacts_dir={tmp}/artifacts", f"export_dir={tmp}/exports",
            f"workers={workers}", "study_name=bench"]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    start = dt.datetime.now()
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "nas", "search", *args], capture_output=True, text=True, env=env,
                          cwd=tmp, timeout=timeout)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"search {overrides} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    study = optuna.load_study(study_name="bench", storage=storage)
    trials = study.get_trials(deepcopy=False)
    done = sorted((t for t in trials if t.state == TrialState.COMPLETE and t.value is not None),
                  key=lambda t: t.datetime_complete)
    curve, best = [], math.inf
    for t in done:  # (seconds from the search start, best val loss so far)
        best = min(best, t.value)
        curve.append(((t.datetime_complete - start).total_seconds(), best))
    versions = list_versions(storage, "bench")
    gains = [{"version": g.version, "promoted": g.promoted, "refit_seconds": g.refit_seconds,
              "warm_trials": g.warm_trials, "gain": g.gain, "step0_gain": g.step0_gain, "note": g.note}
             for g in gain_per_version(trials, versions)]
    # (seconds from the search start when the refit ended, its seconds), refits only
    refit_spans = [((v.created_at.astimezone().replace(tzinfo=None) - start).total_seconds(), v.seconds)
                   for v in versions if v.version >= 1]
    finished = [t for t in trials if t.datetime_start is not None and t.datetime_complete is not None]
    spans = [{"number": t.number, "state": t.state.name, "params": t.params,
              "start": (t.datetime_start - start).total_seconds(), "end": (t.datetime_complete - start).total_seconds()}
             for t in finished]
    return {"trial_spans": spans, "seconds": seconds, "curve": curve, "best": best, "refits": len(versions) - 1, "refit_spans": refit_spans,
            # where the study's time went: trials (all workers together), how many were pruned
            "trial_seconds": sum((t.datetime_complete - t.datetime_start).total_seconds() for t in finished),
            "pruned": sum(t.state == TrialState.PRUNED for t in trials),
            "promoted": sum(v.promoted for v in versions[1:]), "v0": versions[0].note if versions else None,
            "gain_per_version": gains}


def mean_se(values: Iterable[float]) -> tuple[float, float]:
    """Mean and standard error of the mean over seeds (nan where undefined: no value, one value)."""
    values = list(values)
    if not values:
        return math.nan, math.nan
    if len(values) == 1:
        return values[0], math.nan
    return statistics.fmean(values), statistics.stdev(values) / math.sqrt(len(values))


def fmt_mean_se(pair: tuple[float, float], spec: str = ".4f") -> str:
    """'mean ± se' for tables ('-' without a mean, no ± without a standard error)."""
    mean, se = pair
    return "-" if math.isnan(mean) else f"{mean:{spec}}" + ("" if math.isnan(se) else f" ± {se:{spec}}")


def table(rows: Iterable[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    """A plain-text table; `columns` = [(key, header)]; floats get 3 significant decimals."""
    rows = list(rows)

    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return "PASS" if v else "FAIL"
        if isinstance(v, float):
            return f"{v:,.3f}" if abs(v) < 100 else f"{v:,.1f}"
        if isinstance(v, int):
            return f"{v:,}"
        return "-" if v is None else str(v)

    cells = [[header for _, header in columns]] + [[fmt(r.get(k)) for k, _ in columns] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def parse_seeds(text: str) -> list[int]:
    """The training seeds of a `--seeds` flag ('0,1,2'); a bad value exits naming the flag."""
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        raise SystemExit(f"--seeds: comma-separated integers, got {text!r}") from None
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"--seeds: distinct integers, got {text!r}")
    return seeds


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """The command that reproduces a bench run: `python bench/<script's file name> <its arguments>`
    (`argv` None: this process's own)."""
    return " ".join(["python", f"bench/{Path(script).name}", *(argv if argv is not None else sys.argv[1:])])


def write_json(path: Path | None, name: str, payload: dict[str, Any], *, sort_keys: bool = True) -> None:
    """A bench's --out file (nothing when `path` is None), named as `emit` names its line; written
    atomically so an interrupted run leaves the previous file whole. `sort_keys=False` keeps run order."""
    if path is None:
        return
    from search_spaces.files import atomic_write_text

    atomic_write_text(path, json.dumps({"bench": name, **payload}, indent=1, sort_keys=sort_keys, default=str) + "\n")


def emit(name: str, payload: dict[str, Any], human: str) -> None:
    """One JSON line (machine-readable, first) then the human table."""
    print(json.dumps({"bench": name, **payload}, sort_keys=True))
    print()
    print(human)


def shipped_checkpoint(space, data: str) -> Path:
    """The shipped hypernet for `space`, found the way studies find it (`hypernet.pretrained_path`)."""
    from hypernet.checkpoint import pretrained_path

    path = pretrained_path(space.signature())
    if path is None:
        raise SystemExit(f"no shipped checkpoint for {space.signature()['space']} x {data} in hypernet/pretrained/")
    return path


def describe_arch(config) -> str:
    """A short name of an architecture for tables: L<depth> d<width> h<heads> ..."""
    if config.space == "vit":
        return f"L{config.depth} d{config.width} h{config.heads} p{config.patch_size} m{config.mlp_ratio:g}"
    return f"L{config.depth} d{config.width} h{config.heads} m{config.mlp_ratio:g} tied={int(config.tied_embeddings)}"
