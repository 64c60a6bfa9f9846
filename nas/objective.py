"""The trial function: suggest an architecture, warm-start it from the hypernet, train, record.

Every trial writes the user attrs the dashboard reads (ARCHITECTURE.md, "Trial user attrs"),
also when it is pruned or fails, so a study explains itself. A fixed share of trials
(`study.control_fraction`) starts from random init instead: the same search then measures
what the hypernet is worth.
"""
from __future__ import annotations

import json
import math
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
import torch
from sqlalchemy.engine import Engine

from nas.training import TrainConfig, train
from search_spaces import ModelConfig, build_model


def trial_seed(study_seed: int, trial_number: int) -> int:
    """Seed of a trial's model init and batches: warm and control trials of the same number share
    the same W0, and a refit can rebuild any trial's init (its distillation baseline)."""
    return study_seed * 1_000_003 + trial_number


class TrialFailed(RuntimeError):
    """A trial that cannot produce a result (diverged, ...); the worker records FAIL and goes on."""


def is_control(number: int, fraction: float, seed: int) -> bool:
    """Whether trial `number` is a random-init control trial.

    Stratified, not i.i.d.: exactly round(n * fraction) +- 1 of any n consecutive trials are
    controls (a coin per trial could give none in a short study), at a seed-dependent phase.
    """
    if fraction <= 0:
        return False
    if fraction >= 1:
        return True
    phase = random.Random(seed).random()
    return math.floor((number + 1) * fraction + phase) > math.floor(number * fraction + phase)


def eval_batch_size(study_cfg) -> int:
    """Every trial (and the refit's validation) scores `eval_batches` val batches of this size, whatever
    its own training batch size: the same val examples for all, so their metrics compare."""
    return max(study_cfg.batch_sizes)


def count_params(config: ModelConfig) -> int:
    """Parameters of a config without allocating them (meta device)."""
    with torch.device("meta"):
        model = build_model(config)
    return sum(p.numel() for p in model.parameters())


def save_weights(model: torch.nn.Module, path: str | Path, config: ModelConfig) -> None:
    """Final weights as safetensors (parameters once each: tied embeddings are stored once)."""
    from safetensors.torch import save

    from nas.io import atomic_write_bytes

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.named_parameters()}
    atomic_write_bytes(path, save(tensors, metadata={"format": "pt", "config": json.dumps(config.to_dict())}))


class Objective:
    """Callable for `study.optimize`; one per worker process (it caches the hypernet)."""

    def __init__(self, cfg, dataset, space, engine: Engine, artifact_store) -> None:
        from nas.refit import HypernetCache

        self.cfg, self.dataset, self.space = cfg, dataset, space
        self.engine, self.artifact_store = engine, artifact_store
        self.hypernets = HypernetCache(engine, artifact_store, cfg.study_name)

    def __call__(self, trial: optuna.Trial) -> float:
        try:
            return self._run(trial)
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            if "fail_reason" not in trial.user_attrs:
                from nas.secrets import mask_url

                trial.set_user_attr("fail_reason", mask_url(f"{type(exc).__name__}: {exc}")[:1000])
            raise
        finally:
            if "train_seconds" not in trial.user_attrs:  # stopped before training started
                trial.set_user_attr("train_seconds", 0.0)

    def _run(self, trial: optuna.Trial) -> float:
        s, cfg = self.cfg.study, self.cfg
        config = self.space.suggest(trial)
        lr = trial.suggest_float("lr", *s.lr, log=True)
        weight_decay = trial.suggest_float("weight_decay", *s.weight_decay)
        batch_size = trial.suggest_categorical("batch_size", list(s.batch_sizes))
        warm = not is_control(trial.number, s.control_fraction, cfg.seed)
        n_params = count_params(config)
        trial.set_user_attr("config", config.to_dict())
        trial.set_user_attr("n_params", n_params)
        trial.set_user_attr("warm_start", warm)
        trial.set_user_attr("hypernet_version", None)
        trial.set_user_attr("predict_seconds", 0.0)
        if n_params > s.max_params:
            reason = f"n_params={n_params:,} exceeds study.max_params={s.max_params:,}; not built"
            trial.set_user_attr("fail_reason", reason)
            raise optuna.TrialPruned(reason)

        model = build_model(config, seed=trial_seed(cfg.seed, trial.number))
        if warm:
            version, hn = self.hypernets.latest()
            t0 = time.perf_counter()
            hn.apply(model, strength=cfg.hypernet.warm_strength)
            trial.set_user_attr("predict_seconds", time.perf_counter() - t0)
            trial.set_user_attr("warm_strength", cfg.hypernet.warm_strength)
            trial.set_user_attr("hypernet_version", version.version)

        train_cfg = TrainConfig(steps=s.steps, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                                warmup_steps=s.warmup_steps, grad_clip=s.grad_clip, eval_every=s.eval_every,
                                eval_batches=s.eval_batches, eval_batch_size=eval_batch_size(s),
                                seed=trial_seed(cfg.seed, trial.number),
                                device=cfg.device)
        t0 = time.perf_counter()
        try:
            result = train(model, self.dataset, train_cfg, report=self._reporter(trial))
        finally:
            trial.set_user_attr("train_seconds", time.perf_counter() - t0)
        if math.isfinite(result.loss_step0):
            trial.set_user_attr("loss_step0", result.loss_step0)
        if result.status != "complete":
            reason = f"{result.status}: {result.reason}"
            trial.set_user_attr("fail_reason", reason)
            raise TrialFailed(reason)

        metrics = result.metrics
        if "val_accuracy" in metrics:
            trial.set_user_attr("val_accuracy", metrics["val_accuracy"])
        if self.dataset.kind == "text":
            trial.set_user_attr("val_perplexity", math.exp(min(result.val_loss, 700.0)))
        trial.set_user_attr("weights_artifact_id", self._upload_weights(trial, model, config))
        return result.val_loss

    def _reporter(self, trial: optuna.Trial):
        def report(step: int, metrics: dict[str, Any]) -> None:
            value = float(metrics["val_loss"])
            if step == 0:
                trial.set_user_attr("loss_step0", value)
            trial.report(value, step)
            if trial.should_prune():
                reason = f"pruned by the {self.cfg.study.pruner} pruner at step {step} (val_loss {value:.4f})"
                trial.set_user_attr("fail_reason", reason)
                raise optuna.TrialPruned(reason)

        return report

    def _upload_weights(self, trial: optuna.Trial, model: torch.nn.Module, config: ModelConfig) -> str:
        with tempfile.TemporaryDirectory(prefix="logah-w-") as tmp:
            path = Path(tmp) / f"trial-{trial.number}.safetensors"
            save_weights(model, path, config)
            return optuna.artifacts.upload_artifact(artifact_store=self.artifact_store, file_path=str(path),
                                                    study_or_trial=trial, mimetype="application/octet-stream")


__all__ = ["Objective", "TrialFailed", "count_params", "is_control", "save_weights"]
