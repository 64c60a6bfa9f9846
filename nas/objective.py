"""The trial function: suggest an architecture, warm-start it from the hypernet, train, record.

Every trial writes the user attrs the dashboard reads (ARCHITECTURE.md, "Trial user attrs"),
also when it is pruned or fails, so a study explains itself. Trials start as `study.init` says
(the hypernet by default) and a fixed share of them (`study.control_fraction`) as
`study.control_init` (random init by default): the same search then measures what the hypernet is
worth against the baseline the user picks (`nas.init_strategies`). Before a warm trial trains, the
safety net (`nas.safety`, `study.safety_batches`) checks its prediction against the init it refines.
"""
from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import torch

from nas import attrs
from nas.init_strategies import make_strategy
from nas.safety import guard
from nas.train_loop import TrainConfig, evaluate, resolve_device, train
from nas.trial_recipe import count_params, eval_batch_size, is_control, trial_seed
from search_spaces import ModelConfig, build_model
from search_spaces.files import atomic_write_bytes

if TYPE_CHECKING:
    from nas.init_strategies import HypernetInit
    from nas.session import Session


class TrialFailed(RuntimeError):
    """A trial that cannot produce a result (diverged, ...); the worker records FAIL and goes on."""


def save_weights(model: torch.nn.Module, path: str | Path, config: ModelConfig) -> None:
    """Final weights as safetensors (parameters once each: tied embeddings are stored once)."""
    from safetensors.torch import save

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.named_parameters()}
    atomic_write_bytes(path, save(tensors, metadata={"format": "pt", "config": json.dumps(config.to_dict())}))


class Objective:
    """Callable for `study.optimize`; one per worker process (it caches the hypernet)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.cfg, self.dataset, self.space = session.cfg, session.dataset, session.space
        self.init = make_strategy(session.cfg.study.init, session)
        self.control_init = make_strategy(session.cfg.study.control_init, session)

    def __call__(self, trial: optuna.Trial) -> float:
        try:
            return self._run(trial)
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            if attrs.FAIL_REASON not in trial.user_attrs:
                from nas.secrets import mask_url

                trial.set_user_attr(attrs.FAIL_REASON, mask_url(f"{type(exc).__name__}: {exc}")[:1000])
            raise
        finally:
            if attrs.TRAIN_SECONDS not in trial.user_attrs:  # stopped before training started
                trial.set_user_attr(attrs.TRAIN_SECONDS, 0.0)

    def _run(self, trial: optuna.Trial) -> float:
        s, cfg = self.cfg.study, self.cfg
        config = self.space.suggest(trial)
        lr = trial.suggest_float("lr", *s.lr, log=True)
        weight_decay = trial.suggest_float("weight_decay", *s.weight_decay)
        batch_size = trial.suggest_categorical("batch_size", list(s.batch_sizes))
        strategy = self.control_init if is_control(trial.number, s.control_fraction, cfg.seed) else self.init
        n_params = count_params(config)
        trial.set_user_attr(attrs.CONFIG, config.to_dict())
        trial.set_user_attr(attrs.N_PARAMS, n_params)
        trial.set_user_attr(attrs.INIT, strategy.name)
        trial.set_user_attr(attrs.WARM_START, strategy.uses_hypernet)
        trial.set_user_attr(attrs.HYPERNET_VERSION, None)
        trial.set_user_attr(attrs.PREDICT_SECONDS, 0.0)
        if n_params > s.max_params:
            reason = f"n_params={n_params:,} exceeds study.max_params={s.max_params:,}; not built"
            trial.set_user_attr(attrs.FAIL_REASON, reason)
            raise optuna.TrialPruned(reason)

        model = build_model(config, seed=trial_seed(cfg.seed, trial.number))
        for key, value in strategy.apply(model, config, trial_seed(cfg.seed, trial.number)).items():
            trial.set_user_attr(key, value)
        if strategy.uses_hypernet and s.safety_batches > 0:
            trial.set_user_attr(attrs.SAFETY, self._safety(model, config, strategy, trial_seed(cfg.seed, trial.number)))

        train_cfg = TrainConfig(steps=s.steps, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                                warmup_steps=s.warmup_steps, grad_clip=s.grad_clip, eval_every=s.eval_every,
                                eval_batches=s.eval_batches, eval_batch_size=eval_batch_size(s),
                                seed=trial_seed(cfg.seed, trial.number),
                                device=cfg.device)
        t0 = time.perf_counter()
        try:
            result = train(model, self.dataset, train_cfg, report=self._reporter(trial))
        finally:
            trial.set_user_attr(attrs.TRAIN_SECONDS, time.perf_counter() - t0)
        if math.isfinite(result.loss_step0):
            trial.set_user_attr(attrs.LOSS_STEP0, result.loss_step0)
        if result.status != "complete":
            reason = f"{result.status}: {result.reason}"
            trial.set_user_attr(attrs.FAIL_REASON, reason)
            raise TrialFailed(reason)

        metrics = result.metrics
        if "val_accuracy" in metrics:
            trial.set_user_attr(attrs.VAL_ACCURACY, metrics["val_accuracy"])
        if self.dataset.kind == "text":
            trial.set_user_attr(attrs.VAL_PERPLEXITY, math.exp(min(result.val_loss, 700.0)))
        trial.set_user_attr(attrs.WEIGHTS, self._upload_weights(trial, model, config))
        return result.val_loss

    def _safety(self, model: torch.nn.Module, config: ModelConfig, strategy: HypernetInit, seed: int) -> dict[str, Any]:
        """The safety net (`nas.safety.guard`) on `study.safety_batches` of the val batches every trial
        is scored on, on the device the trial trains on (the model moves there now, not at `train`)."""
        s, dataset = self.cfg.study, self.dataset
        model.to(resolve_device(self.cfg.device))
        context = getattr(config, "context", None) if dataset.kind == "text" else None

        def score(m: torch.nn.Module) -> float:
            device = next(m.parameters()).device
            return evaluate(m, dataset, batch_size=eval_batch_size(s), batches=s.safety_batches, context=context,
                            device=device)["val_loss"]

        return guard(model, strategy.applied, strategy.strength, init_seed=seed, score=score)

    def _reporter(self, trial: optuna.Trial):
        def report(step: int, metrics: dict[str, Any]) -> None:
            value = float(metrics["val_loss"])
            if step == 0:
                trial.set_user_attr(attrs.LOSS_STEP0, value)
            trial.report(value, step)
            if trial.should_prune():
                reason = f"pruned by the {self.cfg.study.pruner} pruner at step {step} (val_loss {value:.4f})"
                trial.set_user_attr(attrs.FAIL_REASON, reason)
                raise optuna.TrialPruned(reason)

        return report

    def _upload_weights(self, trial: optuna.Trial, model: torch.nn.Module, config: ModelConfig) -> str:
        with tempfile.TemporaryDirectory(prefix="logah-w-") as tmp:
            path = Path(tmp) / f"trial-{trial.number}.safetensors"
            save_weights(model, path, config)
            return optuna.artifacts.upload_artifact(artifact_store=self.session.storage.artifacts, file_path=str(path),
                                                    study_or_trial=trial, mimetype="application/octet-stream")


__all__ = ["Objective", "TrialFailed", "save_weights"]
