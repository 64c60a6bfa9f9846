"""A study's hypernets: version 0, loading a recorded version, the per-process cache, and scoring a
prediction on the val split.

All state lives in the study's database (`nas.versions`) and artifact store, so any worker on any
machine sees the same versions. Version 0 is registered when the study is created: the given
checkpoint, the shipped pretrained one for the space and data, the closest shipped one of the same
space kind transferred to the study's space (`nas.checkpoint_choice`), or a random LoGAH of the
configured variant. Later versions come from refits (`nas.refit`).
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


def initial_hypernet(hcfg, space, dataset=None, *, seed: int = 0) -> InitialHypernet:
    """Version 0 following `hypernet.checkpoint` (auto | none | path). With the study's `dataset`,
    `auto` takes a shipped checkpoint of the same data that saw none of its val/test examples, else
    transfers the closest one of the space kind that saw none either, else a random LoGAH; a given
    checkpoint that saw some is refused (`nas.checkpoint_choice`).

    A random LoGAH is drawn from `seed` (the study's), so a study rerun with its seed starts from the
    same version 0 and its refits repeat; the caller's global RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _initial_hypernet(hcfg, space, dataset)


def _initial_hypernet(hcfg, space, dataset) -> InitialHypernet:
    from hypernet import LoGAH, LoGAHConfig, load_checkpoint, pretrained_path, transfer

    from nas.checkpoint_choice import Choice, check_given, choose_shipped

    signature = space.signature()
    if hcfg.checkpoint not in ("auto", "none"):
        hn, meta = load_checkpoint(hcfg.checkpoint, expected_signature=signature)
        if dataset is not None:
            check_given(hcfg.checkpoint, meta, dataset)
        return InitialHypernet(hn, f"checkpoint {Path(hcfg.checkpoint).name}", pretrained=True)
    why = "no shipped checkpoint for this space"
    if hcfg.checkpoint == "auto":
        if dataset is not None:
            choice = choose_shipped(signature, dataset)
        else:
            found = pretrained_path(signature)
            choice = Choice(found, f"pretrained {found.name}" if found is not None else why)
        path, why = choice.path, choice.note
        if path is not None:
            hn, _ = load_checkpoint(path, expected_signature=None if choice.transfer else signature)
            if choice.transfer:
                hn = transfer(hn, signature, choice.keep_init)
                _log.warning("hypernet version 0 is %s", choice.note)
            if hn.config.variant != hcfg.variant:
                _log.warning("using the shipped %s checkpoint %s although hypernet.variant=%s "
                             "(set hypernet.checkpoint=none for a random %s)", hn.config.variant, path.name,
                             hcfg.variant, hcfg.variant)
            # a hypernet that leaves the classifier (or token table) at init cannot rank architectures
            return InitialHypernet(hn, choice.note, pretrained=not choice.keep_init)
        _log.warning("hypernet version 0 is a random LoGAH-%s: %s", hcfg.variant, why)
    hn = LoGAH(LoGAHConfig(variant=hcfg.variant, space_signature=signature))
    return InitialHypernet(hn, f"random init LoGAH-{hcfg.variant}" + (f" ({why})" if hcfg.checkpoint == "auto" else ""),
                           pretrained=False)


CHECKPOINT_ID_PREFIX = "hypernet-sha256-"


def upload_checkpoint(hn, study: optuna.Study, artifact_store, meta: dict[str, Any]) -> tuple[str, str]:
    """Save `hn` as a checkpoint artifact of the study; returns (artifact_id, payload sha256).

    The artifact id is a hash of the content (`content_id`): every study that starts from the
    shipped checkpoint (~7 MB) shares one copy in the artifact store instead of uploading its own.
    The study still lists the artifact (Optuna's artifact meta, as `upload_artifact` records it)."""
    from hypernet import save_checkpoint

    with tempfile.TemporaryDirectory(prefix="logah-hn-") as tmp:
        path = Path(tmp) / f"hypernet-{meta.get('version', 'new')}.safetensors"
        sha = save_checkpoint(hn, path, meta)
        artifact_id = content_id(path)
        if not _artifact_exists(artifact_store, artifact_id):
            with open(path, "rb") as f:
                artifact_store.write(artifact_id, f)  # concurrent writers of one id write equal bytes
        _link_artifact(study, artifact_id, path.name)
    return artifact_id, sha


def content_id(path: str | Path) -> str:
    """The artifact id of a checkpoint's content: the sha256 of its canonical header (config, space,
    meta and the payload's sha256). Not the file's hash: safetensors writes the header keys in a
    different order on every save, so equal checkpoints are rarely equal files."""
    import hashlib
    import json

    from hypernet import read_header

    canonical = json.dumps(read_header(path), sort_keys=True, separators=(",", ":"))
    return CHECKPOINT_ID_PREFIX + hashlib.sha256(canonical.encode()).hexdigest()


def _artifact_exists(artifact_store, artifact_id: str) -> bool:
    from optuna.artifacts.exceptions import ArtifactNotFound

    try:
        artifact_store.open_reader(artifact_id).close()
    except (ArtifactNotFound, FileNotFoundError):
        return False
    return True


def _link_artifact(study: optuna.Study, artifact_id: str, filename: str) -> None:
    """Record the artifact in the study's system attrs exactly as `optuna.artifacts.upload_artifact`
    does, so `optuna.artifacts.get_all_artifact_meta(study)` and optuna-dashboard list it."""
    import json
    from dataclasses import asdict

    from optuna.artifacts import ArtifactMeta
    from optuna.artifacts._upload import ARTIFACTS_ATTR_PREFIX  # the key upload_artifact uses

    meta = ArtifactMeta(artifact_id=artifact_id, filename=filename, mimetype="application/octet-stream", encoding=None)
    study._storage.set_study_system_attr(study._study_id, ARTIFACTS_ATTR_PREFIX + artifact_id, json.dumps(asdict(meta)))


def ensure_initial_version(storage: StudyStorage, study: optuna.Study, hcfg, space,
                           initial: InitialHypernet | None = None, *, seed: int = 0) -> HypernetVersion:
    """Register version 0 once per study (a no-op when it exists; safe if two processes race).

    `initial` is `initial_hypernet(hcfg, space, seed=seed)` when the caller already built it."""
    existing = get_version(storage.engine, study.study_name, 0)
    if existing is not None:
        return existing
    t0 = time.perf_counter()
    initial = initial if initial is not None else initial_hypernet(hcfg, space, seed=seed)
    # No study name in version 0's meta: equal initial hypernets are equal files, stored once (upload_checkpoint).
    artifact_id, sha = upload_checkpoint(initial.hn, study, storage.artifacts, {"version": 0})
    try:
        return record_version(storage.engine, study.study_name, version=0, artifact_id=artifact_id, sha256=sha,
                              promoted=True, trials_used=0, device="cpu", seconds=time.perf_counter() - t0,
                              note=initial.note)
    except VersionExistsError:  # another process registered it first: use theirs
        return get_version(storage.engine, study.study_name, 0)


def load_version(version: HypernetVersion, artifact_store, map_location: str | torch.device = "cpu", *,
                 with_meta: bool = False):
    """The hypernet of a recorded version, checksum-verified against the versions table
    (`with_meta`: and the metadata it was saved with, as `(hn, meta)`)."""
    from hypernet import CheckpointError, load_checkpoint

    with tempfile.TemporaryDirectory(prefix="logah-hn-") as tmp:
        path = Path(tmp) / "hypernet.safetensors"
        optuna.artifacts.download_artifact(artifact_store=artifact_store, file_path=str(path),
                                           artifact_id=version.artifact_id)
        hn, meta = load_checkpoint(path, map_location=map_location)
    if meta.get("sha256") != version.sha256:
        raise CheckpointError(f"hypernet version {version.version} of study {version.study_name!r}: artifact "
                              f"{version.artifact_id} has sha256 {meta.get('sha256')}, the table says {version.sha256}")
    return (hn.eval(), meta) if with_meta else hn.eval()


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
        # Not the row id alone: SQLite reuses a deleted study's row ids for a new study of its name.
        if self._version is None or (version.id, version.study_uid) != (self._version.id, self._version.study_uid):
            self._hn = load_version(version, self.storage.artifacts)
            self._version = version
        return self._version, self._hn


@torch.no_grad()
def predicted_val_loss(hn, config: ModelConfig, dataset, *, init_seed: int, batch_size: int, batches: int,
                       device: torch.device | str = "cpu", strength: float = 1.0) -> float:
    """Val loss of `config` with the hypernet's parameters (at `strength`, default full; no training)."""
    model = hn.apply(build_model(config, seed=init_seed), strength=strength)
    context = getattr(config, "context", None) if dataset.kind == "text" else None
    metrics = evaluate(model.to(device), dataset, batch_size=batch_size, batches=batches, context=context,
                       device=device)
    return metrics["val_loss"]


__all__ = ["CHECKPOINT_ID_PREFIX", "HypernetCache", "InitialHypernet", "content_id", "ensure_initial_version",
           "initial_hypernet", "load_version",
           "predicted_val_loss", "upload_checkpoint"]
