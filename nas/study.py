"""Creating, joining and running a study.

A study is fully described by its database: Optuna's tables, the study user attrs (space, data,
metric, the resolved config with secrets masked) and the hypernet versions. A worker on another
machine therefore needs only the storage URL and the study name (`logah-nas worker`): it reads
the study's own config and cannot drift from it.
"""
from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import Any

import optuna
from optuna.study import MaxTrialsCallback
from optuna.trial import FrozenTrial, TrialState

from nas import __version__, attrs
from nas.config import HypernetConfig, NASConfig, StudyConfig, from_dict
from nas.secrets import mask_secrets
from nas.pruning import SameInitPruner
from nas.session import Session
from nas.storage import StudyStorage, reap_dead_trials
from search_spaces import ConfigError

COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)  # what n_trials counts
METRIC = "val_loss"


def make_sampler(cfg: NASConfig, worker_index: int = 0) -> optuna.samplers.BaseSampler:
    """Each worker gets its own seed (seed + index): equal seeds would propose equal trials."""
    seed = cfg.seed + worker_index
    if cfg.study.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # constant_liar: running trials count as bad, so parallel workers do not pile onto one region.
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=cfg.study.n_startup_trials, constant_liar=True)


def make_pruner(cfg: NASConfig) -> optuna.pruners.BasePruner:
    """Never prune at step 0: random-init controls start far worse than warm trials by design; and
    judge each trial only against trials of its own init (`nas.pruning.SameInitPruner`)."""
    s = cfg.study
    if s.pruner == "median":
        return SameInitPruner(optuna.pruners.MedianPruner(n_startup_trials=s.n_startup_trials,
                                                          n_warmup_steps=s.eval_every))
    if s.pruner == "hyperband":
        return SameInitPruner(optuna.pruners.HyperbandPruner(min_resource=s.eval_every, max_resource=s.steps))
    return optuna.pruners.NopPruner()


def open_storage(cfg: NASConfig) -> StudyStorage:
    """The study's storage as a process that runs trials opens it (heartbeat on)."""
    return StudyStorage.open(cfg.storage, cfg.artifacts_dir, heartbeat_interval=cfg.study.heartbeat_interval,
                             max_retry=cfg.study.max_retry)


def study_attrs(cfg: NASConfig) -> dict[str, Any]:
    return {attrs.STUDY_SPACE: cfg.space["name"], attrs.STUDY_DATA: cfg.data.name, attrs.STUDY_METRIC: METRIC,
            attrs.STUDY_CONFIG: compact_config(cfg), attrs.STUDY_PACKAGE_VERSION: __version__}


# Run-local keys a worker that joins by hand still defaults to (it runs until the study has n_trials).
JOIN_DEFAULT_KEYS = ("n_trials", "artifacts_dir")


def compact_config(cfg: NASConfig) -> dict[str, Any]:
    """The study's `config` attr: only what defines the study, secrets masked. `optuna studies` prints
    every study attr on one row, and the whole composed config (pretrain block included) made it
    ~2,000 characters wide. Kept: space and data whole, seed, the hypernet and study keys that differ
    from their defaults, `JOIN_DEFAULT_KEYS`; `expand_config` rebuilds the full config (defaults
    filled by `from_dict`, so they are those of the logah-nas version that reads it)."""
    full = mask_secrets(cfg.to_dict())
    out: dict[str, Any] = {"space": full["space"], "data": full["data"], "seed": full["seed"]}
    for group, cls in (("hypernet", HypernetConfig), ("study", StudyConfig)):
        defaults = _plain(asdict(cls()))
        out[group] = {k: v for k, v in full[group].items() if _plain(v) != defaults.get(k)}
    out.update({k: full[k] for k in JOIN_DEFAULT_KEYS})
    return out


def _plain(value: Any) -> Any:
    """JSON's view of a value (tuples are lists), so a stored value compares equal to its default."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def expand_config(stored: dict[str, Any], study_name: str, storage_url: str) -> NASConfig:
    """The full config from a study's `config` attr (compact, or the full one older studies hold)."""
    return from_dict({**stored, "study_name": study_name, "storage": storage_url})


def create_study(cfg: NASConfig, storage: StudyStorage | None = None) -> optuna.Study:
    """Create the study or load it if it exists (then space and data must agree)."""
    storage = storage if storage is not None else open_storage(cfg)
    study = optuna.create_study(study_name=cfg.study_name, storage=storage.optuna, sampler=make_sampler(cfg),
                                pruner=make_pruner(cfg), direction="minimize", load_if_exists=True)
    stored = study.user_attrs
    if attrs.STUDY_SPACE in stored:
        if (stored.get(attrs.STUDY_SPACE), stored.get(attrs.STUDY_DATA)) != (cfg.space["name"], cfg.data.name):
            raise ConfigError("study_name", cfg.study_name,
                              f"a new name: study {cfg.study_name!r} in {storage.masked_url} searches "
                              f"space={stored.get(attrs.STUDY_SPACE)} on data={stored.get(attrs.STUDY_DATA)}")
        changed = config_changes(_stored_full(stored.get(attrs.STUDY_CONFIG), cfg), mask_secrets(cfg.to_dict()))
        if changed:  # workers run the stored config: a silent mix of two settings in one study
            raise ConfigError("study_name", cfg.study_name,
                              f"a new name, or the study's own settings: study {cfg.study_name!r} was created with "
                              f"different values of {changed}")
    else:
        for key, value in {**study_attrs(cfg), attrs.STUDY_UID: uuid.uuid4().hex}.items():
            study.set_user_attr(key, value)
    return study


def _stored_full(stored: Any, cfg: NASConfig) -> dict[str, Any]:
    """A stored (compact) config made comparable with `cfg.to_dict()`: defaults filled in."""
    if not isinstance(stored, dict):
        return {}
    try:
        return mask_secrets(expand_config(stored, cfg.study_name, cfg.storage).to_dict())
    except ConfigError:  # a config this version cannot read: compare what is there
        return stored


LOCAL_KEYS = {"storage", "artifacts_dir", "export_dir", "device", "n_trials", "workers", "worker_restarts", "trial", "port",
              "pretrain"}


def config_changes(stored: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ, ignoring what may differ between runs and machines."""
    def flat(d: Any, prefix: str = "") -> dict[str, Any]:
        if not isinstance(d, dict):
            return {prefix: list(d) if isinstance(d, tuple) else d}
        out: dict[str, Any] = {}
        for k, v in d.items():
            if prefix or k not in LOCAL_KEYS:
                out.update(flat(v, f"{prefix}{k}."))
        return out

    a, b = flat(stored), flat(new)
    return sorted(k.rstrip(".") for k in set(a) | set(b) if a.get(k) != b.get(k))


def stored_config(storage: StudyStorage | str, study_name: str, overrides: dict[str, Any] | None = None) -> NASConfig:
    """The config a study was created with (for workers joining it), with `overrides` applied
    (storage, artifacts_dir, device: what differs between machines)."""
    if isinstance(storage, str):
        storage = StudyStorage.open(storage)
    study = storage.load_study(study_name)
    d = study.user_attrs.get(attrs.STUDY_CONFIG)
    if not isinstance(d, dict):
        raise ConfigError("study_name", study_name, "a study created by `logah-nas search` (it has no config attr)")
    overrides = overrides or {}
    return expand_config({**d, **overrides}, study_name, overrides.get("storage", storage.url))


def open_session(cfg: NASConfig, worker_index: int = 0, create: bool = False,
                 storage: StudyStorage | None = None) -> Session:
    """Load data and space, open (or create) the study, make sure hypernet version 0 exists; a study
    created here with warm trials and a pretrained hypernet gets hypernet-screened startup trials.
    `storage`: the process's already opened storage (else opened here, heartbeat on)."""
    from nas.hypernets import ensure_initial_version, initial_hypernet

    dataset = cfg.data.load()
    space = cfg.make_space(**dataset.space_options())
    storage = storage if storage is not None else open_storage(cfg)
    initial = None
    if create:
        initial = initial_hypernet(cfg.hypernet, space, dataset, seed=cfg.seed)  # a bad checkpoint fails before the study exists
        create_study(cfg, storage)
    study = optuna.load_study(study_name=cfg.study_name, storage=storage.optuna,
                              sampler=make_sampler(cfg, worker_index), pruner=make_pruner(cfg))
    ensure_initial_version(storage, study, cfg.hypernet, space, initial=initial, seed=cfg.seed)
    if initial is not None and initial.pretrained:  # an untrained hypernet ranks at random
        from nas.screen import enqueue_screened

        enqueue_screened(study, initial.hn, space, dataset, cfg)
    return Session(cfg, study, dataset, space, storage)


def n_counted(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=COUNTED))


class StopOnFailures:
    """Stop this worker after `limit` failed trials in a row (a broken setup, not bad luck)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.in_a_row, self.tripped = limit, 0, False
        self.last_reason = ""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state == TrialState.FAIL:
            self.in_a_row += 1
            self.last_reason = str(trial.user_attrs.get("fail_reason", "unknown"))
            if self.in_a_row >= self.limit:
                self.tripped = True
                study.stop()
        else:
            self.in_a_row = 0


def run_trials(session: Session, callbacks: list | None = None) -> StopOnFailures:
    """Run trials until the study has `n_trials` COMPLETE + PRUNED ones (counted across workers)."""
    from nas.objective import Objective
    from nas.refit import RefitCallback

    cfg, study = session.cfg, session.study
    guard = StopOnFailures(cfg.study.max_consecutive_failures)
    if n_counted(study) >= cfg.n_trials:
        return guard
    reap_dead_trials(study)
    objective = Objective(session)
    refits = [RefitCallback(session)] if cfg.hypernet.refit_in == "worker" else []  # else: nas.refitter
    all_callbacks = [MaxTrialsCallback(cfg.n_trials, states=COUNTED), lambda s, _: reap_dead_trials(s), *refits,
                     guard, *(callbacks or [])]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, callbacks=all_callbacks, catch=(Exception,), gc_after_trial=False)
    return guard


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    return min(complete, key=lambda t: t.value) if complete else None


def export_note(study: optuna.Study, exported: FrozenTrial) -> str | None:
    """A line for the export commands when the best trial overall (what `optuna best-trial` shows)
    is not the exported one (the default export is the best warm-started trial): which it is, and
    how to export it. None when they are the same trial."""
    best = best_trial(study)
    if best is None or best.number == exported.number:
        return None
    init = "warm-started" if best.user_attrs.get(attrs.WARM_START) else "random-init control"
    how = (f"export it with: logah-nas export trial={best.number}" if attrs.WEIGHTS in best.user_attrs
           else "it has no saved weights to export")
    return (f"note: the best trial overall (`optuna best-trial`) is #{best.number} ({METRIC}={best.value:.4f}, "
            f"{init}), not the exported #{exported.number} ({METRIC}={exported.value:.4f}); {how}")


__all__ = ["COUNTED", "METRIC", "Session", "StopOnFailures", "best_trial", "compact_config", "create_study",
           "expand_config", "export_note", "make_pruner",
           "make_sampler", "n_counted", "open_session", "open_storage", "run_trials", "stored_config",
           "study_attrs"]
