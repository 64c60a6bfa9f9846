"""Study storage: SQLite in WAL mode, concurrent writers, heartbeat retry of a killed worker's trial."""
from __future__ import annotations

import multiprocessing as mp
import os
import sqlite3
import time

import optuna
import pytest
from optuna.trial import TrialState

from nas.storage import make_artifact_store, make_engine, make_storage


def _journal_mode(engine) -> str:
    with engine.connect() as conn:
        return conn.exec_driver_sql("PRAGMA journal_mode").scalar()


def test_sqlite_storage_uses_wal_and_creates_parent_folder(tmp_path):
    url = f"sqlite:///{tmp_path}/sub/dir/study.db"
    storage = make_storage(url)
    assert _journal_mode(storage.engine) == "wal"
    assert _journal_mode(make_engine(url)) == "wal"
    assert make_engine(url) is make_engine(url)  # one pool per process and URL
    store = make_artifact_store(tmp_path / "art")
    assert (tmp_path / "art").is_dir() and store is not None


def _write_trials(url: str, n: int) -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name="s", storage=make_storage(url))
    study.optimize(lambda t: t.suggest_float("x", 0, 1) ** 2, n_trials=n)  # raises on "database is locked"


def test_two_processes_write_trials_concurrently_without_lock_errors(tmp_path):
    url = f"sqlite:///{tmp_path}/study.db"
    optuna.create_study(study_name="s", storage=make_storage(url))
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_write_trials, args=(url, 25)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    study = optuna.load_study(study_name="s", storage=make_storage(url))
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 50


def _die_mid_trial(url: str) -> None:
    study = optuna.load_study(study_name="s", storage=make_storage(url, heartbeat_interval=1, grace_period=2))

    def objective(trial):
        trial.suggest_float("x", 0, 1)
        time.sleep(1.5)  # mid-training: Optuna's heartbeat thread has recorded at least one beat
        os._exit(1)  # like kill -9: no cleanup, the trial stays RUNNING

    study.optimize(objective, n_trials=1)


def test_killed_workers_trial_fails_and_is_retried_with_same_params(tmp_path):
    url = f"sqlite:///{tmp_path}/study.db"
    storage = make_storage(url, heartbeat_interval=1, grace_period=2, max_retry=1)
    optuna.create_study(study_name="s", storage=storage)
    p = mp.get_context("spawn").Process(target=_die_mid_trial, args=(url,))
    p.start()
    p.join(60)
    assert p.exitcode == 1
    time.sleep(3.0)  # past the grace period (SQLite timestamps have 1 s resolution)
    study = optuna.load_study(study_name="s", storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    trials = study.get_trials()
    assert trials[0].state == TrialState.FAIL
    retried = [t for t in trials[1:] if t.state == TrialState.COMPLETE]
    assert retried and retried[0].params == trials[0].params
    assert optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(retried[0]) == 0


def test_unreachable_database_error_masks_the_password():
    url = "postgresql+psycopg://user:s3cr3t-pw@127.0.0.1:1/db"
    with pytest.raises(RuntimeError) as info:
        make_storage(url, heartbeat_interval=None)
    assert "s3cr3t-pw" not in str(info.value) and "127.0.0.1" in str(info.value)


class _LockedCursor:
    """A DBAPI cursor whose first `failures` WAL switches fail the way a contended SQLite file does."""

    def __init__(self, failures: int, message: str = "database is locked") -> None:
        self.failures, self.message, self.mode, self.calls = failures, message, "delete", 0

    def execute(self, sql: str):
        if sql == "PRAGMA journal_mode=WAL":
            self.calls += 1
            if self.calls <= self.failures:
                raise sqlite3.OperationalError(self.message)
            self.mode = "wal"
        self.row = (self.mode,)
        return self

    def fetchone(self):
        return self.row


def test_wal_switch_retries_while_another_process_holds_the_lock():
    from nas.storage import _enable_wal

    cursor = _LockedCursor(failures=3)
    _enable_wal(cursor, timeout_s=5)
    assert cursor.mode == "wal" and cursor.calls == 4
    already = _LockedCursor(failures=99)
    already.mode = "wal"
    _enable_wal(already, timeout_s=5)  # already WAL: no switch, no lock needed
    assert already.calls == 0


def test_wal_switch_gives_up_after_the_timeout_and_never_retries_other_errors():
    from nas.storage import _enable_wal

    with pytest.raises(sqlite3.OperationalError, match="locked"):
        _enable_wal(_LockedCursor(failures=10**6), timeout_s=0.05)
    other = _LockedCursor(failures=1, message="disk I/O error")
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        _enable_wal(other, timeout_s=5)
    assert other.calls == 1
