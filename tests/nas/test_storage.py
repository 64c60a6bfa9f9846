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

# Trials these tests make by hand never beat, so Optuna warns that heartbeats want its own run loop.
HAND_MADE_TRIALS = pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used:UserWarning")


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


# ---- who runs a trial; failing a dead process's trial at once -------------------------------

def _ask_and_die(url: str) -> None:
    """Start one trial (ask) and one enqueued trial (popped by optimize), then die like kill -9."""
    study = optuna.load_study(study_name="s", storage=make_storage(url, heartbeat_interval=None))
    study.ask()

    def objective(trial):
        trial.suggest_float("x", 0, 1)
        os._exit(1)

    study.optimize(objective, n_trials=1)


def test_running_trials_record_their_process_and_a_dead_ones_are_failed_and_retried_at_once(tmp_path):
    from nas.storage import OWNER_ATTR, owner_alive, process_owner, reap_dead_trials

    url = f"sqlite:///{tmp_path}/study.db"
    storage = make_storage(url, heartbeat_interval=60, max_retry=1)  # the heartbeat would take minutes
    study = optuna.create_study(study_name="s", storage=storage)
    study.enqueue_trial({"x": 0.25})
    p = mp.get_context("spawn").Process(target=_ask_and_die, args=(url,))
    p.start()
    p.join(60)
    assert p.exitcode == 1
    asked, popped = study.get_trials()
    assert asked.state == popped.state == TrialState.RUNNING
    for t in (asked, popped):
        assert t.system_attrs[OWNER_ATTR]["pid"] == p.pid and owner_alive(t.system_attrs[OWNER_ATTR]) is False
    assert owner_alive(process_owner()) is True
    assert owner_alive({**process_owner(), "host": "elsewhere"}) is None  # only the heartbeat can tell

    assert sorted(reap_dead_trials(study)) == [0, 1]  # no waiting for the heartbeat's grace period
    trials = study.get_trials()
    assert [t.state for t in trials[:2]] == [TrialState.FAIL, TrialState.FAIL]
    assert all(t.user_attrs["fail_reason"].startswith("worker died: process") for t in trials[:2])
    retries = [t for t in trials[2:] if t.state == TrialState.WAITING]
    assert len(retries) == 2 and {t.system_attrs["failed_trial"] for t in retries} == {0, 1}
    assert reap_dead_trials(study) == []  # reaped once


def test_fail_trials_of_fails_only_that_process_trials(tmp_path):
    from nas.storage import fail_trials_of

    url = f"sqlite:///{tmp_path}/study.db"
    study = optuna.create_study(study_name="s", storage=make_storage(url, heartbeat_interval=None))
    mine = study.ask()  # heartbeat off: the retry is enqueued all the same
    assert fail_trials_of(study, os.getpid() + 1, "worker died: test") == []
    assert fail_trials_of(study, os.getpid(), "worker died: test") == [mine.number]
    trials = study.get_trials()
    assert trials[0].state == TrialState.FAIL and trials[0].user_attrs["fail_reason"] == "worker died: test"
    assert trials[1].state == TrialState.WAITING and trials[1].system_attrs["failed_trial"] == 0


def test_an_unwritable_artifact_folder_is_a_config_error_naming_the_setting(tmp_path):
    from nas.storage import check_artifact_store
    from search_spaces import ConfigError

    store = make_artifact_store(tmp_path / "art")
    check_artifact_store(store, str(tmp_path / "art"))  # fine: writes, reads and removes a probe
    assert list((tmp_path / "art").iterdir()) == []
    if os.geteuid() != 0:
        os.chmod(tmp_path / "art", 0o500)
        with pytest.raises(ConfigError) as e:
            check_artifact_store(store, str(tmp_path / "art"))
        assert e.value.field == "artifacts_dir"
        os.chmod(tmp_path / "art", 0o700)
    (tmp_path / "gone").write_text("a file, not a folder")
    store = make_artifact_store(tmp_path / "art2")
    (tmp_path / "art2").rmdir()
    (tmp_path / "art2").write_text("now a file")
    with pytest.raises(ConfigError) as e:
        check_artifact_store(store, str(tmp_path / "art2"))
    assert e.value.field == "artifacts_dir" and "art2" in str(e.value)


def test_artifacts_dir_s3_url_is_parsed_and_credentials_in_it_refused():
    from nas.storage import parse_s3_url
    from search_spaces import ConfigError

    assert parse_s3_url("s3://bucket/a/b/") == ("bucket", "a/b/")
    assert parse_s3_url("s3://bucket") == ("bucket", "")
    with pytest.raises(ConfigError) as e:
        parse_s3_url("s3://key:secretpw@bucket/x")
    assert "secretpw" not in str(e.value)


def test_run_despite_outages_retries_transient_errors_until_the_patience_runs_out(monkeypatch):
    import sqlalchemy.exc

    from nas import storage as storage_mod

    slept, reconnects, said = [], [], []
    monkeypatch.setattr(storage_mod.time, "sleep", slept.append)
    down = sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection"))
    calls = iter([down, down, "done"])

    def flaky():
        value = next(calls)
        if isinstance(value, Exception):
            raise value
        return value

    assert storage_mod.run_despite_outages(flaky, on_reconnect=lambda: reconnects.append(1), say=said.append) == "done"
    assert slept == [1.0, 2.0] and len(reconnects) == 2 and "storage unreachable (OperationalError" in said[0]

    def masked():  # Optuna's trial loop: the storage error surfaces as an UnboundLocalError
        try:
            raise down
        except Exception:
            raise UnboundLocalError("cannot access local variable 'updated_state'")

    assert storage_mod.is_transient(pytest.raises(UnboundLocalError, masked).value)
    with pytest.raises(ValueError):  # not a database outage: at once
        storage_mod.run_despite_outages(lambda: (_ for _ in ()).throw(ValueError("bad")), say=said.append)
    clock = iter([0.0, 0.0, 1000.0, 1000.0])
    monkeypatch.setattr(storage_mod.time, "monotonic", lambda: next(clock))
    with pytest.raises(sqlalchemy.exc.OperationalError):  # an outage longer than the patience
        storage_mod.run_despite_outages(lambda: (_ for _ in ()).throw(down), patience_s=300.0, say=said.append)
    # tries that each wait 60 s to fail (SQLite's busy timeout) are one outage, not a new one each
    clock = iter(t for k in range(20) for t in (100.0 * k, 100.0 * k + 60.0))
    with pytest.raises(sqlalchemy.exc.OperationalError):
        storage_mod.run_despite_outages(lambda: (_ for _ in ()).throw(down), patience_s=300.0, say=said.append)


def test_a_full_or_read_only_database_is_not_an_outage():
    import sqlite3

    import sqlalchemy.exc
    from optuna.exceptions import StorageInternalError

    from nas.storage import is_transient, storage_write_error

    for message in ("database or disk is full", "attempt to write a readonly database"):
        try:
            try:
                raise sqlalchemy.exc.OperationalError("COMMIT", {}, sqlite3.OperationalError(message))
            except sqlalchemy.exc.OperationalError as inner:
                raise StorageInternalError("An exception is raised during the commit.") from inner
        except StorageInternalError as exc:
            assert storage_write_error(exc) == message and not is_transient(exc)
    refused = sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("connection refused"))
    assert storage_write_error(refused) is None and is_transient(refused)


def test_a_full_artifacts_folder_is_not_called_an_unwritable_database():
    from nas.storage import storage_write_error

    assert storage_write_error(OSError(28, "No space left on device")) is None  # not the database driver's


@HAND_MADE_TRIALS
def test_a_trial_that_never_beat_is_judged_by_its_owner_s_utc_start_not_a_local_clock(tmp_path):
    """A refitter or worker on another machine (maybe another time zone) reaps a trial killed before
    its first heartbeat by the UTC time its owner recorded, never by Optuna's naive local datetime_start."""
    import time

    from nas.storage import OWNER_ATTR, reap_dead_trials

    url = f"sqlite:///{tmp_path}/study.db"
    study = optuna.create_study(study_name="s", storage=make_storage(url, heartbeat_interval=60, max_retry=0))
    trial = study.ask()
    assert isinstance(study.trials[0].system_attrs[OWNER_ATTR]["since"], float)
    remote = {"host": "elsewhere", "pid": 1, "start": None}
    study._storage.set_trial_system_attr(trial._trial_id, OWNER_ATTR, {**remote, "since": time.time() - 30})
    assert reap_dead_trials(study) == []  # 30 s ago, grace 120 s: still starting, whatever the clocks say
    study._storage.set_trial_system_attr(trial._trial_id, OWNER_ATTR, {**remote, "since": time.time() - 600})
    assert reap_dead_trials(study) == [0]
    assert study.trials[0].user_attrs["fail_reason"] == "worker died before its first heartbeat"


@HAND_MADE_TRIALS
def test_a_run_s_last_reap_settles_a_trial_nobody_owns_or_beats_for(tmp_path):
    """A database restart can cut a worker off while its new trial's row is committed: the row is
    there, its worker never learnt the id, no owner and no heartbeat. A plain reap leaves it (it may
    be a worker that is just starting); the run's last reap waits out the grace period and fails it."""
    from nas.storage import OWNER_ATTR, reap_dead_trials

    url = f"sqlite:///{tmp_path}/study.db"
    study = optuna.create_study(study_name="s", storage=make_storage(url, heartbeat_interval=1, max_retry=1))
    trial = study.ask()
    study._storage.set_trial_system_attr(trial._trial_id, OWNER_ATTR, None)
    assert reap_dead_trials(study) == []  # too young to call dead
    started = time.monotonic()
    assert reap_dead_trials(study, settle=True) == [0]
    assert time.monotonic() - started < 10  # waits the grace period (2 s here), not forever
    assert study.trials[0].state == TrialState.FAIL
    assert study.trials[0].user_attrs["fail_reason"] == "worker died before its first heartbeat"
    assert [t.state for t in study.trials[1:]] == [TrialState.WAITING]  # retried with its parameters
    assert reap_dead_trials(study, settle=True) == []  # nothing RUNNING: no waiting
