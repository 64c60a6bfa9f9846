"""Hypernet version table: consecutive numbers, races between processes, promoted lookup."""
from __future__ import annotations

import multiprocessing as mp
import os
import uuid

import pytest

from nas.storage import make_engine
from nas.versions import (VersionExistsError, get_version, latest_promoted, list_versions, record_version)


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
