"""The evaluation protocol's table (issue 18, ../shared/reference/EVALUATION.md): warm starts against
the strongest cheap baselines, on held-out shape classes, at several budgets, over seeds.

    python bench/protocol.py [--spaces vit,gpt2] [--budgets 150,study,long] [--seeds 0,1,2]
                             [--archs-per-class N] [--lr-grid 3e-4,1e-3,3e-3] [--pool 3] [--out FILE.json]
    python bench/protocol.py --quick          # smoke run: budgets 4,8, one seed, one arch per class
    python bench/protocol.py --cache DIR [--shard I/N] ...   # resumable; N processes share the work
    python bench/protocol.py --spaces vit --archs 1x64,3x128 ...   # named architectures (a diagnostic)
    python bench/protocol.py --spaces vit --draw 2 --draw-seed 0 ...   # another draw of unseen models per class
    python bench/protocol.py --spaces vit --checkpoint CAND.safetensors ...   # a candidate, not the shipped one

With `--cache DIR` every finished training run (arm, lr, seed, budget, architecture, under one
checkpoint, data set and TrainConfig) and every trained pool member is kept in DIR, so a protocol
too long for one sitting is run in stages: rerun the same command and it trains only what is
missing. `--shard I/N` runs the I-th of N interleaved slices of the architectures (run N processes,
one per core, on one cache); the same command without `--shard` then prints the whole table from
the cache.

For each space x data pair (vit x digits, gpt2 x pytext; the shipped checkpoint of that space) and
each held-out architecture (`nas.unseen.unseen_shape_classes`: off-grid widths, 2x / 4x the widest
width, 2x the deepest depth, an unseen MLP ratio), every arm is trained with `nas.train_loop.train`
under the same TrainConfig, the same seeds (init draw and batch order) and the same batches:

- `random_gpt2`: the models' own GPT-2 scheme (`build_model`, N(0, 0.02); `RandomInit`),
- `random_pytorch`: PyTorch's default constructors' init (`PyTorchInit`),
  both with the lr picked per architecture and budget over `--lr-grid` (lowest mean final val loss);
  `random` is the better of the two (lower mean final val loss), the random-init baseline;
- `mimetic`: closed-form attention init (`MimeticInit`),
- `inherit`: weight selection from the most similar architecture of a pool of the space's own
  architectures trained the same way at the study budget, at `--pool-lr` whatever lr the arms train at
  (donor = `nas.init_strategies.distance`, ties broken by the donor's val loss, as `InheritInit` picks a
  completed trial; cropping by `search_spaces.inits.inherit_weights`, what `InheritInit` calls),
- `hypernet_study`: the hypernet at the study's `hypernet.warm_strength` (nas/conf), as `HypernetInit`,
- `hypernet_full`: the hypernet at strength 1.0.
mimetic, inherit and the hypernet arms train at `--lr` (add them to `--tune` to tune their lr too).

Budgets: `150`, `study` (the default study's `study.steps`) and `long` (`--long-steps`, 1,500 for both
spaces; on digits the val loss plateaus well before, on pytext it is a longer budget, not a plateau).
Every budget is its own run (the cosine schedule depends on the step count). Reported per arm and
budget: mean +- standard error over seeds of the step-0 and final val loss (and final test loss:
lr is picked and arms are compared on val, test is reported beside); the steps each hypernet arm's
mean curve needs to reach each baseline's final loss (None: never); the best baseline per
architecture; win / level / loss counts per shape class (win: hypernet final <= best baseline final;
level: the difference is within one combined standard error); beside every gain the hypernet's
meta-training CPU-hours (checkpoint metadata) and the break-even: trials after which the warm start
has paid back its pretraining = pretraining seconds / seconds saved per trial at the study budget
(baseline training seconds x (1 - steps to reach / budget) - prediction seconds); "never" when
nothing is saved. The pretraining seconds come from the checkpoint metadata (the last stage records
its seconds, earlier stages only their steps: estimated at the last stage's rate) or `--pretrain-hours`.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import describe_arch, emit, parse_seeds, shipped_checkpoint, table, write_json  # noqa: E402

CASES = (("vit", "digits"), ("gpt2", "pytext"))
DATA = dict(CASES)  # each space's embedded data
RANDOM_ARMS = ("random_gpt2", "random_pytorch")
BASELINES = ("random", "mimetic", "inherit")  # `random` = the better of RANDOM_ARMS
HYPERNET_ARMS = ("hypernet_study", "hypernet_full")
ARMS = (*RANDOM_ARMS, "mimetic", "inherit", *HYPERNET_ARMS)
LONG_STEPS = 1500
QUICK = {"budgets": "4,8", "seeds": "0", "archs_per_class": 1, "lr_grid": "1e-3", "pool": 1, "eval_every": 4,
         "eval_batches": 1, "batch_size": 8}


def hypernet_strengths(study_strength: float) -> dict[str, float]:
    """The warm strength of each hypernet arm: the study's for `hypernet_study`, 1 for `hypernet_full`."""
    return {"hypernet_study": study_strength, "hypernet_full": 1.0}


# ---------------------------------------------------------------- the run cache

class RunCache:
    """Finished runs on disk, one file per run, named by a digest of everything that decides the
    run's outcome (`fields`), so stages and shards resume and share work; `root=None` keeps nothing.
    Files are written atomically: a killed run leaves no half file, only a run to redo."""

    def __init__(self, root: Path | None, context: dict[str, Any]):
        self.root, self.context = (Path(root) if root is not None else None), dict(context)
        self.hits = self.misses = 0

    def _path(self, kind: str, fields: dict[str, Any], suffix: str) -> Path:
        import hashlib

        blob = json.dumps({"kind": kind, **self.context, **fields}, sort_keys=True, default=str)
        return self.root / kind / (hashlib.sha256(blob.encode()).hexdigest()[:24] + suffix)

    def get(self, kind: str, fields: dict[str, Any]) -> dict[str, Any] | None:
        if self.root is None:
            return None
        path = self._path(kind, fields, ".json")
        if not path.exists():
            self.misses += 1
            return None
        self.hits += 1
        return json.loads(path.read_text())["result"]

    def put(self, kind: str, fields: dict[str, Any], result: dict[str, Any]) -> None:
        if self.root is not None:
            from search_spaces.files import atomic_write_text

            atomic_write_text(self._path(kind, fields, ".json"),
                              json.dumps({"fields": _json_safe(fields), "context": self.context,
                                          "result": _json_safe(result)}, sort_keys=True))

    def weights_path(self, kind: str, fields: dict[str, Any]) -> Path | None:
        return None if self.root is None else self._path(kind, fields, ".safetensors")


def parse_shard(text: str | None) -> tuple[int, int]:
    """'I/N' -> (I, N) with 0 <= I < N; None -> (0, 1), the whole protocol."""
    if not text:
        return 0, 1
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise SystemExit(f"--shard: I/N with integers 0 <= I < N, got {text!r}") from None
    if not 0 <= i < n:
        raise SystemExit(f"--shard: I/N with 0 <= I < N, got {text!r}")
    return i, n


# ---------------------------------------------------------------- pure helpers (unit-tested)

def mean_se(values: Iterable[float]) -> dict[str, Any]:
    """Mean and standard error (sample sd / sqrt(n)) of the finite values; `n` finite values used,
    `diverged` the non-finite ones left out. mean None when none is finite, se None when n < 2."""
    values = list(values)
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    n = len(finite)
    mean = statistics.fmean(finite) if n else None
    se = statistics.stdev(finite) / math.sqrt(n) if n >= 2 else None
    return {"mean": mean, "se": se, "n": n, "diverged": len(values) - n}


def mean_curve(histories: Sequence[Sequence[dict]], key: str = "val_loss") -> list[tuple[int, float]]:
    """(step, mean of `key` over the runs) at every eval step all runs reached (a diverged run's
    history stops early, so the mean curve stops there too)."""
    if not histories:
        return []
    by_step = [{h["step"]: h[key] for h in hist} for hist in histories]
    steps = sorted(set.intersection(*(set(d) for d in by_step)))
    return [(s, statistics.fmean(d[s] for d in by_step)) for s in steps]


def steps_to_reach(curve: Sequence[tuple[int, float]], target: float | None) -> int | None:
    """The first eval step whose loss is <= `target`; None when never (or no target)."""
    if target is None or not math.isfinite(target):
        return None
    return next((step for step, loss in curve if math.isfinite(loss) and loss <= target), None)


def pick_lr(finals_by_lr: dict[float, Sequence[float]]) -> float:
    """The lr with the lowest mean final val loss over seeds; a diverged seed (non-finite) counts as
    +inf, so an lr that diverges on any seed loses to one that never does. Ties: the smaller lr."""
    def score(lr: float) -> float:
        losses = list(finals_by_lr[lr])
        if not losses or any(v is None or not math.isfinite(v) for v in losses):
            return math.inf
        return statistics.fmean(losses)

    return min(sorted(finals_by_lr), key=score)


def lr_edge(picked: float, grid: Sequence[float]) -> str | None:
    """'top' / 'bottom' when the picked lr is the largest / smallest of a grid of two or more (a wider
    grid may lower that arm's loss: the table marks it), else None."""
    if len(set(grid)) < 2:
        return None
    return "top" if picked == max(grid) else "bottom" if picked == min(grid) else None


def seconds_saved(baseline_seconds: float, budget: int, reach_step: int | None, predict_seconds: float) -> float:
    """Training seconds a warm start saves per trial: it stops at `reach_step` where the baseline
    needed the whole `budget` (time scales with steps), minus the prediction's cost; 0 when never reached."""
    if reach_step is None:
        return 0.0
    return baseline_seconds * (1.0 - reach_step / budget) - predict_seconds


def break_even(pretrain_seconds: float, saved_per_trial: float) -> float | None:
    """Trials after which the pretraining has paid back; None ("never") when nothing is saved."""
    if saved_per_trial is None or saved_per_trial <= 0:
        return None
    return pretrain_seconds / saved_per_trial


def verdict(hn: dict[str, Any], base: dict[str, Any]) -> str | None:
    """'win' (hypernet mean final <= baseline's) or 'loss', and 'level' beside either when the
    difference is within one combined standard error. None when either mean is missing."""
    if hn["mean"] is None or base["mean"] is None:
        return None
    outcome = "win" if hn["mean"] <= base["mean"] else "loss"
    if hn["se"] is not None and base["se"] is not None:
        if abs(hn["mean"] - base["mean"]) <= math.hypot(hn["se"], base["se"]):
            outcome += "/level"
    return outcome


def pretrain_cost(meta: dict[str, Any], override_hours: float | None = None) -> dict[str, Any]:
    """The hypernet's meta-training cost from its checkpoint metadata.

    Checkpoints list their `stages` (`nas.pretrain`: each stage's command, steps and CPU seconds);
    stages written before CPU time was recorded have only their steps (older files: `seconds` of
    the last stage, steps of its `init_checkpoint` chain). Unrecorded stages are estimated at the
    recorded stages' seconds per step (an estimate: stages with lookahead cost more per step).
    `override_hours` replaces all of it."""
    if meta.get("stages"):
        stages = [{"steps": s.get("steps"), "seconds": s.get("cpu_seconds"), "command": s.get("command")}
                  for s in meta["stages"]]
    else:
        stages = [{"steps": meta.get("steps"), "seconds": meta.get("seconds"), "command": meta.get("command")}]
        node = meta.get("init_checkpoint")
        while node:
            stages.append({"steps": node.get("steps"), "seconds": node.get("seconds"),
                           "command": node.get("command")})
            node = node.get("parent")
    timed = [s for s in stages if s["seconds"] and s["steps"]]
    per_step = sum(s["seconds"] for s in timed) / sum(s["steps"] for s in timed) if timed else None
    recorded = sum(s["seconds"] for s in stages if s["seconds"])
    estimated = sum(s["steps"] * per_step for s in stages if not s["seconds"] and s["steps"] and per_step)
    seconds = recorded + estimated
    source = ("metadata" if not estimated else
              "metadata: recorded stages, the others estimated from their steps (likely an underestimate)")
    if override_hours is not None:
        seconds, source = override_hours * 3600.0, "--pretrain-hours"
    return {"seconds": seconds, "cpu_hours": seconds / 3600.0, "stages": len(stages),
            "steps": sum(s["steps"] or 0 for s in stages), "recorded_seconds": recorded,
            "estimated_seconds": estimated, "source": source, "device": meta.get("device")}


def parse_budgets(text: str, study_steps: int, long_steps: int) -> list[tuple[str, int]]:
    """'150,study,long' -> [('150', 150), ('study', 400), ('long', 1500)] (labels kept, steps resolved)."""
    out = []
    for item in text.split(","):
        item = item.strip()
        steps = {"study": study_steps, "long": long_steps}.get(item)
        if steps is None:
            try:
                steps = int(item)
            except ValueError:
                raise SystemExit(f"--budgets: integers, 'study' or 'long', got {item!r}") from None
        if steps < 1:
            raise SystemExit(f"--budgets: positive step counts, got {item!r}")
        if all(s != steps for _, s in out):
            out.append((item, steps))
    return out


def default_eval_every(steps: int, evals: int = 30) -> int:
    """About `evals` evals per run (the resolution of 'steps to reach')."""
    return max(1, math.ceil(steps / evals))


# ---------------------------------------------------------------- the runs

def study_defaults(space_name: str, data: str) -> dict[str, Any]:
    """What the default study config (nas/conf) trains with: steps, warm strength, warmup, grad clip."""
    from nas.config.composition import compose

    cfg = compose([f"space={space_name}", f"data={data}"])
    return {"steps": cfg.study.steps, "warm_strength": cfg.hypernet.warm_strength,
            "warmup_steps": cfg.study.warmup_steps, "grad_clip": cfg.study.grad_clip}


def base_train_config(study: dict[str, Any], *, lr: float, batch_size: int, weight_decay: float,
                      eval_batches: int):
    """The TrainConfig every arm shares (the study's warmup and clipping); `budget_config` sets the steps."""
    from nas.train_loop import TrainConfig

    return TrainConfig(steps=1, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                       warmup_steps=study["warmup_steps"], grad_clip=study["grad_clip"], eval_every=1,
                       eval_batches=eval_batches, seed=0, device="cpu")


def budget_config(base_cfg, steps: int, eval_every: int | None = None):
    """`base_cfg` for a run of `steps` steps: warmup at most a tenth of them, ~30 evals unless `eval_every`."""
    return replace(base_cfg, steps=steps, eval_every=eval_every or default_eval_every(steps),
                   warmup_steps=min(base_cfg.warmup_steps, max(1, steps // 10)))


@dataclass(frozen=True)
class StudyTraining:
    """What a diagnostic bench trains with, as a study of `space` would: the data, the space, the
    hypernet that predicts, the warm strength and the arms' TrainConfig for `steps` steps."""
    dataset: Any
    space: Any
    hn: Any
    strength: float
    steps: int
    cfg: Any


def add_study_training_args(p: argparse.ArgumentParser) -> None:
    """The flags of a diagnostic bench that trains starts as a study would (read by `study_training_from`),
    and its --archs, --out and --markdown."""
    p.add_argument("--space", default="vit", choices=sorted(DATA))
    p.add_argument("--archs", required=True, metavar="DEPTHxWIDTH,...", help="built as nas.unseen.arch_at builds them")
    p.add_argument("--checkpoint", type=Path, default=None, help="the predicting hypernet (default: the shipped one)")
    p.add_argument("--strength", type=float, default=None, help="of the warm start, in (0, 1] (default: the study's)")
    p.add_argument("--steps", default="study", help="training steps per start, or 'study' (the study's budget)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--out", type=Path, default=None, help="also write the JSON to this file")
    p.add_argument("--markdown", action="store_true", help="also print the markdown table RESULTS.md quotes")


def study_training_from(args: argparse.Namespace) -> StudyTraining:
    """`study_training` from the flags of `add_study_training_args`."""
    return study_training(args.space, checkpoint=args.checkpoint, strength=args.strength, steps=args.steps,
                          lr=args.lr, batch_size=args.batch_size)


def study_training(space_name: str, *, checkpoint: Path | None, strength: float | None, steps: str, lr: float,
                   batch_size: int) -> StudyTraining:
    """The study's setup for `space_name` on its embedded data (`strength` None: the study's warm
    strength; `steps` 'study' or a positive integer); bad values exit naming the flag."""
    from hypernet.checkpoint import load_checkpoint
    from nas.data import load_dataset
    from search_spaces import get_space
    from warm_start_quality import default_eval_batches

    data = DATA[space_name]
    dataset = load_dataset(data)
    space = get_space(space_name, **dataset.space_options())
    study = study_defaults(space_name, data)
    strength = study["warm_strength"] if strength is None else strength
    if not 0.0 < strength <= 1.0:
        raise SystemExit(f"--strength: in (0, 1], got {strength}")
    n_steps = study["steps"] if steps == "study" else int(steps) if steps.isdigit() else 0
    if n_steps < 1:
        raise SystemExit(f"--steps: a positive integer or 'study', got {steps!r}")
    hn, _ = load_checkpoint(checkpoint or shipped_checkpoint(space, data), expected_signature=space.signature())
    cfg = budget_config(base_train_config(study, lr=lr, batch_size=batch_size, weight_decay=0.01,
                                          eval_batches=default_eval_batches(dataset, batch_size)), n_steps, n_steps)
    return StudyTraining(dataset, space, hn, strength, n_steps, cfg)


def _init_model(arm: str, config, seed: int, *, hn=None, strength: float = 1.0, donor=None) -> tuple[Any, float]:
    """A freshly built, seeded model initialised by `arm`; returns (model, init seconds beyond the build)."""
    from nas.init_strategies import MimeticInit, PyTorchInit, RandomInit
    from search_spaces import build_model
    from search_spaces.inits import inherit_weights

    model = build_model(config, seed=seed)  # every arm starts from the same seeded GPT-2-scheme model
    t0 = time.perf_counter()
    if arm == "random_gpt2":
        RandomInit().apply(model, config, seed)
    elif arm == "random_pytorch":
        PyTorchInit().apply(model, config, seed)
    elif arm == "mimetic":
        MimeticInit().apply(model, config, seed)
    elif arm == "inherit":
        inherit_weights(model, donor)  # InheritInit.apply's weight selection
    elif arm in HYPERNET_ARMS:
        hn.apply(model, strength=strength)  # HypernetInit.apply with the shipped checkpoint
    else:
        raise ValueError(arm)
    return model, time.perf_counter() - t0


def _run(model, dataset, cfg, test_batches: int | None) -> dict[str, Any]:
    from nas.train_loop import evaluate, train

    result = train(model, dataset, cfg)
    test = math.nan
    if result.status == "complete":
        context = getattr(model.config, "context", None) if dataset.kind == "text" else None
        test = evaluate(model, dataset, batch_size=cfg.eval_batch_size or cfg.batch_size, batches=test_batches,
                        context=context, device="cpu", split="test")["test_loss"]
    return {"step0": result.loss_step0, "final": result.val_loss, "test": test, "seconds": result.seconds,
            "status": result.status,
            "history": [{"step": h["step"], "val_loss": h["val_loss"]} for h in result.history]}


def train_pool(space, dataset, cfg, n: int, seed: int, cache: RunCache | None = None) -> list[dict[str, Any]]:
    """`n` distinct architectures of the space itself (`space.sample`, fixed seed), trained from the
    GPT-2 scheme at the study budget: the trials an `inherit` study would have completed."""
    from dataclasses import asdict

    from safetensors.torch import load_file, save
    from search_spaces import build_model
    from search_spaces.files import atomic_write_bytes

    cache = cache or RunCache(None, {})
    rng, configs = random.Random(seed), []
    for _ in range(100 * max(1, n)):
        if len(configs) == n:
            break
        c = space.sample(rng)
        if c not in configs:
            configs.append(c)
    pool = []
    for c in configs:
        fields = {"config": c.to_dict(), "train": asdict(replace(cfg, seed=seed))}
        hit, weights_path = cache.get("pool", fields), cache.weights_path("pool", fields)
        if hit is not None and weights_path is not None and weights_path.exists():
            val, weights = _nan(hit["val_loss"]), load_file(str(weights_path))
            print(f"#   pool {describe_arch(c)}: val {val:.3f} (cached)", file=sys.stderr)
        else:
            model = build_model(c, seed=seed)
            result = _run(model, dataset, replace(cfg, seed=seed), test_batches=1)
            val = result["final"]
            weights = {k: p.detach().clone() for k, p in model.named_parameters()}
            if weights_path is not None:  # the weights first: a result file promises them
                atomic_write_bytes(weights_path, save({k: w.contiguous() for k, w in weights.items()}))
                cache.put("pool", fields, {"val_loss": val, "seconds": result["seconds"]})
            print(f"#   pool {describe_arch(c)}: val {val:.3f} ({result['seconds']:.1f} s)", file=sys.stderr)
        pool.append({"config": c, "arch": describe_arch(c), "val_loss": val, "weights": weights, "key": fields})
    return pool


def _nan(value: float | None) -> float:
    """A cached number back to a float (JSON keeps NaN / inf as null)."""
    return math.nan if value is None else float(value)


def pick_donor(config, pool: list[dict[str, Any]]) -> dict[str, Any]:
    """The pool member InheritInit would pick: smallest `distance`, then lowest val loss."""
    from nas.init_strategies import distance

    def val(p):
        return p["val_loss"] if math.isfinite(p["val_loss"]) else math.inf

    return min(pool, key=lambda p: (distance(config, p["config"]), val(p)))


def _stat_arm(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"step0": mean_se(r["step0"] for r in runs), "final": mean_se(r["final"] for r in runs),
            "test": mean_se(r["test"] for r in runs), "seconds": statistics.fmean(r["seconds"] for r in runs),
            "per_seed_final": [r["final"] if math.isfinite(r["final"]) else None for r in runs],
            "curve": mean_curve([r["history"] for r in runs])}


@dataclass(frozen=True)
class Hypernet:
    """The hypernet the hypernet arms apply, and its checkpoint's sha256: what their cached runs are
    keyed by (a candidate shares the baselines' runs, not the shipped hypernet's)."""
    model: Any
    sha256: str | None = None


def _cached_run(cache: RunCache, arm: str, config, seed: int, cfg, dataset, test_batches, *, hypernet: Hypernet,
                strength: float, donor) -> tuple[dict[str, Any], float]:
    """One arm's run (result, init seconds), from the cache when it holds it."""
    from dataclasses import asdict

    fields = {"config": config.to_dict(), "arm": arm, "seed": seed, "train": asdict(cfg), "test_batches": test_batches,
              "strength": strength if arm in HYPERNET_ARMS else None,
              "checkpoint_sha256": hypernet.sha256 if arm in HYPERNET_ARMS else None,
              "donor": donor["key"] if arm == "inherit" and donor else None}
    hit = cache.get("run", fields)
    if hit is not None:
        run = hit["run"]
        for key in ("step0", "final", "test"):
            run[key] = _nan(run[key])
        run["history"] = [{"step": h["step"], "val_loss": _nan(h["val_loss"])} for h in run["history"]]
        return run, hit["init_seconds"]
    model, init_s = _init_model(arm, config, seed, hn=hypernet.model, strength=strength,
                                donor=donor["weights"] if donor else None)
    run = _run(model, dataset, cfg, test_batches)
    cache.put("run", fields, {"run": run, "init_seconds": init_s})
    return run, init_s


def run_arch(config, dataset, *, hypernet: Hypernet, strengths: dict[str, float], donor, budgets, seeds, lr_grid,
             lr, tune, base_cfg, eval_every, test_batches, cache: RunCache | None = None) -> dict[str, Any]:
    """Every arm at every budget for one architecture."""
    cache = cache or RunCache(None, {})
    out = {}
    for label, steps in budgets:
        cfg = budget_config(base_cfg, steps, eval_every)
        arms: dict[str, Any] = {}
        for arm in ARMS:
            grid = lr_grid if arm in tune else (lr,)
            by_lr, predict_s = {}, []
            for arm_lr in grid:
                runs = []
                for seed in seeds:
                    run, init_s = _cached_run(cache, arm, config, seed, replace(cfg, seed=seed, lr=arm_lr), dataset,
                                              test_batches, hypernet=hypernet, strength=strengths.get(arm, 1.0),
                                              donor=donor)
                    predict_s.append(init_s)
                    runs.append(run)
                by_lr[arm_lr] = runs
            best = pick_lr({k: [r["final"] for r in v] for k, v in by_lr.items()})
            arms[arm] = {"lr": best, "tuned": arm in tune, "init_seconds": statistics.fmean(predict_s),
                         "lr_finals": {str(k): mean_se(r["final"] for r in v)["mean"] for k, v in by_lr.items()},
                         **_stat_arm(by_lr[best])}
        rand = min(RANDOM_ARMS, key=lambda a: _key(arms[a]["final"]))
        arms["random"] = {**arms[rand], "scheme": rand}
        best_base = min(BASELINES, key=lambda a: _key(arms[a]["final"]))
        reach = {h: {b: steps_to_reach(arms[h]["curve"], arms[b]["final"]["mean"]) for b in (*BASELINES, *RANDOM_ARMS)}
                 for h in HYPERNET_ARMS}
        reach_best = {h: steps_to_reach(arms[h]["curve"], arms[best_base]["final"]["mean"]) for h in HYPERNET_ARMS}
        out[str(steps)] = {
            "label": label, "steps": steps, "eval_every": cfg.eval_every, "arms": arms,
            "best_baseline": best_base, "best_baseline_final": arms[best_base]["final"],
            "reach": reach, "reach_best_baseline": reach_best,
            "verdict": {h: verdict(arms[h]["final"], arms[best_base]["final"]) for h in HYPERNET_ARMS},
            # the same comparison on test (the best baseline and every lr still picked on val)
            "verdict_test": {h: verdict(arms[h]["test"], arms[best_base]["test"]) for h in HYPERNET_ARMS},
            "gain": {h: _gain(arms[h]["final"], arms[best_base]["final"]) for h in HYPERNET_ARMS},
        }
        print(f"#   {describe_arch(config)} @ {steps}: best baseline {best_base} "
              f"{_fmt(arms[best_base]['final'])}, hypernet {_fmt(arms['hypernet_study']['final'])} / "
              f"{_fmt(arms['hypernet_full']['final'])}", file=sys.stderr)
    return out


def _key(stat: dict[str, Any]) -> float:
    return stat["mean"] if stat["mean"] is not None else math.inf


def _gain(hn: dict[str, Any], base: dict[str, Any]) -> float | None:
    """Best baseline's mean final minus the hypernet's (> 0: the hypernet ends lower)."""
    if hn["mean"] is None or base["mean"] is None:
        return None
    return base["mean"] - hn["mean"]


def _budget(b: dict[str, Any]) -> str:
    return str(b["steps"]) if b["label"] == str(b["steps"]) else f"{b['label']}={b['steps']}"


def _fmt(stat: dict[str, Any]) -> str:
    if stat["mean"] is None:
        return "diverged"
    return f"{stat['mean']:.3f}" + (f"+-{stat['se']:.3f}" if stat["se"] is not None else "")


def named_classes(space, archs: Sequence[tuple[int, int]]) -> dict[str, list]:
    """`--archs` as classes: each (depth, width) built as the held-out classes are (`nas.unseen.arch_at`),
    under `seen_shape` when meta-training could have drawn its every parameter shape, else `named`."""
    from nas.unseen import arch_at, shares_shapes_with_space

    classes: dict[str, list] = {}
    for depth, width in archs:
        config = arch_at(space, depth, width)
        classes.setdefault("seen_shape" if shares_shapes_with_space(config, space) else "named", []).append(config)
    return classes


def parse_archs(text: str) -> tuple[tuple[int, int], ...]:
    """'1x64,3x128' -> ((1, 64), (3, 128)): DEPTHxWIDTH, both positive integers."""
    archs = []
    for item in (i.strip() for i in text.split(",") if i.strip()):
        parts = item.lower().split("x")
        if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
            raise SystemExit(f"--archs: DEPTHxWIDTH,... with positive integers (e.g. 1x64,3x128), got {item!r}")
        archs.append((int(parts[0]), int(parts[1])))
    if not archs:
        raise SystemExit("--archs: at least one DEPTHxWIDTH")
    return tuple(archs)


def run_space(space_name: str, data: str, args, budgets_text: str) -> dict[str, Any]:
    from hypernet.checkpoint import load_checkpoint, read_header
    from nas.data import load_dataset
    from nas.unseen import draw_unseen, unseen_shape_classes
    from search_spaces import build_model, get_space

    t_space = time.perf_counter()
    dataset = load_dataset(data)
    space = get_space(space_name, **dataset.space_options())
    path = args.checkpoint or shipped_checkpoint(space, data)
    hn, _ = load_checkpoint(path, expected_signature=space.signature())
    hn.eval()
    meta = read_header(path)["meta"]
    cost = pretrain_cost(meta, args.pretrain_hours.get(space_name))
    study = study_defaults(space_name, data)
    if args.warm_strength is not None:  # the hypernet_study arm at another strength than the study's
        study["warm_strength"] = args.warm_strength
    budgets = parse_budgets(budgets_text, study["steps"], args.long_steps)
    strengths = hypernet_strengths(study["warm_strength"])
    from warm_start_quality import default_eval_batches  # the same val batches as the warm-start bench

    eval_batches = args.eval_batches or default_eval_batches(dataset, args.batch_size)
    # test: as many batches as val (images without --eval-batches: the whole test split)
    test_batches = None if dataset.kind == "image" and not args.eval_batches else eval_batches
    base_cfg = base_train_config(study, lr=args.lr, batch_size=args.batch_size, weight_decay=args.weight_decay,
                                 eval_batches=eval_batches)
    print(f"# {space_name} x {data}: {path.name}, pretraining {cost['cpu_hours']:.2f} CPU-h, study budget "
          f"{study['steps']}, warm strength {study['warm_strength']}, budgets {budgets}", file=sys.stderr)
    from search_spaces.files import sha256_file

    hypernet = Hypernet(hn, sha256_file(path))
    cache = RunCache(args.cache, {"space": space_name, "data": data})
    pool_steps = study["steps"] if not args.quick else max(s for _, s in budgets)
    pool_cfg = budget_config(replace(base_cfg, lr=args.pool_lr), pool_steps, pool_steps)
    pool = train_pool(space, dataset, pool_cfg, args.pool, args.pool_seed, cache) if args.pool else []
    classes = (named_classes(space, args.archs) if args.archs else
               draw_unseen(space, args.draw, args.draw_seed) if args.draw else unseen_shape_classes(space))
    hn.apply(build_model(next(iter(classes.values()))[0]))  # imports torch_geometric before any prediction is timed
    wanted = args.classes or list(classes)
    for cls in wanted:
        if cls not in classes:
            raise SystemExit(f"--classes: one of {list(classes)}, got {cls!r}")
    shard, shards = args.shard
    todo = [(cls, config) for cls in wanted for config in classes[cls][:args.archs_per_class]][shard::shards]
    archs = []
    for cls, config in todo:
        donor = pick_donor(config, pool) if pool else None
        t0 = time.perf_counter()
        res = run_arch(config, dataset, hypernet=hypernet, strengths=strengths, donor=donor, budgets=budgets,
                       seeds=args.seeds, lr_grid=args.lr_grid, lr=args.lr, tune=args.tune, base_cfg=base_cfg,
                       eval_every=args.eval_every, test_batches=test_batches, cache=cache)
        archs.append({"class": cls, "arch": describe_arch(config), "config": config.to_dict(),
                      "n_params": _n_params(config), "donor": donor["arch"] if donor else None,
                      "seconds": time.perf_counter() - t0, "budgets": res})
    # break-even at the study budget (or, without it among the budgets, the longest one)
    be_steps = study["steps"] if any(s == study["steps"] for _, s in budgets) else max(s for _, s in budgets)
    for a in archs:
        for b in a["budgets"].values():  # beside every gain, what the hypernet cost
            b["pretrain_cpu_hours"] = cost["cpu_hours"]
        b = a["budgets"][str(be_steps)]
        base = b["arms"][b["best_baseline"]]
        a["break_even"] = {}
        for h in HYPERNET_ARMS:
            saved = seconds_saved(base["seconds"], be_steps, b["reach_best_baseline"][h], b["arms"][h]["init_seconds"])
            trials = break_even(cost["seconds"], saved)
            a["break_even"][h] = {"steps": be_steps, "seconds_saved_per_trial": saved, "trials": trials,
                                  "never": trials is None}
    summary = {}
    for label, steps in budgets:
        per_class = {}
        for cls in dict.fromkeys(a["class"] for a in archs):  # a shard may lack whole classes
            sub = [a for a in archs if a["class"] == cls]
            per_class[cls] = {h: _count([a["budgets"][str(steps)]["verdict"][h] for a in sub]) for h in HYPERNET_ARMS}
        summary[str(steps)] = {"label": label, "classes": per_class,
                               "total": {h: _count([a["budgets"][str(steps)]["verdict"][h] for a in archs])
                                         for h in HYPERNET_ARMS},
                               "total_test": {h: _count([a["budgets"][str(steps)]["verdict_test"][h] for a in archs])
                                              for h in HYPERNET_ARMS}}
    return {"data": data, "checkpoint": path.name, "pretrain": cost, "study": study,
            "budgets": [{"label": l, "steps": s} for l, s in budgets], "break_even_steps": be_steps,
            "eval_batches": eval_batches, "test_batches": test_batches,
            "pool": [{"arch": p["arch"], "val_loss": p["val_loss"] if math.isfinite(p["val_loss"]) else None,
                      "steps": pool_steps} for p in pool],
            "archs": archs, "summary": summary, "seconds": time.perf_counter() - t_space,
            "shard": f"{shard}/{shards}", "cache": {"dir": str(args.cache) if args.cache else None,
                                                   "hits": cache.hits, "misses": cache.misses}}


def _n_params(config) -> int:
    from nas.trial_recipe import count_params

    return count_params(config)


def _count(verdicts: list[str | None]) -> dict[str, int]:
    return {"wins": sum(v is not None and v.startswith("win") for v in verdicts),
            "losses": sum(v is not None and v.startswith("loss") for v in verdicts),
            "level": sum(v is not None and v.endswith("/level") for v in verdicts),
            "n": len(verdicts)}


# ---------------------------------------------------------------- output

def human_tables(spaces: dict[str, Any]) -> str:
    parts = []
    for name, sp in spaces.items():
        cost = sp["pretrain"]
        rows, reach_rows, class_rows = [], [], []
        for a in sp["archs"]:
            for key, b in a["budgets"].items():
                for arm in (*ARMS, "random"):
                    s = b["arms"][arm]
                    rows.append({"class": a["class"], "arch": a["arch"], "budget": _budget(b),
                                 "arm": arm if arm != "random" else f"random={s['scheme']}", "lr": f"{s['lr']:g}",
                                 "step0": _fmt(s["step0"]), "final": _fmt(s["final"]), "test": _fmt(s["test"]),
                                 "best": "*" if arm == b["best_baseline"] else ""})
                for h in HYPERNET_ARMS:
                    be = a["break_even"][h] if int(key) == sp["break_even_steps"] else None
                    reach_rows.append({
                        "class": a["class"], "arch": a["arch"], "budget": _budget(b), "arm": h,
                        **{f"to_{k}": v for k, v in b["reach"][h].items()},
                        "best": b["best_baseline"], "gain": b["gain"][h], "verdict": b["verdict"][h],
                        "verdict_test": b["verdict_test"][h],
                        "cpu_h": cost["cpu_hours"] if (b["gain"][h] or 0) > 0 else None,
                        "break_even": (("never" if be["never"] else f"{be['trials']:.0f} trials") if be else None)})
        for key, s in sp["summary"].items():
            for cls, by_arm in s["classes"].items():
                for h, c in by_arm.items():
                    class_rows.append({"budget": _budget({"label": s["label"], "steps": int(key)}), "class": cls,
                                       "arm": h, **c})
            for h in HYPERNET_ARMS:
                for label, counts in (("all", s["total"][h]), ("all, on test", s["total_test"][h])):
                    class_rows.append({"budget": _budget({"label": s["label"], "steps": int(key)}), "class": label,
                                       "arm": h, **counts})
        parts.append(f"== {name} x {sp['data']} ({sp['checkpoint']}): meta-training {cost['cpu_hours']:.2f} CPU-h "
                     f"[{cost['source']}], study budget {sp['study']['steps']} steps, warm strength "
                     f"{sp['study']['warm_strength']}, pool {len(sp['pool'])}")
        parts.append(table(rows, [("class", "class"), ("arch", "arch"), ("budget", "budget"), ("arm", "arm"),
                                  ("lr", "lr"), ("step0", "step-0 val"), ("final", "final val"),
                                  ("test", "final test"), ("best", "best base")]))
        parts.append("")
        parts.append(table(reach_rows, [("class", "class"), ("arch", "arch"), ("budget", "budget"), ("arm", "arm"),
                                        ("to_random", "steps to random"), ("to_mimetic", "to mimetic"),
                                        ("to_inherit", "to inherit"), ("best", "best baseline"),
                                        ("gain", "gain (nats)"), ("verdict", "verdict"),
                                        ("verdict_test", "on test"),
                                        ("cpu_h", "meta-train CPU-h"), ("break_even", "break-even")]))
        parts.append("")
        parts.append(table(class_rows, [("budget", "budget"), ("class", "class"), ("arm", "arm"), ("wins", "wins"),
                                        ("level", "level"), ("losses", "losses"), ("n", "archs")]))
        parts.append("")
    parts.append("mean+-SE over seeds; val selects (lr, best baseline), test is reported beside; 'steps to X': first "
                 "eval step at which the hypernet arm's mean val curve <= X's mean final val (- = never); verdict: "
                 "hypernet final <= best baseline final (win) or not (loss), '/level' within one combined SE; "
                 "break-even at the study budget: pretraining seconds / training seconds saved per trial.")
    return "\n".join(parts)


def _pm(stat: dict[str, Any]) -> str:
    if stat["mean"] is None:
        return "diverged"
    return f"{stat['mean']:.3f}" + (f" ± {stat['se']:.3f}" if stat["se"] is not None else "")


def _reached_in(step: int | None, budget: int, fraction: float = 1 / 3) -> bool:
    """Whether a hypernet arm reached the best baseline's final loss within `fraction` of the budget."""
    return step is not None and step <= fraction * budget


def _short_verdict(v: str | None) -> str:
    """'win' / 'loss', with '≈' when within one combined standard error."""
    return "-" if v is None else v.replace("/level", "≈")


def markdown_tables(spaces: dict[str, Any]) -> str:
    """The compact tables bench/RESULTS.md and README quote: one row per architecture and budget with
    the final val losses (verdicts for strength 0.5 / 1.0: the hypernet's final loss at or below the best
    baseline's, on val and on test, ≈ within one combined SE), then one row per budget counting the
    architectures each hypernet arm ends at or below the best baseline, and those where it reaches the
    best baseline's final val loss within a third of the steps."""
    out = []
    for name, sp in spaces.items():
        strength = f"{sp['study']['warm_strength']:g}"
        head = (f"| class | architecture | steps | best baseline, final val | hypernet {strength} | hypernet 1 "
                f"| val | test |")
        out += [f"{name} x {sp['data']} ({sp['checkpoint']}, meta-training {sp['pretrain']['cpu_hours']:.2f} CPU-h):",
                "", head, "|" + "---|" * (head.count(" | ") + 1)]
        for a in sp["archs"]:
            for b in a["budgets"].values():
                arms, best = b["arms"], b["best_baseline"]
                out.append(f"| {a['class']} | {a['arch']} | {b['steps']} | {best} {_pm_lr(arms[best])} | "
                           + " | ".join(_pm_lr(arms[h]) for h in HYPERNET_ARMS) + " | "
                           + " | ".join(" / ".join(_short_verdict(b[v][h]) for h in HYPERNET_ARMS)
                                        for v in ("verdict", "verdict_test")) + " |")
        edges = [_edge(b["arms"][k]) for a in sp["archs"] for b in a["budgets"].values()
                 for k in (b["best_baseline"], *HYPERNET_ARMS)]
        if any(edges):
            out += ["", f"@lr: the lr the arm trained at; ↑ / ↓: the top / bottom of the tuned grid, where a wider "
                        f"grid may lower that arm's loss ({sum(1 for e in edges if e)} of "
                        f"{len(edges)} cells)."]
        head = (f"| steps | hypernet {strength}: val / test / 1/3 steps | hypernet 1: val / test / 1/3 steps |")
        out += ["", head, "|---|---|---|"]
        for key, summ in sp["summary"].items():
            cells = []
            for h in HYPERNET_ARMS:
                v, t = summ["total"][h], summ["total_test"][h]
                fast = sum(1 for a in sp["archs"] if _reached_in(a["budgets"][key]["reach_best_baseline"][h], int(key)))
                cells.append(f"{v['wins']} ({v['level']}≈) / {t['wins']} / {fast} of {v['n']}")
            out.append(f"| {_budget({'label': summ['label'], 'steps': int(key)})} | " + " | ".join(cells) + " |")
        if sp["archs"] and all(a.get("break_even") for a in sp["archs"]):
            out += ["", f"Break-even at {sp['break_even_steps']} steps (trials whose saved steps pay back the "
                        f"{sp['pretrain']['cpu_hours']:.2f} CPU-h of meta-training), hypernet {strength} / 1: "
                    + "; ".join(f"{a['arch']} " + " / ".join(_trials(a["break_even"][h]) for h in HYPERNET_ARMS)
                                for a in sp["archs"]) + "."]
        out.append("")
    return "\n".join(out)


def _edge(arm: dict[str, Any]) -> str | None:
    """`lr_edge` of an arm's picked lr in the grid it was picked from (the keys of its `lr_finals`)."""
    return lr_edge(arm["lr"], [float(k) for k in arm["lr_finals"]])


def _pm_lr(arm: dict[str, Any]) -> str:
    """An arm's final val loss with the lr it trained at, marked at the tuned grid's edge."""
    mark = {"top": " ↑", "bottom": " ↓"}.get(_edge(arm) or "", "")
    return f"{_pm(arm['final'])} @{arm['lr']:g}{mark}"


def _trials(be: dict[str, Any]) -> str:
    return "never" if be["never"] else f"{be['trials']:,.0f}"


def _json_safe(obj: Any) -> Any:
    """NaN / inf -> None (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spaces", default="vit,gpt2", help="comma-separated subset of vit,gpt2")
    p.add_argument("--budgets", default=None,
                   help="comma-separated: step counts, 'study', 'long' (default 150,study,long)")
    p.add_argument("--long-steps", type=int, default=LONG_STEPS, help="the 'long' budget")
    p.add_argument("--seeds", default=None, help="comma-separated training seeds (default 0,1,2)")
    p.add_argument("--archs-per-class", type=int, default=None, help="cap per held-out shape class (default: all)")
    p.add_argument("--classes", default=None, help="comma-separated subset of nas.unseen.CLASSES (default: all)")
    p.add_argument("--archs", default=None, metavar="DEPTHxWIDTH,...",
                   help="these architectures instead of the held-out classes (built as they are: nas.unseen.arch_at); "
                        "a diagnostic, e.g. shapes meta-training saw (class seen_shape)")
    p.add_argument("--draw", type=int, default=None, metavar="N",
                   help="N architectures per held-out class drawn at random over the whole class "
                        "(nas.unseen.draw_unseen) instead of its fixed ones: another set of unseen models")
    p.add_argument("--draw-seed", type=int, default=0, help="the seed of --draw")
    p.add_argument("--lr-grid", default=None, help="lrs tried for the tuned arms (default 3e-4,1e-3,3e-3)")
    p.add_argument("--tune", default=",".join(RANDOM_ARMS), help=f"arms whose lr is tuned over --lr-grid, of {ARMS}")
    p.add_argument("--lr", type=float, default=1e-3, help="lr of the arms not tuned")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="a candidate hypernet instead of the shipped one (one space only; its cache entries are its own)")
    p.add_argument("--warm-strength", type=float, default=None,
                   help="strength of the hypernet_study arm, in (0, 1] (default: the study's hypernet.warm_strength)")
    p.add_argument("--batch-size", type=int, default=None, help="training and val batch size (default 32)")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--eval-every", type=int, default=None, help="default: ~30 evals per run (budget / 30)")
    p.add_argument("--eval-batches", type=int, default=None,
                   help="val batches per eval (default: the whole split for images, 4 for text)")
    p.add_argument("--pool", type=int, default=None, help="inheritance pool size (default 3; 0: no inherit arm)")
    p.add_argument("--pool-seed", type=int, default=0)
    p.add_argument("--pool-lr", type=float, default=1e-3,
                   help="lr the inheritance pool trains at (not --lr: moving an arm's lr keeps the donors)")
    p.add_argument("--pretrain-hours", default="", metavar="SPACE=H,...",
                   help="meta-training CPU-hours per space instead of the checkpoint metadata's estimate")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK} unless given")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON to this file")
    p.add_argument("--markdown", action="store_true", help="also print the compact markdown tables RESULTS.md quotes")
    p.add_argument("--from-json", type=Path, default=None, metavar="FILE",
                   help="print the tables of a saved --out FILE instead of running anything")
    p.add_argument("--cache", type=Path, default=None,
                   help="keep every finished run and pool member here; a rerun trains only what is missing")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="run the I-th of N interleaved slices of the architectures (N processes, one --cache)")
    args = p.parse_args(argv)
    defaults = QUICK if args.quick else {"budgets": "150,study,long", "seeds": "0,1,2", "archs_per_class": None,
                                         "lr_grid": "3e-4,1e-3,3e-3", "pool": 3, "eval_every": None,
                                         "eval_batches": None, "batch_size": 32}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.seeds = tuple(parse_seeds(args.seeds))
    try:
        args.lr_grid = tuple(float(x) for x in args.lr_grid.split(","))
        args.pretrain_hours = {k: float(v) for k, v in (i.split("=", 1) for i in args.pretrain_hours.split(",") if i)}
    except ValueError:
        raise SystemExit("--lr-grid: floats, --pretrain-hours: SPACE=HOURS, comma-separated") from None
    args.shard = parse_shard(args.shard)
    if args.warm_strength is not None and not 0.0 < args.warm_strength <= 1.0:
        raise SystemExit(f"--warm-strength: in (0, 1], got {args.warm_strength}")
    args.tune = tuple(a for a in args.tune.split(",") if a)
    if not set(args.tune) <= set(ARMS):
        raise SystemExit(f"--tune: a subset of {ARMS}, got {args.tune}")
    if args.pool == 0:
        raise SystemExit("--pool: at least 1 (the inherit arm needs a donor)")
    args.classes = [c for c in args.classes.split(",") if c] if args.classes else None
    if args.draw is not None and (args.draw < 1 or args.archs is not None):
        raise SystemExit(f"--draw: at least 1 architecture per class, and not with --archs (got {args.draw})")
    if args.archs is not None:
        if args.classes:
            raise SystemExit("--archs and --classes: give one of them")
        args.archs = parse_archs(args.archs)
    args.spaces_list = [c for c in CASES if c[0] in args.spaces.split(",")]
    if not args.spaces_list:
        raise SystemExit(f"--spaces: a comma-separated subset of vit,gpt2, got {args.spaces!r}")
    if args.checkpoint is not None and len(args.spaces_list) != 1:
        raise SystemExit("--checkpoint: give one space with --spaces (a checkpoint belongs to one)")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.from_json is not None:
        payload = json.loads(args.from_json.read_text())
        print(human_tables(payload["spaces"]))
        print()
        print(markdown_tables(payload["spaces"]))
        return payload
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    spaces = {name: run_space(name, data, args, args.budgets) for name, data in args.spaces_list}
    shown = {k: (v if not isinstance(v, Path) else str(v)) for k, v in vars(args).items() if k != "spaces_list"}
    payload = _json_safe({"args": shown, "arms": list(ARMS), "baselines": list(BASELINES),
                          "hypernet_arms": list(HYPERNET_ARMS), "spaces": spaces,
                          "seconds": time.perf_counter() - t0})
    write_json(args.out, "protocol", payload, sort_keys=False)  # in run order: --from-json prints it so
    emit("protocol", payload, human_tables(payload["spaces"]))
    if args.markdown:
        print()
        print(markdown_tables(payload["spaces"]))
    return {"bench": "protocol", **payload}


if __name__ == "__main__":
    main()
