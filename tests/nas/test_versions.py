"""Hypernet version table: consecutive numbers, races between processes, promoted lookup."""
from __future__ import annotations

import multiprocessing as mp
import os
import uuid

import pytest

from nas.storage import make_engine
from nas.versions import (VersionExistsError, get_version, latest_promoted, list_versions, record_version,
                          refit_share)


def _record_many(url: str, study: str, n: int) -> None:
    engine = make_engine(url)
    for i in range(n):
        record_version(engine, study, artifact_id=f"a{i}", sha256="0" * 64, promoted=i % 2 == 0)


def test_consecutive_numbers_and_latest_promoted(tmp_path):
    url = f"sqlite:///{tmp_path}/db.sqlite"
    engine = make_engine(url)
    assert list_versions(url, "s") == []  # no table yet: read-only, empty
    assert latest_promoted(engine, "s") is None
    v0 = record_version(engine, "s", artifact_id="x0", sha256="a" * 64, promoted=True, version=0)
    v1 = record_version(engine, "s", artifact_id="x1", sha256="b" * 64, promoted=False, val_loss=2.5,
                        parent_val_loss=2.0, trials_used=7, device="cpu", seconds=1.5, note="worse")
    v2 = record_version(engine, "s", artifact_id="x2", sha256="c" * 64, promoted=True, val_loss=1.5,
                        parent_val_loss=2.0)
    other = record_version(engine, "t", artifact_id="y0", sha256="d" * 64, promoted=True)
    assert (v0.version, v1.version, v2.version, other.version) == (0, 1, 2, 0)
    assert [v.version for v in list_versions(url, "s")] == [0, 1, 2]
    assert latest_promoted(engine, "s").version == 2
    got = get_version(engine, "s", 1)
    assert got.val_loss == 2.5 and got.parent_val_loss == 2.0 and got.trials_used == 7 and not got.promoted
    assert got.note == "worse" and got.seconds == 1.5 and got.created_at.tzinfo is not None
    with pytest.raises(VersionExistsError):
        record_version(engine, "s", artifact_id="dup", sha256="e" * 64, promoted=True, version=0)


POSTGRES = os.environ.get("LOGAH_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", pytest.param("postgres", marks=[
    pytest.mark.postgres, pytest.mark.skipif(not POSTGRES, reason="LOGAH_TEST_POSTGRES_URL is not set")])]


def _url(backend: str, tmp_path) -> str:
    return f"sqlite:///{tmp_path}/db.sqlite" if backend == "sqlite" else POSTGRES


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_processes_record_concurrently_without_gaps(backend, tmp_path):
    url, study = _url(backend, tmp_path), f"race-{uuid.uuid4().hex[:8]}"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_record_many, args=(url, study, 10)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert [v.version for v in list_versions(url, study)] == list(range(20))


def test_a_deleted_studys_versions_never_reach_a_new_study_of_the_same_name(tmp_path):
    """`optuna delete-study` leaves our rows; the new study (another study_uid) must not see them."""
    import optuna

    from nas.attrs import STUDY_UID

    url = f"sqlite:///{tmp_path}/db.sqlite"
    engine = make_engine(url)

    def new_study(uid: str) -> None:
        optuna.create_study(study_name="s", storage=url).set_user_attr(STUDY_UID, uid)

    new_study("first")
    record_version(engine, "s", artifact_id="old0", sha256="a" * 64, promoted=True, version=0)
    record_version(engine, "s", artifact_id="old1", sha256="b" * 64, promoted=True)
    optuna.delete_study(study_name="s", storage=url)
    assert list_versions(engine, "s") == [] and latest_promoted(engine, "s") is None  # gone with its study
    new_study("second")  # SQLite may even give it the deleted study's id: the uuid tells them apart
    assert get_version(engine, "s", 0) is None
    v0 = record_version(engine, "s", artifact_id="new0", sha256="c" * 64, promoted=True, version=0)
    assert v0.study_uid == "second" and [v.artifact_id for v in list_versions(engine, "s")] == ["new0"]
    assert latest_promoted(engine, "s").artifact_id == "new0"
    assert record_version(engine, "s", artifact_id="new1", sha256="d" * 64, promoted=False).version == 1


def test_a_database_from_before_study_identities_keeps_working(tmp_path):
    """Rows without study_uid (older databases): the column is added; a study without the attr reads them."""
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path}/db.sqlite"
    old = sa.create_engine(url)
    with old.begin() as conn:  # the table as older versions created it
        conn.execute(sa.text("CREATE TABLE logah_hypernet_versions (id INTEGER PRIMARY KEY, study_name VARCHAR(512) "
                             "NOT NULL, version INTEGER NOT NULL, created_at DATETIME NOT NULL, trials_used INTEGER "
                             "NOT NULL, val_loss FLOAT, parent_val_loss FLOAT, promoted BOOLEAN NOT NULL, artifact_id "
                             "VARCHAR(255) NOT NULL, sha256 VARCHAR(64) NOT NULL, device VARCHAR(64) NOT NULL, seconds "
                             "FLOAT NOT NULL, note TEXT NOT NULL, UNIQUE (study_name, version))"))
        conn.execute(sa.text("INSERT INTO logah_hypernet_versions VALUES (1, 'legacy', 0, '2025-01-01 00:00:00', 0, "
                             "NULL, NULL, 1, 'a0', :sha, 'cpu', 0.0, '')"), {"sha": "a" * 64})
    old.dispose()
    engine = make_engine(url)
    assert [v.artifact_id for v in list_versions(engine, "legacy")] == ["a0"]  # read-only: no column yet
    assert record_version(engine, "legacy", artifact_id="a1", sha256="b" * 64, promoted=True).version == 1
    assert [v.study_uid for v in list_versions(engine, "legacy")] == [None, None]


def test_refit_share_is_the_refits_part_of_refit_plus_trial_seconds():
    assert refit_share(30.0, 90.0) == pytest.approx(0.25)
    assert refit_share(0.0, 90.0) == 0.0 and refit_share(0.0, 0.0) == 0.0  # no refit: nothing to share
    assert refit_share(5.0, 0.0) == 1.0
