"""Synthetic studies shaped like the ones `nas` writes (ARCHITECTURE.md user attrs), for dashboard tests
and screenshots. Built with Optuna's public API only; no training happens."""
from __future__ import annotations

import datetime as dt
import math
import random
import tempfile
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import TrialState

from search_spaces import build_model, get_space

STEPS = tuple(range(0, 201, 20))
PROMOTED = (0, 1, 3)  # the versions add_versions promotes, in order: what warm trials start from


def _suggested(space, rng_seed: int) -> tuple[Any, dict[str, Any], dict[str, BaseDistribution]]:
    """Run the real `space.suggest` on a throwaway in-memory trial to get params + distributions."""
    scratch = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=rng_seed))
    trial = scratch.ask()
    config = space.suggest(trial)
    return config, dict(trial.params), dict(trial.distributions)


def _curve(start: float, final: float, rate: float, steps: tuple[int, ...], noise: random.Random) -> dict[int, float]:
    return {s: final + (start - final) * math.exp(-rate * s) + noise.gauss(0, 0.01) for s in steps}


def synthetic_trials(n: int, space_name: str = "vit", seed: int = 0, warm_fraction: float = 0.75,
                     start: dt.datetime | None = None) -> list[optuna.trial.FrozenTrial]:
    """`n` finished trials: warm-started ones begin lower; ~8% FAIL, ~10% PRUNED."""
    rng = random.Random(seed)
    space = get_space(space_name)
    start = start or dt.datetime(2026, 11, 1, 12, 0, 0)
    # A few distinct architectures are enough; suggesting is cheap but 5,000 scratch studies are not.
    pool = [_suggested(space, seed * 1000 + i) for i in range(min(n, 24))]
    trials = []
    for i in range(n):
        config, params, dists = pool[i % len(pool)]
        warm = rng.random() < warm_fraction
        phase = i * 3 // max(n, 1)  # warm trials start from the promoted hypernet of their time (add_versions)
        n_params = 1000 * config.depth * config.width // 16
        start0 = rng.uniform(1.0, 1.4) - 0.1 * phase if warm else rng.uniform(2.25, 2.35)
        final = rng.uniform(0.25, 0.6) - (0.04 + 0.03 * phase) * warm  # the closed loop helps more over time
        curve = _curve(start0, final, rng.uniform(0.015, 0.03), STEPS, rng)
        roll = rng.random()
        state = TrialState.FAIL if roll < 0.08 else TrialState.PRUNED if roll < 0.18 else TrialState.COMPLETE
        attrs: dict[str, Any] = {
            "warm_start": warm, "hypernet_version": PROMOTED[phase] if warm else None,
            "predict_seconds": rng.uniform(0.01, 0.05) if warm else 0.0, "loss_step0": curve[0],
            "n_params": n_params, "config": config.to_dict(), "train_seconds": rng.uniform(2, 9),
        }
        if state is TrialState.PRUNED:
            curve = {s: v for s, v in curve.items() if s <= 60}
            attrs["fail_reason"] = f"pruned at step {max(curve)} by MedianPruner"
        elif state is TrialState.FAIL:
            curve = {s: v for s, v in curve.items() if s <= 40}
            attrs["fail_reason"] = "diverged: non-finite loss at step 40"
        else:
            attrs["val_accuracy" if space_name == "vit" else "val_perplexity"] = (
                1 - curve[STEPS[-1]] / 3 if space_name == "vit" else math.exp(curve[STEPS[-1]]))
        t0 = start + dt.timedelta(seconds=10 * i)
        trial = optuna.trial.create_trial(
            state=state, value=curve[STEPS[-1]] if state is TrialState.COMPLETE else None,
            params=params, distributions=dists, user_attrs=attrs, intermediate_values=curve)
        trial.datetime_start, trial.datetime_complete = t0, t0 + dt.timedelta(seconds=8)
        trials.append(trial)
    return trials


def make_study(url: str, name: str = "vit-digits", n_trials: int = 40, space_name: str = "vit", seed: int = 0,
               artifacts: str | Path | None = None, weights_for_best: int = 1) -> optuna.Study:
    """A study in `url`; if `artifacts` is given, the best `weights_for_best` complete trials get real
    weights uploaded (and the `weights_artifact_id` attr), as the objective does."""
    study = optuna.create_study(storage=url, study_name=name, direction="minimize")
    for key, value in {"space": space_name, "data": "digits" if space_name == "vit" else "pytext",
                       "metric": "val_loss", "logah_nas_version": "0.1.0",
                       "config": {"study": {"storage": "sqlite:///x.db"}, "space": {"name": space_name}},
                       "screened": {"candidates": 16, "enqueued": 4, "seconds": 2.5, "losses": [0.2, 0.3]}}.items():
        study.set_user_attr(key, value)
    trials = synthetic_trials(n_trials, space_name, seed)
    study.add_trials(trials)
    if artifacts is not None and weights_for_best:
        best = sorted((t for t in trials if t.state is TrialState.COMPLETE), key=lambda t: t.value)[:weights_for_best]
        for t in best:
            add_weighted_trial(study, t, artifacts)
    return study


def add_weighted_trial(study: optuna.Study, template: optuna.trial.FrozenTrial, artifacts: str | Path) -> int:
    """Re-run `template` through ask/tell with real model weights uploaded; returns the trial number.
    A slightly lower value than the template makes it the best trial."""
    from safetensors.torch import save_file
    from search_spaces import config_from_dict

    store = optuna.artifacts.FileSystemArtifactStore(str(artifacts))
    Path(artifacts).mkdir(parents=True, exist_ok=True)
    study.enqueue_trial(template.params, skip_if_exists=False)  # the template's architecture, not a new sample
    trial = study.ask(fixed_distributions=template.distributions)
    config = config_from_dict(template.user_attrs["config"])
    model = build_model(config)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weights.safetensors"
        save_file({k: v.detach().contiguous() for k, v in model.named_parameters()}, str(path))
        artifact_id = optuna.artifacts.upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial)
    for key, value in template.user_attrs.items():
        trial.set_user_attr(key, value)
    trial.set_user_attr("n_params", sum(p.numel() for p in model.parameters()))
    trial.set_user_attr("weights_artifact_id", artifact_id)
    for step, value in template.intermediate_values.items():
        trial.report(value, step)
    study.tell(trial, template.value - 0.01)
    return trial.number


def old_style_study(url: str, name: str = "legacy", n_trials: int = 6) -> optuna.Study:
    """A study from before logah-nas: no study or trial user attrs, no intermediate values."""
    study = optuna.create_study(storage=url, study_name=name, direction="maximize")
    study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2, n_trials=n_trials)
    return study


def demo_storage(folder: str | Path, n_trials: int = 120) -> tuple[str, str]:
    """A storage like a real run's (WAL SQLite via nas.storage): the main study with weights and
    hypernet versions, plus a legacy study. Returns (storage URL, artifacts folder)."""
    from nas.storage import make_storage
    from nas.versions import record_version

    folder = Path(folder)  # relative: the URL is relative too (for screenshots that show it)
    url, artifacts = f"sqlite:///{folder / 'study.db'}", str(folder / "artifacts")
    storage = make_storage(url, heartbeat_interval=None)
    make_study(storage, n_trials=n_trials, artifacts=artifacts, weights_for_best=2)
    old_style_study(storage)
    add_versions(url, "vit-digits")
    storage.engine.dispose()
    return url, artifacts


def add_versions(url_or_engine, study_name: str) -> None:
    """Four hypernet versions with notes as nas writes them: pretrained v0, two promoted refits and a
    rejected one (v2: no trial starts from it)."""
    from nas.versions import record_version

    def refit(parent: int, used: int, val: float, parent_val: float, promoted: bool) -> str:
        return (f"refit of v{parent}: 200 steps, {used} trials, {used} distillation targets, 16 held-out archs; "
                f"meta-train {used / 12:.1f}s; {'promoted' if promoted else 'not promoted'}: val loss after 20 "
                f"fine-tuning steps at strength 1 {val:.4f} vs parent {parent_val:.4f} "
                f"(step 0 at strength 1: {val + 0.4:.4f} vs {parent_val + 0.4:.4f})")

    history = [(2.05, None, True, 0, "pretrained logah-vit-digits.pt (meta-trained on data=digits)"),
               (1.62, 2.05, True, 40, refit(0, 40, 1.62, 2.05, True)),
               (1.71, 1.62, False, 80, refit(1, 80, 1.71, 1.62, False)),
               (1.31, 1.62, True, 120, refit(1, 120, 1.31, 1.62, True))]
    for val, parent, promoted, used, note in history:
        record_version(url_or_engine, study_name, artifact_id=f"ckpt-{used}", sha256="0" * 64, promoted=promoted,
                       trials_used=used, val_loss=val, parent_val_loss=parent, device="cpu", seconds=3.5 + used / 10,
                       note=note)


def numbered_trials(n: int, seed: int = 0) -> list[optuna.trial.FrozenTrial]:
    """`synthetic_trials` with numbers and ids, as a storage returns them (in-memory, fast)."""
    study = optuna.create_study()
    study.add_trials(synthetic_trials(n, seed=seed))
    return study.get_trials(deepcopy=False)
