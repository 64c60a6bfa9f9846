"""A study's hypernets: version 0, loading a recorded version, the per-process cache, and scoring a
prediction on the val split.

All state lives in the study's database (`nas.versions`) and artifact store, so any worker on any
machine sees the same versions. Version 0 is registered when the study is created: the given
checkpoint, the shipped pretrained one for the space (`hypernet.pretrained_path`), or a random LoGAH
of the configured variant. Later versions come from refits (`nas.refit`).
"""
from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import torch

from nas.train_loop import evaluate
from nas.versions import HypernetVersion, VersionExistsError, get_version, latest_promoted, record_version
from search_spaces import ModelConfig, build_model

if TYPE_CHECKING:
    from nas.storage import StudyStorage

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InitialHypernet:
    """Version 0 before it is recorded: the hypernet, its note, and whether it was loaded from a
    checkpoint (only a trained hypernet's scores are worth screening architectures with)."""
    hn: Any
    note: str
    pretrained: bool


def initial_hypernet(hcfg, space) -> InitialHypernet:
    """Version 0 following `hypernet.checkpoint` (auto | none | path)."""
    from hypernet import LoGAH, LoGAHConfig, load_checkpoint, pretrained_path

    signature = space.signature()
    if hcfg.checkpoint not in ("auto", "none"):
        hn, _ = load_checkpoint(hcfg.checkpoint, expected_signature=signature)
        return InitialHypernet(hn, f"checkpoint {Path(hcfg.checkpoint).name}", pretrained=True)
    if hcfg.checkpoint == "auto":
        path = pretrained_path(signature)
        if path is not None:
            hn, _ = load_checkpoint(path, expected_signature=signature)
            if hn.config.variant != hcfg.variant:
                _log.warning("using the shipped %s checkpoint %s although hypernet.variant=%s "
                             "(set hypernet.checkpoint=none for a random %s)", hn.config.variant, path.name,
                             hcfg.variant, hcfg.variant)
            return InitialHypernet(hn, f"pretrained {path.name}", pretrained=True)
    hn = LoGAH(LoGAHConfig(variant=hcfg.variant, space_signature=signature))
    return InitialHypernet(hn, f"random init LoGAH-{hcfg.variant}" + (" (no shipped checkpoint for this space)"
                                                                       if hcfg.checkpoint == "auto" else ""),
                           pretrained=False)


def upload_checkpoint(hn, study: optuna.Study, artifact_store, meta: dict[str, Any]) -> tuple[str, str]:
    """Save `hn` as a checkpoint artifact of the study; returns (artifact_id, payload sha256)."""
    from hypernet import save_checkpoint

    with tempfile.TemporaryDirectory(prefix="logah-hn-") as tmp:
        path = Path(tmp) / f"hypernet-{meta.get('version', 'new')}.safetensors"
        sha = save_checkpoint(hn, path, meta)
        artifact_id = optuna.artifacts.upload_artifact(
            artifact_store=artifact_store, file_path=str(path), study_or_trial=study,
            mimetype="application/octet-stream")
    return artifact_id, sha


def ensure_initial_version(storage: StudyStorage, study: optuna.Study, hcfg, space,
                           initial: InitialHypernet | None = None) -> HypernetVersion:
    """Register version 0 once per study (a no-op when it exists; safe if two processes race).

    `initial` is `initial_hypernet(hcfg, space)` when the caller already built it."""
    existing = get_version(storage.engine, study.study_name, 0)
    if existing is not None:
        return existing
    t0 = time.perf_counter()
    initial = initial if initial is not None else initial_hypernet(hcfg, space)
    artifact_id, sha = upload_checkpoint(initial.hn, study, storage.artifacts, {"study": study.study_name, "version": 0})
    try:
        return record_version(storage.engine, study.study_name, version=0, artifact_id=artifact_id, sha256=sha,
                              promoted=True, trials_used=0, device="cpu", seconds=time.perf_counter() - t0,
                              note=initial.note)
    except VersionExistsError:  # another process registered it first: use theirs
        return get_version(storage.engine, study.study_name, 0)


def load_version(version: HypernetVersion, artifact_store, map_location: str | torch.device = "cpu"):
    """The hypernet of a recorded version, checksum-verified against the versions table."""
    from hypernet import CheckpointError, load_checkpoint

    with tempfile.TemporaryDirectory(prefix="logah-hn-") as tmp:
        path = Path(tmp) / "hypernet.safetensors"
        optuna.artifacts.download_artifact(artifact_store=artifact_store, file_path=str(path),
                                           artifact_id=version.artifact_id)
        hn, meta = load_checkpoint(path, map_location=map_location)
    if meta.get("sha256") != version.sha256:
        raise CheckpointError(f"hypernet version {version.version} of study {version.study_name!r}: artifact "
                              f"{version.artifact_id} has sha256 {meta.get('sha256')}, the table says {version.sha256}")
    return hn.eval()


class HypernetCache:
    """The newest promoted hypernet of a study, loaded once per process and version."""

    def __init__(self, storage: StudyStorage, study_name: str) -> None:
        self.storage, self.study_name = storage, study_name
        self._version: HypernetVersion | None = None
        self._hn = None

    def latest(self) -> tuple[HypernetVersion, Any]:
        version = latest_promoted(self.storage.engine, self.study_name)
        if version is None:
            raise RuntimeError(f"study {self.study_name!r} has no hypernet version; create the study with "
                               "`logah-nas search` before starting workers")
        if self._version is None or version.id != self._version.id:
            self._hn = load_version(version, self.storage.artifacts)
            self._version = version
        return self._version, self._hn


@torch.no_grad()
def predicted_val_loss(hn, config: ModelConfig, dataset, *, init_seed: int, batch_size: int, batches: int,
                       device: torch.device | str = "cpu") -> float:
    """Val loss of `config` with the hypernet's parameters (full strength, no training)."""
    model = hn.apply(build_model(config, seed=init_seed))
    context = getattr(config, "context", None) if dataset.kind == "text" else None
    metrics = evaluate(model.to(device), dataset, batch_size=batch_size, batches=batches, context=context,
                       device=device)
    return metrics["val_loss"]


__all__ = ["HypernetCache", "InitialHypernet", "ensure_initial_version", "initial_hypernet", "load_version",
           "predicted_val_loss", "upload_checkpoint"]
