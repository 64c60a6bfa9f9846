"""Periodic refits of a study's hypernet from its trial results.

After every `refit_every` completed trials one process (the refitter, `nas.refitter`, or a worker
with `hypernet.refit_in=worker`; the holder of the DB lease `refit:<study>`) meta-trains a copy of
the newest promoted version on architectures the study found good, plus a distillation term
pulling predictions towards the trained weights of the best trials. The new version is scored on
the validation architectures against its parent on the same set, by what a warm start is for: the
val loss after `hypernet.promote_steps` fine-tuning steps from warm starts at the study's strength
(0: of the predicted parameters before any training; the step-0 losses are recorded either way);
it is recorded either way but only *promoted* (used by workers) if it is better. Validation stays
held out: its architectures (a fixed sample plus completed trials other than the distillation
targets) are never replayed nor distilled, and its examples are a seeded slice of the train split
that the refit never meta-trains or fine-tunes on and the trials' val selection never uses.
A version's own validation losses are saved in its checkpoint, so a parent is judged only on the
runs it was not judged on as a child. Versions themselves: `nas.hypernets`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import Engine

from nas import attrs
from nas.hypernets import load_version, predicted_val_loss, upload_checkpoint
from nas.trial_recipe import eval_batch_size, trial_init
from nas.versions import HypernetVersion, latest_promoted, list_versions, record_version
from nas.versions import refit_share as _share
from search_spaces import ConfigError, ModelConfig, build_model, config_from_dict

if TYPE_CHECKING:
    from nas.session import Session

_log = logging.getLogger(__name__)

VALIDATION_SEED = 424_242  # the fixed part of the validation set; never a training seed
VALIDATION_INIT_SEED = 525_252  # W0 of the validation models, the same for every version compared
VALIDATION_DATA_FRACTION = 0.1  # of the train split: what refits are judged on and never meta-trained on


def lease_name(study_name: str) -> str:
    return f"refit:{study_name}"


def config_key(config: ModelConfig) -> str:
    return json.dumps(config.to_dict(), sort_keys=True)


def completed_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Completed trials with a config, best first."""
    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
              if attrs.CONFIG in t.user_attrs and t.value is not None]
    return sorted(trials, key=lambda t: t.value)


def refits_done(engine: Engine, study_name: str) -> int:
    return sum(1 for v in list_versions(engine, study_name) if v.version >= 1)


def refit_due(engine: Engine, study: optuna.Study, refit_every: int, max_share: float = 1.0) -> bool:
    """Due when the study has `refit_every` more completed trials than the refits so far cover and
    the refits so far took at most `max_share` of the study's compute (`refit_share`; 1: no cap).

    The cap keeps the hypernet's work in proportion to the trials it serves: where a trial takes a
    second and a refit ten, refitting every few trials would spend most of the study refitting."""
    if refit_every <= 0:
        return False
    n_complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if n_complete < (refits_done(engine, study.study_name) + 1) * refit_every:
        return False
    return max_share >= 1.0 or refit_share(engine, study) <= max_share


def refit_share(engine: Engine, study: optuna.Study) -> float:
    """Refit seconds / (refit seconds + the seconds of every finished trial, all workers together)."""
    refit_s = sum(v.seconds for v in list_versions(engine, study.study_name) if v.version >= 1)
    if refit_s <= 0:
        return 0.0
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
    trial_s = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in finished
                  if t.datetime_start is not None and t.datetime_complete is not None)
    return _share(refit_s, trial_s)


def validation_architectures(space, trials: list[FrozenTrial], n_fixed: int, n_trials: int,
                             taken: set[str] = frozenset()) -> list[ModelConfig]:
    """What a refit is judged on: a fixed-seed sample of the space plus the architectures of
    `n_trials` completed trials (best first) whose configs are not in `taken` (the distillation
    targets): validation architectures are never distilled nor replayed."""
    rng = random.Random(VALIDATION_SEED)
    configs = [space.sample(rng) for _ in range(n_fixed)]
    seen = {config_key(c) for c in configs} | set(taken)
    for t in trials:
        if len(configs) >= n_fixed + n_trials:
            break
        c = config_from_dict(t.user_attrs[attrs.CONFIG])
        if config_key(c) not in seen:
            configs.append(c)
            seen.add(config_key(c))
    return configs


def validation_loss(hn, configs: list[ModelConfig], dataset, *, batch_size: int, batches: int,
                    device: torch.device | str = "cpu", steps: int = 0, strength: float = 1.0,
                    lr: float = 1e-3, scores: dict[str, float] | None = None) -> float:
    """Mean val loss over `configs`: of the predicted parameters as they are (`steps=0`), or of a
    warm start (`strength` of the way from the init, as trials use it) after `steps` AdamW steps
    on `dataset`'s train split, which is what a warm start is for. A run that diverges counts as inf.

    `scores`: this hypernet's losses already known, by `score_key`, read and filled in place. A
    version's scores travel in its checkpoint, so a parent judged once as a child is not judged
    again by every refit of it (the whole computation is seeded: equal keys, equal losses)."""
    from nas.train_loop import TrainConfig, train

    data_id = _data_id(dataset) if scores is not None else ""
    losses = []
    for i, config in enumerate(configs):
        key = score_key(config, VALIDATION_INIT_SEED + i, data_id, steps=steps, strength=strength, lr=lr,
                        batch_size=batch_size, batches=batches, device=device)
        if scores is not None and key in scores:
            losses.append(scores[key])
            continue
        if steps == 0:
            loss = predicted_val_loss(hn, config, dataset, init_seed=VALIDATION_INIT_SEED + i,  # parent and
                                      batch_size=batch_size, batches=batches, device=device,  # child share W0
                                      strength=strength)
        else:
            model = hn.apply(build_model(config, seed=VALIDATION_INIT_SEED + i), strength=strength)
            recipe = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, warmup_steps=min(2, steps - 1),
                                 eval_every=steps, eval_batches=batches, eval_batch_size=batch_size,
                                 seed=VALIDATION_SEED + i, device=str(device))
            run = train(model, dataset, recipe)
            loss = run.val_loss
            if scores is not None and math.isfinite(run.loss_step0):  # its step-0 eval is the steps=0 score
                scores[score_key(config, VALIDATION_INIT_SEED + i, data_id, steps=0, strength=strength,
                                 batch_size=batch_size, batches=batches, device=device)] = run.loss_step0
        loss = loss if math.isfinite(loss) else math.inf
        if scores is not None:
            scores[key] = loss
        losses.append(loss)
    return float(sum(losses) / len(losses))


def score_key(config: ModelConfig, init_seed: int, data_id: str, **how: Any) -> str:
    """What a validation loss depends on besides the hypernet: architecture, W0 seed, data, recipe
    (no lr at step 0: nothing is trained)."""
    how = {k: str(v) if k == "device" else v for k, v in sorted(how.items()) if not (k == "lr" and how["steps"] == 0)}
    return json.dumps([config_key(config), init_seed, data_id, how], sort_keys=True)


def _data_id(dataset) -> str:
    """The examples a validation run trains on and is judged on (sha256 of their digests)."""
    digests = [",".join(sorted(dataset.example_digests(split))) for split in ("train", "val")]
    return hashlib.sha256("|".join([dataset.name, *digests]).encode()).hexdigest()[:16]


def _rank_weights(n: int) -> list[float]:
    """Linear rank weights, best first: n, n-1, ..., 1 (robust to the scale of the losses)."""
    return [float(n - i) for i in range(n)]


def make_sample_arch(space, trial_configs: list[ModelConfig], fraction: float,
                     exclude: set[str]) -> Callable[[random.Random], ModelConfig]:
    """Replay good trials (rank-weighted) with probability `fraction`, else sample the space; in
    both branches never an architecture in `exclude` (the validation set stays held out)."""
    trial_configs = [c for c in trial_configs if config_key(c) not in exclude]
    weights = _rank_weights(len(trial_configs))

    def sample(rng: random.Random) -> ModelConfig:
        if trial_configs and rng.random() < fraction:
            return rng.choices(trial_configs, weights=weights)[0]
        for _ in range(1000):
            config = space.sample(rng)
            if config_key(config) not in exclude:
                return config
        raise ConfigError("hypernet.heldout_archs", len(exclude),
                          "fewer validation architectures: the space has (almost) no other architecture to refit on")

    return sample


def load_trial_weights(trial: FrozenTrial, artifact_store) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    with tempfile.TemporaryDirectory(prefix="logah-w-") as tmp:
        path = Path(tmp) / "weights.safetensors"
        optuna.artifacts.download_artifact(artifact_store=artifact_store, file_path=str(path),
                                           artifact_id=trial.user_attrs[attrs.WEIGHTS])
        return load_file(str(path))


def make_distill_loss(targets: dict[str, tuple[dict[str, torch.Tensor], float]], weight: float):
    """extra_loss(config, params): weight * score * mean_p MSE((pred_p - w_p) / rms(w_p)).

    Normalising by each target tensor's RMS makes every tensor count alike (a LayerNorm gain of
    ~1 and an attention matrix of ~0.02 would otherwise differ by 2,500x in squared error).
    """
    def extra_loss(config: ModelConfig, params: dict[str, torch.Tensor]) -> torch.Tensor:
        any_param = next(iter(params.values()))
        target = targets.get(config_key(config))
        if target is None or weight == 0:
            return torch.zeros((), device=any_param.device)
        tensors, score = target
        terms = []
        for name, pred in params.items():
            t = tensors.get(name)
            if t is None or t.shape != pred.shape:
                continue
            t = t.to(pred.device, pred.dtype)
            scale = t.pow(2).mean().sqrt().clamp_min(1e-3)
            terms.append(((pred - t) / scale).pow(2).mean())
        if not terms:
            return torch.zeros((), device=any_param.device)
        return weight * score * torch.stack(terms).mean()

    return extra_loss


def refit(session: Session, *, lease=None, progress: bool = False) -> HypernetVersion | None:
    """Meta-train the next hypernet version from the study's results and record it.

    Returns None (nothing recorded) when `lease` was lost during the refit: another process
    may be refitting from the same parent, and two versions from one parent would race.
    """
    from hypernet import MetaTrainConfig, meta_train
    from nas.train_loop import ADAM_BETAS, TrainConfig, resolve_device

    cfg, study, dataset, space = session.cfg, session.study, session.dataset, session.space
    engine, artifact_store = session.storage.engine, session.storage.artifacts
    h = cfg.hypernet
    t0 = time.perf_counter()
    parent = latest_promoted(engine, study.study_name)
    if parent is None:
        raise RuntimeError(f"study {study.study_name!r} has no hypernet version to refit")
    parent_hn, parent_meta = load_version(parent, artifact_store, with_meta=True)
    hn = parent_hn
    parent_scores = dict(parent_meta.get("validation_scores") or {})
    known = set(parent_scores)
    if hn.config.keep_init:  # a transferred version 0: meta-training on this data teaches those parts
        from hypernet import transfer

        hn = transfer(hn, hn.config.space_signature, ())
    trials = completed_trials(study)
    trial_configs = [config_from_dict(t.user_attrs[attrs.CONFIG]) for t in trials]
    fixed = {config_key(c) for c in validation_architectures(space, [], h.heldout_archs, 0)}
    # Meta-train on the train split minus a seeded slice; judge parent and child on that slice:
    # examples neither the refit nor the trials' val selection saw.
    meta_data, check_data = dataset.split_off_train(VALIDATION_DATA_FRACTION, VALIDATION_SEED)

    # An anchored hypernet's warm starts all begin at its anchored W0 (+ correction), so only warm
    # trials' trained weights are updates of that W0; control trials started from their own random
    # init, which a correction to the anchored W0 cannot (and should not) learn to reproduce.
    anchored = hn.config.anchored
    rank = _rank_weights(len(trials))
    targets: dict[str, tuple[dict[str, torch.Tensor], float]] = {}
    target_trials: dict[str, int] = {}
    for t, c, w in zip(trials, trial_configs, rank):
        if len(targets) >= h.distill_trials:
            break
        if anchored and not t.user_attrs.get(attrs.WARM_START):
            continue
        if attrs.WEIGHTS in t.user_attrs and config_key(c) not in targets and config_key(c) not in fixed:
            try:
                targets[config_key(c)] = (load_trial_weights(t, artifact_store), w / rank[0])
                target_trials[config_key(c)] = t.number
            except Exception as exc:  # a missing artifact only removes one target
                _log.warning("refit: no weights for trial %d (%s)", t.number, exc)

    validation = validation_architectures(space, trials, h.heldout_archs, h.heldout_best, taken=set(targets))
    excluded = {config_key(c) for c in validation}
    device = resolve_device(cfg.device)
    # step 0 at the strength the refit scores (`refit_at_warm_strength`: what warm trials start from)
    meta_strength = cfg.hypernet.warm_strength if h.refit_at_warm_strength else 1.0
    eval_kw = {"batch_size": eval_batch_size(cfg.study), "batches": cfg.study.eval_batches, "device": device,
               "strength": meta_strength}
    # what a warm start is for: the val loss after a few fine-tuning steps at the study's warm strength
    tune_kw = {**eval_kw, "steps": h.promote_steps, "strength": cfg.hypernet.warm_strength,
               "lr": math.sqrt(cfg.study.lr[0] * cfg.study.lr[1])}
    # fine-tuned first: its step-0 evals are the step-0 scores when the strengths agree (the default)
    parent_val = (validation_loss(parent_hn, validation, check_data, **tune_kw, scores=parent_scores)
                  if h.promote_steps else None)
    parent_step0 = validation_loss(parent_hn, validation, check_data, **eval_kw, scores=parent_scores)
    parent_val = parent_step0 if parent_val is None else parent_val
    _log.info("refit of %s: parent v%d judged on %d new validation runs (its checkpoint knew %d)",
              study.study_name, parent.version, len(set(parent_scores) - known), len(known))

    def init_for(config: ModelConfig) -> dict[str, torch.Tensor] | None:
        """A fresh-W0 hypernet: a distillation target's own initial weights as W0, so the correction
        learns the training update (trained - init) instead of trying to predict the trial's random
        init. Anchored: None, i.e. the anchored W0 every warm trial started from."""
        number = target_trials.get(config_key(config))
        return None if anchored or number is None else trial_init(cfg.seed, number, config)

    n_prev = refits_done(engine, study.study_name)
    mcfg = MetaTrainConfig(steps=h.refit_steps, meta_batch=h.refit_meta_batch, lr=h.refit_lr,
                           warmup_steps=min(10, h.refit_steps // 10), batch_size=h.refit_batch_size,
                           seed=cfg.seed + 1000 * (n_prev + 1), device=str(device),
                           unroll_betas=ADAM_BETAS, unroll_grad_clip=TrainConfig().grad_clip,
                           unroll_steps=h.refit_unroll_steps, unroll_lr=tune_kw["lr"],
                           strength=meta_strength,
                           log_every=max(1, min(10, h.refit_steps)))
    result = meta_train(hn, space, meta_data, mcfg,
                        sample_arch=make_sample_arch(space, trial_configs, h.study_arch_fraction, excluded),
                        extra_loss=make_distill_loss(targets, h.distill_weight), init_for=init_for,
                        progress=progress)
    hn = hn.cpu().eval()
    scores: dict[str, float] = {}  # travel in the checkpoint: judged once, reused when it is a parent
    val = validation_loss(hn, validation, check_data, **tune_kw, scores=scores) if h.promote_steps else None
    step0 = validation_loss(hn, validation, check_data, **eval_kw, scores=scores)
    val = step0 if val is None else val
    promoted = bool(val < parent_val)
    criterion = (f"val loss after {h.promote_steps} fine-tuning steps at strength {cfg.hypernet.warm_strength:g} "
                 f"{val:.4f} vs parent {parent_val:.4f} (step 0 at strength {meta_strength:g}: {step0:.4f} vs "
                 f"{parent_step0:.4f})"
                 if h.promote_steps else f"step-0 val loss at strength {meta_strength:g} {val:.4f} vs parent {parent_val:.4f}")
    if lease is not None and not lease.renew():
        _log.warning("refit of %s: lease lost during the refit; result discarded", study.study_name)
        return None
    next_number = parent.version + 1  # informational only; record_version allocates the number
    artifact_id, sha = upload_checkpoint(hn, study, artifact_store, {
        "study": study.study_name, "parent_version": parent.version, "version": next_number,
        "trials_used": len(trials), "val_loss": val, "parent_val_loss": parent_val, "validation_scores": scores})
    version = record_version(
        engine, study.study_name, artifact_id=artifact_id, sha256=sha, promoted=promoted,
        trials_used=len(trials), val_loss=val, parent_val_loss=parent_val, device=str(device),
        seconds=time.perf_counter() - t0,
        note=(f"refit of v{parent.version}: {h.refit_steps} steps, {len(trials)} trials, "
              f"{len(targets)} distillation targets, {len(validation)} held-out archs; "
              f"meta-train {result.seconds:.1f}s; {'promoted' if promoted else 'not promoted'}: {criterion}"))
    _log.info("hypernet v%d of %s: held-out loss %.4f vs parent v%d %.4f -> %s", version.version,
              study.study_name, val, parent.version, parent_val, "promoted" if promoted else "kept, not promoted")
    return version


class RefitCallback:
    """Optuna study callback: after a completed trial, refit if due and the lease is ours."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.last: HypernetVersion | None = None

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        from nas.lease import hold_lease

        engine, h = self.session.storage.engine, self.session.cfg.hypernet
        if trial.state != TrialState.COMPLETE or not refit_due(engine, study, h.refit_every, h.refit_max_share):
            return
        with hold_lease(engine, lease_name(study.study_name), h.lease_ttl_s) as lease:
            if not lease or not refit_due(engine, study, h.refit_every, h.refit_max_share):
                return  # another process refits (or just did)
            try:
                self.last = refit(self.session, lease=lease)
            except Exception:  # a failed refit must not stop the search; the next completion retries
                _log.exception("refit of study %s failed", study.study_name)


__all__ = ["RefitCallback", "completed_trials", "config_key", "lease_name", "load_trial_weights", "make_distill_loss",
           "make_sample_arch", "refit", "refit_due", "refit_share", "refits_done", "validation_architectures", "validation_loss"]
