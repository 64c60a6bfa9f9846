"""Export a study's trial (best by default) as a self-contained model directory with provenance.

Provenance says exactly where the weights came from: study, trial, metric, the hypernet version
that warm-started it (and its checkpoint's sha256), seed and data, with the storage URL masked.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from nas import attrs
from nas.secrets import mask_url
from nas.versions import get_version
from search_spaces import ConfigError, build_model, config_from_dict

if TYPE_CHECKING:
    from nas.storage import StudyStorage



def select_trial(study: optuna.Study, number: int | None = None) -> FrozenTrial:
    """Trial `number`, or the best warm-started one (the product of the search; random-init control
    trials only measure the warm-start gain), or, if no warm-started trial completed, the best one.
    It must be COMPLETE with saved weights."""
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.value is not None and attrs.WEIGHTS in t.user_attrs]
    if number is None:
        if not complete:
            raise ConfigError("trial", None, f"a completed trial, but study {study.study_name!r} has none yet")
        warm = [t for t in complete if t.user_attrs.get(attrs.WARM_START)]
        return min(warm or complete, key=lambda t: t.value)
    by_number = {t.number: t for t in complete}
    if number not in by_number:
        raise ConfigError("trial", number, f"a completed trial of study {study.study_name!r} with weights: "
                                           f"{sorted(by_number)}")
    return by_number[number]


def load_trial_model(trial: FrozenTrial, artifact_store) -> torch.nn.Module:
    """The trained model of a trial, rebuilt from its config and its weights artifact."""
    from safetensors.torch import load_file

    model = build_model(config_from_dict(trial.user_attrs[attrs.CONFIG]))
    with tempfile.TemporaryDirectory(prefix="logah-x-") as tmp:
        path = Path(tmp) / "weights.safetensors"
        optuna.artifacts.download_artifact(artifact_store=artifact_store, file_path=str(path),
                                           artifact_id=trial.user_attrs[attrs.WEIGHTS])
        try:
            tensors = load_file(str(path))
        except Exception as exc:  # SafetensorError and friends name neither the trial nor the artifact
            raise ValueError(f"trial {trial.number}: weights artifact {trial.user_attrs[attrs.WEIGHTS]} is corrupt "
                             f"or truncated ({exc})") from None
    params = dict(model.named_parameters())
    if set(tensors) != set(params):
        raise ValueError(f"trial {trial.number}: weights artifact has tensors {sorted(set(tensors) ^ set(params))} "
                         "that do not match its config")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(tensors[name])
    return model.eval()


def provenance(study: optuna.Study, trial: FrozenTrial, *, storage_url: str, engine=None) -> dict[str, Any]:
    ua, sattrs = trial.user_attrs, study.user_attrs
    config = sattrs.get(attrs.STUDY_CONFIG) or {}
    version = ua.get(attrs.HYPERNET_VERSION)
    hn = None
    if version is not None and engine is not None:
        row = get_version(engine, study.study_name, int(version))
        if row is not None:
            hn = {"version": row.version, "sha256": row.sha256, "artifact_id": row.artifact_id,
                  "val_loss": row.val_loss, "note": row.note}
    return {
        "study": study.study_name,
        "storage": mask_url(storage_url),
        "trial": trial.number,
        "metric": sattrs.get(attrs.STUDY_METRIC, "val_loss"),
        "value": trial.value,
        "val_accuracy": ua.get(attrs.VAL_ACCURACY),
        "val_perplexity": ua.get(attrs.VAL_PERPLEXITY),
        "warm_start": ua.get(attrs.WARM_START),
        "hypernet_version": version,
        "hypernet": hn,
        "warm_strength": ua.get(attrs.WARM_STRENGTH),  # init + strength * (prediction - init); None: random init
        "params": trial.params,
        "seed": config.get("seed"),
        "data": config.get("data") or {"name": sattrs.get(attrs.STUDY_DATA)},
        "space": sattrs.get(attrs.STUDY_SPACE),
        "train": config.get("study"),
    }


def export_trial(storage: StudyStorage, study: optuna.Study, export_dir: str | Path, *,
                 trial_number: int | None = None, overwrite: bool = True) -> Path:
    """Write `<export_dir>/<study>-trial<N>/` (model.safetensors, config.json, provenance.json)."""
    return export_trial_from(study, storage.artifacts, export_dir, storage_url=storage.url, engine=storage.engine,
                             trial_number=trial_number, overwrite=overwrite)


def export_trial_from(study: optuna.Study, artifact_store, export_dir: str | Path, *, storage_url: str,
                      engine=None, trial_number: int | None = None, overwrite: bool = True) -> Path:
    """`export_trial` from the parts of a storage (the dashboard reads through its own read-only
    connection, not a `StudyStorage`)."""
    from nas.export import export_model

    trial = select_trial(study, trial_number)
    model = load_trial_model(trial, artifact_store)
    out = Path(export_dir) / f"{study.study_name}-trial{trial.number}"
    return export_model(model, out, provenance=provenance(study, trial, storage_url=storage_url, engine=engine),
                        overwrite=overwrite)


__all__ = ["export_trial", "export_trial_from", "load_trial_model", "provenance", "select_trial"]
