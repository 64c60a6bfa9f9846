"""app.data and app.export: read-only opening, frames, warm-start gain, importances, versions, export."""
import io
import json
import math
import sqlite3
import zipfile

import optuna
import pandas as pd
import pytest
import sqlalchemy as sa
import torch
from optuna.trial import TrialState
from safetensors.torch import load_file

import _studies
from app import data, export
from _apptest import digest


# ---------------------------------------------------------------------------- opening read-only

def test_readonly_url_sqlite_opens_file_read_only(demo):
    url, kwargs = data.readonly_url(demo["url"])
    assert url.startswith("sqlite:///file:") and "mode=ro" in url and "uri=true" in url and kwargs == {}
    engine = sa.create_engine(url)
    with pytest.raises(sa.exc.OperationalError, match="readonly"):
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE x (a INTEGER)"))
    engine.dispose()


def test_readonly_url_other_backends_and_errors(tmp_path):
    url, kwargs = data.readonly_url("postgresql+psycopg://u:pw@db.example/optuna")
    assert "default_transaction_read_only=on" in kwargs["connect_args"]["options"]
    _, kwargs = data.readonly_url("mysql+pymysql://u:pw@db/optuna")
    assert "READ ONLY" in kwargs["connect_args"]["init_command"]
    with pytest.raises(data.StorageError, match="no study database at .*nope.db"):
        data.readonly_url(f"sqlite:///{tmp_path / 'nope.db'}")
    with pytest.raises(data.StorageError, match="in-memory"):
        data.readonly_url("sqlite://")
    with pytest.raises(data.StorageError, match="read-only") as e:
        data.readonly_url("oracle://scott:tiger@host/db")
    assert "tiger" not in str(e.value)


def test_unreachable_server_error_is_masked():
    with pytest.raises(data.StorageError, match="cannot read study storage") as e:
        data.Reader("postgresql+psycopg://alice:s3cret@127.0.0.1:1/optuna")
    assert "s3cret" not in str(e.value) and "alice:***@" in str(e.value)


def test_reader_cannot_write_and_leaves_file_identical(demo):
    before = digest(demo["db"])
    reader = data.Reader(demo["url"])
    study = reader.study("vit-digits")
    with pytest.raises(Exception):
        reader.storage.set_study_user_attr(study._study_id, "touched", True)
    with pytest.raises(Exception):
        study.ask()
    reader.close()
    assert digest(demo["db"]) == before


def test_database_without_optuna_tables_has_no_studies(tmp_path):
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()  # a valid, empty SQLite file
    reader = data.Reader(f"sqlite:///{path}")
    assert reader.study_names() == [] and reader.studies().empty
    assert list(reader.studies().columns) == data.STUDY_COLUMNS
    with pytest.raises(data.StorageError, match="no studies"):
        reader.study("x")
    assert path.stat().st_size == 0


# ---------------------------------------------------------------------------- frames

def test_studies_frame(demo):
    reader = data.Reader(demo["url"])
    df = reader.studies().set_index("study")
    assert list(df.index) == ["legacy", "vit-digits"]
    vit = df.loc["vit-digits"]
    study = reader.study("vit-digits")
    assert vit["trials"] == len(study.trials) == vit[["complete", "pruned", "fail", "running", "waiting"]].sum()
    assert vit["best_value"] == pytest.approx(study.best_value)
    assert vit["space"] == "vit" and vit["direction"] == "minimize" and 0 < vit["warm_share"] < 1
    assert vit["last_activity"] == max(t.datetime_complete for t in study.trials)
    assert pd.isna(df.loc["legacy", "space"]) and df.loc["legacy", "direction"] == "maximize"
    with pytest.raises(data.StorageError, match="no study named 'nope'"):
        reader.study("nope")


def test_trials_and_curves_frames_for_5000_trials():
    trials = _studies.numbered_trials(5000, seed=1)
    df = data.trials_frame(trials)
    assert len(df) == 5000 and df["number"].is_monotonic_increasing
    assert list(df.columns[:len(data.TRIAL_COLUMNS)]) == data.TRIAL_COLUMNS
    assert {c for c in df.columns if c.startswith("param_")} == {f"param_{k}" for k in trials[0].params}
    assert set(df["init"]) == {"warm", "random"} and set(df["state"]) == {"COMPLETE", "PRUNED", "FAIL"}
    assert df.loc[df["state"] == "COMPLETE", "value"].notna().all()
    assert df.loc[df["state"] != "COMPLETE", "value"].isna().all()
    assert df.loc[df["state"] != "COMPLETE", "fail_reason"].notna().all()
    curves = data.curves_frame(trials)
    assert len(curves) == sum(len(t.intermediate_values) for t in trials)
    assert curves.groupby("number")["step"].min().eq(0).all()
    first = trials[0]
    got = curves[curves["number"] == 0].set_index("step")["value"].to_dict()
    assert got == pytest.approx(first.intermediate_values)


def test_frames_of_trials_without_our_attrs(demo):
    reader = data.Reader(demo["url"])
    df = data.trials_frame(reader.trials("legacy"))
    assert (df["init"] == "unknown").all() and df["loss_step0"].isna().all() and not df["has_weights"].any()
    assert df["screen_loss"].isna().all()
    assert data.curves_frame(reader.trials("legacy")).empty
    assert data.trials_frame([]).empty and list(data.trials_frame([]).columns) == data.TRIAL_COLUMNS


def test_trials_key_changes_only_when_trials_change(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    writer = optuna.create_study(storage=url, study_name="s")
    writer.add_trials(_studies.synthetic_trials(5))
    reader = data.Reader(url)
    key = data.trials_key(reader.trials("s"))
    assert data.trials_key(reader.trials("s")) == key
    running = writer.ask()
    key2 = data.trials_key(reader.trials("s"))
    assert key2 != key
    running.report(1.0, 0)
    key3 = data.trials_key(reader.trials("s"))
    assert key3 != key2
    writer.tell(running, 0.5)
    assert data.trials_key(reader.trials("s")) != key3
    assert len(reader.trials("s")) == 6


def test_cached_frames_recomputed_only_when_trials_change(tmp_path, monkeypatch):
    from app import state

    url = f"sqlite:///{tmp_path / 'c.db'}"
    writer = optuna.create_study(storage=url, study_name="c")
    writer.add_trials(_studies.synthetic_trials(8))
    calls = []
    real = data.trials_frame
    monkeypatch.setattr(data, "trials_frame", lambda trials: calls.append(len(trials)) or real(trials))
    reader = state._reader(url)
    first, _ = state.frames(url, "c", state.trials_key(reader, "c"))
    again, _ = state.frames(url, "c", state.trials_key(reader, "c"))
    assert calls == [8] and first.equals(again)
    writer.add_trials(_studies.synthetic_trials(1, seed=9))
    updated, _ = state.frames(url, "c", state.trials_key(reader, "c"))
    assert calls == [8, 9] and len(updated) == 9


def test_filter_and_page():
    df = data.trials_frame(_studies.numbered_trials(120, seed=2))
    warm_complete = data.filter_trials(df, states=["COMPLETE"], inits=["warm"])
    assert len(warm_complete) and set(warm_complete["state"]) == {"COMPLETE"} and set(warm_complete["init"]) == {"warm"}
    lo, hi = df["value"].quantile([0.25, 0.75])
    ranged = data.filter_trials(df, value_range=(lo, hi))
    assert ranged["value"].between(lo, hi).all() and len(ranged) < df["value"].notna().sum()
    assert len(data.filter_trials(df)) == 120 and data.filter_trials(df, states=[]).empty
    rows, pages = data.page(df, 3, 50)
    assert pages == 3 and list(rows["number"]) == list(range(100, 120))
    assert list(data.page(df, 99, 50)[0]["number"]) == list(range(100, 120))  # clamped to the last page
    assert list(data.page(df, 0, 50)[0]["number"]) == list(range(50))
    empty, pages = data.page(df.iloc[:0], 1, 25)
    assert empty.empty and pages == 1
    with pytest.raises(ValueError, match="page size"):
        data.page(df, 1, 0)


# ---------------------------------------------------------------------------- warm start gain

def _frames(curves: dict[int, tuple[str, list[float]]], seconds: float = 10.0):
    trials = pd.DataFrame([{"number": n, "state": "COMPLETE", "value": v[-1], "init": init, "loss_step0": v[0],
                            "train_seconds": seconds, "predict_seconds": 1.0 if init == "warm" else 0.0}
                           for n, (init, v) in curves.items()])
    long = pd.DataFrame([{"number": n, "init": init, "step": 10 * i, "value": x}
                         for n, (init, v) in curves.items() for i, x in enumerate(v)])
    return trials, long


def test_warm_start_gain_numbers():
    trials, curves = _frames({0: ("warm", [1.0, 0.5, 0.4]), 1: ("warm", [1.2, 0.7, 0.6]),
                              2: ("random", [2.0, 1.0, 0.6]), 3: ("random", [2.2, 1.2, 0.9])})
    g = data.warm_start_gain(trials, curves, target=0.65)
    assert g.loc["loss at step 0 (mean)", "warm"] == pytest.approx(1.1)
    assert g.loc["loss at step 0 (mean)", "gain"] == pytest.approx(2.1 - 1.1)
    # trapezoid over steps 0,10,20 divided by 20: (a + 2b + c) / 4
    auc = g.loc["val-loss AUC (mean loss over training)"]
    assert auc["warm"] == pytest.approx(((1 + 1 + .4) + (1.2 + 1.4 + .6)) / 8)
    assert auc["random"] == pytest.approx(((2 + 2 + .6) + (2.2 + 2.4 + .9)) / 8)
    assert g.loc["steps to target (median)", "warm"] == 15  # trial 0 at step 10, trial 1 at step 20
    assert g.loc["steps to target (median)", "random"] == 20  # only trial 2 gets there
    assert g.loc["reached target", "warm"] == 1.0 and g.loc["reached target", "random"] == 0.5
    assert g.loc["steps to target (median)", "gain"] == pytest.approx(20 / 15)
    # seconds = predict + train * step / last step: warm (1+5, 1+10) -> 8.5; random 10
    assert g.loc["seconds to target (median)", "warm"] == pytest.approx(8.5)
    assert g.loc["seconds to target (median)", "gain"] == pytest.approx(10 / 8.5)
    assert data.default_target(trials) == pytest.approx(0.75)  # median final loss of random trials


def test_warm_start_gain_without_random_trials_is_nan_not_error():
    trials, curves = _frames({0: ("warm", [1.0, 0.5]), 1: ("warm", [1.1, 0.6])})
    g = data.warm_start_gain(trials, curves, target=None)
    assert g.loc["complete", "random"] == 0 and math.isnan(g.loc["loss at step 0 (mean)", "gain"])
    assert math.isnan(g.loc["steps to target (median)", "warm"])
    assert data.default_target(trials) == pytest.approx(0.55)
    bands = data.mean_curves(curves)
    assert list(bands["mean"]) == pytest.approx([1.05, 0.55]) and list(bands["n"]) == [2, 2]


# ---------------------------------------------------------------------------- importances, versions, detail

def test_importances_fixed_seed_and_too_few_trials(demo, tmp_path):
    reader = data.Reader(demo["url"])
    values, why = data.importances(reader.study("vit-digits"))
    assert why is None and set(values) == set(reader.study("vit-digits").trials[0].params)
    assert sum(values.values()) == pytest.approx(1.0)
    assert data.importances(reader.study("vit-digits"))[0] == values  # fixed seed: same answer
    small = optuna.create_study(storage=f"sqlite:///{tmp_path / 'few.db'}", study_name="few")
    small.add_trials(_studies.synthetic_trials(4))
    values, why = data.importances(data.Reader(f"sqlite:///{tmp_path / 'few.db'}").study("few"))
    assert values == {} and "at least 5 completed trials" in why


def test_versions_frame(demo, edge):
    reader = data.Reader(demo["url"])
    v = reader.versions("vit-digits")
    assert list(v["version"]) == [0, 1, 2, 3] and list(v["promoted"]) == [True, True, False, True]
    assert list(v.columns) == data.VERSION_COLUMNS and v["val_loss"].iloc[-1] == pytest.approx(1.31)
    assert reader.versions("legacy").empty
    assert data.Reader(edge["url"]).versions("unfinished").empty  # no versions table at all
    assert data.versions_frame(None, "x").empty


def test_trial_detail_and_artifacts(demo):
    reader = data.Reader(demo["url"])
    best = data.best_trial(reader.study("vit-digits"))
    detail = data.trial_detail(best)
    assert detail["weights_artifact_id"] and detail["config"]["space"] == "vit" and detail["n_params"] > 0
    assert "config" not in detail["user_attrs"] and detail["init"] in ("warm", "random")
    arts = data.artifacts(best)
    assert list(arts["artifact_id"]) == [detail["weights_artifact_id"]]
    assert arts["filename"].iloc[0] == "weights.safetensors"
    failed = next(t for t in reader.trials("vit-digits") if t.state is TrialState.FAIL)
    assert data.trial_detail(failed)["fail_reason"] and data.artifacts(failed).empty
    warm = data.best_trial(reader.study("vit-digits"), warm_only=True)
    assert warm.user_attrs["warm_start"] is True


# ---------------------------------------------------------------------------- export

def test_export_zip_roundtrip_and_db_untouched(demo, tmp_path):
    from nas.artifacts import load_trial_model
    from nas.export import load_exported

    before = digest(demo["db"])
    reader = data.Reader(demo["url"])
    study = reader.study("vit-digits")
    best = data.best_trial(study)
    blob = export.export_zip(study, best, demo["artifacts"], "postgresql://bob:hunter2@h/db", engine=reader.engine)
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        names = sorted(zf.namelist())
        zf.extractall(tmp_path)
    folder = export.export_name("vit-digits", best.number)
    assert names == [f"{folder}/config.json", f"{folder}/model.safetensors", f"{folder}/provenance.json"]
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
    study = data.Reader(demo["url"]).study("vit-digits")
    best = data.best_trial(study)
    return study, best, copy, copy / best.user_attrs["weights_artifact_id"]


def test_export_errors_are_artifact_errors(demo, broken, tmp_path):
    study, best, store, weights = broken
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(data.ArtifactError, match="is corrupt"):
        export.export_zip(study, best, store, demo["url"])
    weights.unlink()
    with pytest.raises(data.ArtifactError, match="not found in"):
        export.export_zip(study, best, store, demo["url"])
    with pytest.raises(data.ArtifactError, match="does not exist"):
        export.export_zip(study, best, tmp_path / "nowhere", demo["url"])
    plain = next(t for t in study.trials if not t.user_attrs.get("weights_artifact_id"))
    with pytest.raises(data.ArtifactError, match="no weights"):
        export.export_zip(study, plain, store, demo["url"])


def test_export_rejects_weights_of_another_architecture(demo, broken):
    from safetensors.torch import save_file

    study, best, store, weights = broken
    tensors = load_file(weights)
    tensors[next(iter(tensors))] = torch.zeros(3, 3)
    save_file(tensors, weights)
    with pytest.raises(data.ArtifactError, match="does not match its config"):
        export.export_zip(study, best, store, demo["url"])
    del tensors["head.bias"]
    save_file(tensors, weights)
    with pytest.raises(data.ArtifactError, match="does not match its config"):
        export.export_zip(study, best, store, demo["url"])


def test_screened_trials_show_their_screening_score():
    from optuna.distributions import IntDistribution
    from optuna.trial import create_trial

    screened = create_trial(value=0.3, params={"depth": 2}, distributions={"depth": IntDistribution(1, 6)},
                            user_attrs={"warm_start": True, "screen_loss": 0.25})
    plain = create_trial(value=0.4, params={"depth": 3}, distributions={"depth": IntDistribution(1, 6)},
                         user_attrs={"warm_start": True})
    plain.number, screened.number = 1, 0
    df = data.trials_frame([screened, plain])
    assert df["screen_loss"].iloc[0] == pytest.approx(0.25) and pd.isna(df["screen_loss"].iloc[1])

