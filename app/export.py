"""A trial's model as a downloadable .zip, built without touching the study database.

The work is `nas.artifacts.export_trial_from` (weights from the artifact store, checked against the
trial's `config` attr, written by `nas.export.export_model` with provenance). Here it runs in a
temporary directory, is zipped in memory, and every way it can fail becomes an `ArtifactError`
the page can show while the rest of the page keeps working.
"""
from __future__ import annotations

import io
import os
import tempfile
import zipfile
from pathlib import Path

import optuna
import sqlalchemy as sa
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial

from app.reader import ArtifactError, short_error
from nas.attrs import CONFIG, WEIGHTS
from nas.storage import ARTIFACTS_ENV, is_object_store, make_artifact_store


def export_name(study_name: str, number: int) -> str:
    """Folder (and .zip) name of an export: `<study>-trial<N>`, as `nas.artifacts` names it."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in study_name)
    return f"{safe}-trial{number}"


def export_zip(study: optuna.Study, trial: FrozenTrial, artifact_dir: str | os.PathLike, storage_url: str,
               engine: sa.engine.Engine | None = None) -> bytes:
    """The exported trial (model.safetensors, config.json, provenance.json) as zip bytes.

    `engine` (read-only is fine) lets the provenance name the hypernet version's checkpoint.
    """
    from safetensors import SafetensorError

    from nas.artifacts import export_trial_from
    from search_spaces import ConfigError

    what = f"trial {trial.number}"
    artifact_id = trial.user_attrs.get(WEIGHTS)
    if not artifact_id:
        raise ArtifactError(f"{what} has no weights (no {WEIGHTS!r} attr)")
    if not isinstance(trial.user_attrs.get(CONFIG), dict):
        raise ArtifactError(f"{what} has no {CONFIG!r} attr to rebuild its model from")
    base = Path(artifact_dir)
    if is_object_store(str(artifact_dir)):  # s3://bucket/prefix: workers on machines without a shared disk
        store = make_artifact_store(str(artifact_dir))
    elif not base.is_dir():
        raise ArtifactError(f"artifact store {base} does not exist (set --artifacts DIR or {ARTIFACTS_ENV})")
    else:
        store = optuna.artifacts.FileSystemArtifactStore(str(base))
    with tempfile.TemporaryDirectory(prefix="logah-dashboard-") as tmp:
        try:
            out = export_trial_from(study, store, tmp, storage_url=storage_url, engine=engine,
                                    trial_number=trial.number)
        except (ArtifactNotFound, FileNotFoundError) as e:
            raise ArtifactError(f"weights artifact {artifact_id} of {what} not found in {base}: "
                                f"{short_error(e)}") from None
        except SafetensorError as e:
            raise ArtifactError(f"weights artifact {artifact_id} of {what} is corrupt: {short_error(e)}") from None
        except ConfigError as e:
            raise ArtifactError(f"cannot export {what}: {short_error(e)}") from None
        except (ValueError, RuntimeError) as e:  # names or shapes that do not fit the config
            raise ArtifactError(f"weights artifact {artifact_id} of {what} does not match its config: "
                                f"{short_error(e)}") from None
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in sorted(out.iterdir()):
                zf.write(f, f"{out.name}/{f.name}")
    return buffer.getvalue()
