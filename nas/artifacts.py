"""Export a study's trial (best by default) as a self-contained model directory with provenance.

Provenance says exactly where the weights came from: study, trial, metric, the hypernet version
that warm-started it (and its checkpoint's sha256), seed and data, with the storage URL masked.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from nas import attrs
from nas.secrets import mask_url
from nas.versions import get_version
from search_spaces import ConfigError, ViT, build_model, config_from_dict

if TYPE_CHECKING:
    from nas.storage import StudyStorage

_log = logging.getLogger(__name__)



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
    config = _full_config(sattrs.get(attrs.STUDY_CONFIG) or {}, study.study_name, storage_url)
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
        "safety": ua.get(attrs.SAFETY),  # the safety net's outcome and the strength the trial really started from
        "params": trial.params,
        "seed": config.get("seed"),
        "data": config.get("data") or {"name": sattrs.get(attrs.STUDY_DATA)},
        "space": sattrs.get(attrs.STUDY_SPACE),
        "train": config.get("study"),
    }


def _full_config(stored: dict[str, Any], study_name: str, storage_url: str) -> dict[str, Any]:
    """The study's whole config (its attr is compact: `nas.study.compact_config`), secrets masked; the
    stored dict itself when this version cannot rebuild it."""
    from nas.secrets import mask_secrets
    from nas.study import expand_config

    try:
        return mask_secrets(expand_config(stored, study_name, storage_url).to_dict())
    except (ValueError, TypeError, KeyError) as exc:  # ConfigError is a ValueError
        _log.warning("provenance from the stored config as it is (%s)", exc)
        return stored


def export_trial(storage: StudyStorage, study: optuna.Study, export_dir: str | Path, *,
                 trial_number: int | None = None, overwrite: bool = True, dataset=None) -> Path:
    """Write `<export_dir>/<study>-trial<N>/` (model.safetensors, config.json, provenance.json with the
    test metrics, model card, ...)."""
    path = export_trial_from(study, storage.artifacts, export_dir, storage_url=storage.url, engine=storage.engine,
                             trial_number=trial_number, overwrite=overwrite, dataset=dataset)
    prov = _exported_provenance(path)
    test = prov.get("test")
    if isinstance(test, dict):  # the dashboard shows it beside the trial (it cannot compute it: read-only)
        recorded = dict(study.user_attrs.get(attrs.STUDY_TEST_METRICS) or {})
        study.set_user_attr(attrs.STUDY_TEST_METRICS, {**recorded, str(prov["trial"]): test})
    return path


def _exported_provenance(path: str | Path) -> dict[str, Any]:
    import json

    from nas.export import PROVENANCE_NAME

    return json.loads((Path(path) / PROVENANCE_NAME).read_text())


def exported_test_metrics(path: str | Path) -> dict[str, Any] | None:
    """The `test` block of an export's provenance.json (None when the data was not loadable)."""
    test = _exported_provenance(path).get("test")
    return test if isinstance(test, dict) else None


def export_trial_from(study: optuna.Study, artifact_store, export_dir: str | Path, *, storage_url: str,
                      engine=None, trial_number: int | None = None, overwrite: bool = True,
                      dataset=None) -> Path:
    """`export_trial` from the parts of a storage (the dashboard reads through its own read-only
    connection, not a `StudyStorage`). The study's data set (`dataset`, else loaded from the study's
    config when this machine has it) gives the export its test metrics and image normalisation."""
    from nas.export import export_model
    from nas.hf_layout import image_stats

    trial = select_trial(study, trial_number)
    model = load_trial_model(trial, artifact_store)
    out = Path(export_dir) / f"{study.study_name}-trial{trial.number}"
    prov = provenance(study, trial, storage_url=storage_url, engine=engine)
    dataset = dataset if dataset is not None else study_dataset(prov.get("data"))
    if dataset is not None:
        prov["test"] = test_metrics(model, dataset, batch_size=max((prov.get("train") or {}).get("batch_sizes") or [64]))
    stats = image_stats(dataset) if isinstance(model, ViT) and getattr(dataset, "kind", None) == "image" else None
    return export_model(model, out, provenance=prov, overwrite=overwrite, image_stats=stats)


def study_dataset(data: Any):
    """The study's data set, or None when it cannot be loaded here (e.g. CIFAR files only on the
    search machine): the export then has no test metrics nor image processor, and says so."""
    from nas.data import load_dataset

    if not isinstance(data, dict) or not data.get("name"):
        return None
    try:
        return load_dataset(data["name"], **(data.get("options") or {}))
    except (FileNotFoundError, ValueError, ImportError) as exc:  # ConfigError is a ValueError
        _log.warning("export without test metrics or image processor: data %s not loadable here (%s)",
                     data["name"], exc)
        return None


@torch.no_grad()
def test_metrics(model: torch.nn.Module, dataset, *, batch_size: int = 64) -> dict[str, Any]:
    """The model on the whole test split (never used to select it): loss, and accuracy for images or
    perplexity for text, with the number of examples (images, or predicted tokens)."""
    import math

    from nas.train_loop import evaluate

    context = getattr(model.config, "context", None) if dataset.kind == "text" else None
    metrics = evaluate(model, dataset, batch_size=batch_size, batches=None, context=context, split="test")
    out: dict[str, Any] = {"split": "test", "data": dataset.name, "loss": metrics["test_loss"]}
    if dataset.kind == "image":
        out["accuracy"] = metrics["test_accuracy"]
        out["examples"] = dataset.num_examples("test")
    else:
        out["perplexity"] = math.exp(min(metrics["test_loss"], 700.0))
        out["examples"] = (dataset.num_examples("test") - 1) // context * context
    return out


__all__ = ["export_trial", "export_trial_from", "load_trial_model", "provenance", "select_trial", "study_dataset",
           "test_metrics", "exported_test_metrics"]
