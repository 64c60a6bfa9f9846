"""app.reader: opening the storage read-only, studies, trials and hypernet versions."""
import sqlite3

import pandas as pd
import pytest
import sqlalchemy as sa

from app import frames
from app.reader import VERSION_COLUMNS, Reader, StorageError, readonly_url, versions_frame
from _apptest import digest


# ---------------------------------------------------------------------------- opening read-only

def test_readonly_url_sqlite_opens_file_read_only(demo):
    url, kwargs = readonly_url(demo["url"])
    assert url.startswith("sqlite:///file:") and "mode=ro" in url and "uri=true" in url and kwargs == {}
    engine = sa.create_engine(url)
    with pytest.raises(sa.exc.OperationalError, match="readonly"):
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE x (a INTEGER)"))
    engine.dispose()


def test_readonly_url_other_backends_and_errors(tmp_path):
    url, kwargs = readonly_url("postgresql+psycopg://u:pw@db.example/optuna")
    assert "default_transaction_read_only=on" in kwargs["connect_args"]["options"]
    _, kwargs = readonly_url("mysql+pymysql://u:pw@db/optuna")
    assert "READ ONLY" in kwargs["connect_args"]["init_command"]
    with pytest.raises(StorageError, match="no study database at .*nope.db"):
        readonly_url(f"sqlite:///{tmp_path / 'nope.db'}")
    with pytest.raises(StorageError, match="in-memory"):
        readonly_url("sqlite://")
    with pytest.raises(StorageError, match="read-only") as e:
        readonly_url("oracle://scott:tiger@host/db")
    assert "tiger" not in str(e.value)


def test_unreachable_server_error_is_masked():
    with pytest.raises(StorageError, match="cannot read study storage") as e:
        Reader("postgresql+psycopg://alice:s3cret@127.0.0.1:1/optuna")
    assert "s3cret" not in str(e.value) and "alice:***@" in str(e.value)


def test_reader_cannot_write_and_leaves_file_identical(demo):
    before = digest(demo["db"])
    reader = Reader(demo["url"])
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
    reader = Reader(f"sqlite:///{path}")
    assert reader.study_names() == [] and reader.studies().empty
    assert list(reader.studies().columns) == frames.STUDY_COLUMNS
    with pytest.raises(StorageError, match="no studies"):
        reader.study("x")
    assert path.stat().st_size == 0


# ---------------------------------------------------------------------------- studies and hypernet versions

def test_studies_frame(demo):
    reader = Reader(demo["url"])
    df = reader.studies().set_index("study")
    assert list(df.index) == ["legacy", "vit-digits"]
    vit = df.loc["vit-digits"]
    study = reader.study("vit-digits")
    assert vit["trials"] == len(study.trials) == vit[["complete", "pruned", "fail", "running", "waiting"]].sum()
    assert vit["best_value"] == pytest.approx(study.best_value)
    assert vit["space"] == "vit" and vit["direction"] == "minimize" and 0 < vit["warm_share"] < 1
    assert vit["last_activity"] == max(t.datetime_complete for t in study.trials)
    assert pd.isna(df.loc["legacy", "space"]) and df.loc["legacy", "direction"] == "maximize"
    with pytest.raises(StorageError, match="no study named 'nope'"):
        reader.study("nope")


def test_versions_frame(demo, edge):
    reader = Reader(demo["url"])
    v = reader.versions("vit-digits")
    assert list(v["version"]) == [0, 1, 2, 3] and list(v["promoted"]) == [True, True, False, True]
    assert list(v.columns) == VERSION_COLUMNS and v["val_loss"].iloc[-1] == pytest.approx(1.31)
    assert reader.versions("legacy").empty
    assert Reader(edge["url"]).versions("unfinished").empty  # no versions table at all
    assert versions_frame(None, "x").empty
