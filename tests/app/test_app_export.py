"""app.export: a trial's model as a .zip, and every way that fails as an ArtifactError."""
import io
import json
import zipfile

import optuna
import pytest
import torch
from safetensors.torch import load_file

from app import analysis, export
from app.reader import ArtifactError, Reader
from _apptest import digest


def test_export_zip_roundtrip_and_db_untouched(demo, tmp_path):
    from nas.artifacts import load_trial_model
    from nas.export import load_exported

    before = digest(demo["db"])
    reader = Reader(demo["url"])
    study = reader.study("vit-digits")
    best = analysis.best_trial(study)
    blob = export.export_zip(study, best, demo["artifacts"], "postgresql://bob:hunter2@h/db", engine=reader.engine)
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        names = sorted(zf.namelist())
        zf.extractall(tmp_path)
    folder = export.export_name("vit-digits", best.number)
    expected = {f"{folder}/{name}" for name in ("config.json", "model.safetensors", "provenance.json", "README.md")}
    assert expected <= set(names)
    provenance = json.loads((tmp_path / folder / "provenance.json").read_text())
    assert provenance["trial"] == best.number and provenance["storage"] == "postgresql://bob:***@h/db"
    assert provenance["hypernet_version"] == best.user_attrs["hypernet_version"]
    model, config = load_exported(tmp_path / folder)
    assert config.to_dict() == best.user_attrs["config"]
    stored = load_trial_model(best, optuna.artifacts.FileSystemArtifactStore(demo["artifacts"]))
    for (name, a), (_, b) in zip(model.state_dict().items(), stored.state_dict().items()):
        assert torch.equal(a, b), name
    reader.close()
    assert digest(demo["db"]) == before


@pytest.fixture
def broken(demo, tmp_path):
    """(study, best trial, a copy of the artifact store we may damage, the best trial's weights file)."""
    import shutil

    copy = tmp_path / "artifacts"
    shutil.copytree(demo["artifacts"], copy)
    study = Reader(demo["url"]).study("vit-digits")
    best = analysis.best_trial(study)
    return study, best, copy, copy / best.user_attrs["weights_artifact_id"]


def test_export_errors_are_artifact_errors(demo, broken, tmp_path):
    study, best, store, weights = broken
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ArtifactError, match="is corrupt"):
        export.export_zip(study, best, store, demo["url"])
    weights.unlink()
    with pytest.raises(ArtifactError, match="not found in"):
        export.export_zip(study, best, store, demo["url"])
    with pytest.raises(ArtifactError, match="does not exist"):
        export.export_zip(study, best, tmp_path / "nowhere", demo["url"])
    plain = next(t for t in study.trials if not t.user_attrs.get("weights_artifact_id"))
    with pytest.raises(ArtifactError, match="no weights"):
        export.export_zip(study, plain, store, demo["url"])


def test_export_rejects_weights_of_another_architecture(demo, broken):
    from safetensors.torch import save_file

    study, best, store, weights = broken
    tensors = load_file(weights)
    tensors[next(iter(tensors))] = torch.zeros(3, 3)
    save_file(tensors, weights)
    with pytest.raises(ArtifactError, match="does not match its config"):
        export.export_zip(study, best, store, demo["url"])
    del tensors["head.bias"]
    save_file(tensors, weights)
    with pytest.raises(ArtifactError, match="does not match its config"):
        export.export_zip(study, best, store, demo["url"])
