"""Database and artifact storage shared by every worker of a study.

One database URL holds three things: Optuna's tables, our hypernet version table and the lease
table (`nas.versions`, `nas.lease`). Two engines talk to it: Optuna's own (inside
`RDBStorage`) and `make_engine(url)` for our tables.

SQLite (the default, `sqlite:///logah_runs/study.db`) is made safe for a handful of local
worker processes by two settings, applied to both engines:

* WAL journal mode (`PRAGMA journal_mode=WAL`, persistent in the file): readers never block the
  single writer and the writer never blocks readers, so the dashboard and the workers can read
  while a trial is being written.
* A 60 s busy timeout (`connect_args={"timeout": 60}` = sqlite3's busy handler): a writer that
  finds the write lock taken waits and retries instead of failing at once with
  "database is locked". Our writes are tiny, so 60 s is never reached in practice.

The Python sqlite3 driver opens a transaction only at the first write statement, so a
transaction never has to upgrade a read snapshot into a write lock (the one case the busy handler
cannot resolve). Many machines need PostgreSQL (`postgresql+psycopg://...`); there we only add
`pool_pre_ping` so connections dropped by the server or a proxy are replaced transparently.

Killed workers: `make_storage` turns on Optuna's heartbeat. A worker that dies mid-trial stops
beating; after `grace_period` the next worker to start a trial marks it FAIL and
`RetryHeartbeatStaleTrialCallback` enqueues a copy with the same parameters, so no configuration
is silently lost.
"""
from __future__ import annotations

import functools
import logging
import os
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import sqlalchemy
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

from optuna.artifacts import FileSystemArtifactStore

from nas.secrets import mask_url

if TYPE_CHECKING:
    import optuna

# search_spaces (atomic writes, ConfigError) is imported inside the functions: it loads torch, and
# the dashboard reads this module's constants.

_log = logging.getLogger(__name__)

DEFAULT_STORAGE = "sqlite:///logah_runs/study.db"
DEFAULT_ARTIFACTS = "logah_runs/artifacts"
# The one pair of environment variables every process reads (workers, dashboard): a URL with a
# password travels here, never on a command line.
STORAGE_ENV = "LOGAH_NAS_STORAGE"
ARTIFACTS_ENV = "LOGAH_NAS_ARTIFACTS"
SQLITE_TIMEOUT_S = 60

_engines: dict[tuple[int, str], Engine] = {}  # per process: engines own connection pools
_engines_lock = threading.Lock()


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_path(url: str) -> str | None:
    db = make_url(url).database
    return None if db in (None, "", ":memory:") or db.startswith("file:") else db


def _engine_kwargs(url: str) -> dict[str, Any]:
    if is_sqlite(url):
        return {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    return {"pool_pre_ping": True}


def _on_sqlite_connect(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_TIMEOUT_S * 1000}")
        _enable_wal(cursor, timeout_s=SQLITE_TIMEOUT_S)
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable in WAL mode up to the last checkpoint-free commit
    finally:
        cursor.close()


def _enable_wal(cursor, timeout_s: float) -> None:
    """Switch the database to WAL, retrying while another process holds a lock.

    Why: the switch needs an exclusive lock, and SQLite may answer "database is locked" at once
    instead of waiting out busy_timeout (seen in CI: two processes opening a fresh database at the
    same moment). Once the file is in WAL mode (persistent), nothing needs locking."""
    deadline, delay = time.monotonic() + timeout_s, 0.01
    while True:
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            contended = "locked" in str(exc) or "busy" in str(exc)
            if not contended or time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(0.5, 2 * delay)


def _prepare_sqlite_file(url: str) -> None:
    path = _sqlite_path(url)
    if path is not None:
        Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)


def make_engine(url: str) -> Engine:
    """A SQLAlchemy engine for our own tables (cached per process and URL)."""
    key = (os.getpid(), url)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            if is_sqlite(url):
                _prepare_sqlite_file(url)
            engine = sqlalchemy.create_engine(url, **_engine_kwargs(url))
            if is_sqlite(url):
                event.listen(engine, "connect", _on_sqlite_connect)
            _engines[key] = engine
    return engine


def make_storage(url: str = DEFAULT_STORAGE, heartbeat_interval: int | None = 30,
                 grace_period: int | None = None, max_retry: int | None = 2):
    """Optuna `RDBStorage` with heartbeat + retry of trials whose worker died.

    `grace_period` defaults to Optuna's (2 x heartbeat_interval). `heartbeat_interval=None`
    turns the heartbeat off (then a killed worker's trial stays RUNNING forever).
    """
    from optuna.storages import RDBStorage

    if is_sqlite(url):
        _prepare_sqlite_file(url)
        with make_engine(url).connect():  # WAL is a property of the file: set it before Optuna connects
            pass
    last: Exception | None = None
    for _ in range(5):  # Optuna creates its tables on every construction; two fresh workers can race
        try:
            storage = RDBStorage(url, engine_kwargs=_engine_kwargs(url))
            break
        except sqlalchemy.exc.OperationalError as exc:
            last = exc
            _log.debug("retrying storage creation for %s: %s", mask_url(url), exc)
    else:
        raise RuntimeError(f"could not open the study storage {mask_url(url)}: {last}") from None
    if is_sqlite(url):
        event.listen(storage.engine, "connect", _on_sqlite_connect)
    set_heartbeat(storage, heartbeat_interval, grace_period, max_retry)
    return storage


def set_heartbeat(storage, interval: int | None, grace_period: int | None = None, max_retry: int | None = 2) -> None:
    """Turn the heartbeat of an opened RDBStorage on (or off with `interval=None`), as its constructor
    would: a process can read a study's own settings before it starts beating with them."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    from search_spaces import ConfigError

    for name, value in (("heartbeat_interval", interval), ("grace_period", grace_period)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise ConfigError(f"study.{name}", value, "null or an integer >= 1")
    storage.heartbeat_interval = interval
    storage.grace_period = grace_period if interval is not None else None
    callback = RetryHeartbeatStaleTrialCallback(max_retry=max_retry) if interval is not None else None
    storage.heartbeat_stale_trial_callback = storage.failed_trial_callback = callback


class AtomicFileSystemArtifactStore(FileSystemArtifactStore):
    """Optuna's file store, but a write is complete or absent.

    Optuna records an artifact in the study before writing its file, and its file store writes in
    place, so a worker killed mid-upload would leave a truncated file under a name the study trusts.
    """

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        from search_spaces.files import atomic_write

        with atomic_write(self._get_filepath(artifact_id)) as f:
            shutil.copyfileobj(content_body, f)


def make_artifact_store(base_path: str | os.PathLike = DEFAULT_ARTIFACTS) -> AtomicFileSystemArtifactStore:
    """The artifact store (trial weights, hypernet checkpoints); a folder shared by the workers."""
    Path(base_path).mkdir(parents=True, exist_ok=True)
    return AtomicFileSystemArtifactStore(base_path=str(base_path))


def reap_dead_trials(study) -> list[int]:
    """Fail, give a reason to, and retry the RUNNING trials whose worker died.

    Optuna's own check (`fail_stale_trials`) covers trials whose heartbeat went stale, but it
    skips a trial that never wrote a heartbeat (a worker killed between `ask()` and its first
    beat: RUNNING forever) and it records no reason. Both cases are handled here; the retry
    goes through the storage's stale-trial callback, exactly as Optuna's path does.
    """
    import datetime

    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    storage = getattr(study._storage, "_backend", study._storage)  # unwrap Optuna's cache layer
    interval = getattr(storage, "heartbeat_interval", None)
    if interval is None:
        return []
    grace = storage.grace_period if storage.grace_period is not None else 2 * interval
    stale = set(storage._get_stale_trial_ids(study._study_id))
    with storage.engine.connect() as conn:
        beating = {row[0] for row in conn.execute(sqlalchemy.text("SELECT trial_id FROM trial_heartbeats"))}
    # Optuna stamps datetime_start with the worker's local clock (naive), so compare with the same.
    cutoff = datetime.datetime.now() - datetime.timedelta(seconds=grace)
    reaped = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        never_beat = trial._trial_id not in beating and trial.datetime_start is not None \
            and trial.datetime_start < cutoff
        if trial._trial_id not in stale and not never_beat:
            continue
        reason = ("worker died before its first heartbeat" if never_beat
                  else f"worker died: no heartbeat for more than {grace} s")
        try:
            storage.set_trial_user_attr(trial._trial_id, "fail_reason", reason)
            if not storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
                continue
        except UpdateFinishedTrialError:  # another worker reaped it first
            continue
        reaped.append(trial.number)
        callback = storage.get_heartbeat_stale_trial_callback()
        if callback is not None:
            callback(study, storage.get_trial(trial._trial_id))
        _log.warning("trial %d of %s failed: %s", trial.number, study.study_name, reason)
    return reaped


def storage_from_env(default: str = DEFAULT_STORAGE) -> str:
    """The storage URL a process was handed in `LOGAH_NAS_STORAGE`, else `default`."""
    return os.environ.get(STORAGE_ENV) or default


@dataclass
class StudyStorage:
    """Everything a process reads and writes a study through, opened once per process.

    One database URL holds Optuna's tables and ours (versions, leases): `optuna` is the RDBStorage,
    `engine` the SQLAlchemy engine for our tables. Trial weights and hypernet checkpoints live in the
    artifact store under `artifacts_dir` (made on first use).
    """

    url: str
    optuna: Any
    engine: Engine
    artifacts_dir: str = DEFAULT_ARTIFACTS

    @classmethod
    def open(cls, url: str = DEFAULT_STORAGE, artifacts_dir: str | os.PathLike = DEFAULT_ARTIFACTS, *,
             heartbeat_interval: int | None = None, grace_period: int | None = None,
             max_retry: int | None = 2) -> StudyStorage:
        return cls(url=url, optuna=make_storage(url, heartbeat_interval=heartbeat_interval,
                                                grace_period=grace_period, max_retry=max_retry),
                   engine=make_engine(url), artifacts_dir=str(artifacts_dir))

    @functools.cached_property
    def artifacts(self) -> AtomicFileSystemArtifactStore:
        return make_artifact_store(self.artifacts_dir)

    @property
    def masked_url(self) -> str:
        return mask_url(self.url)

    def with_artifacts(self, artifacts_dir: str | os.PathLike) -> StudyStorage:
        """The same open database with another artifact folder (a worker learns it from the study)."""
        return replace(self, artifacts_dir=str(artifacts_dir))

    def enable_heartbeat(self, interval: int | None, grace_period: int | None = None,
                         max_retry: int | None = 2) -> None:
        set_heartbeat(self.optuna, interval, grace_period, max_retry)

    def study_names(self) -> list[str]:
        import optuna

        return sorted(s.study_name for s in optuna.get_all_study_summaries(self.optuna))

    def load_study(self, study_name: str, **kwargs: Any) -> optuna.Study:
        """`optuna.load_study` on this storage; a missing study is a ConfigError listing those there."""
        import optuna

        from search_spaces import ConfigError

        try:
            return optuna.load_study(study_name=study_name, storage=self.optuna, **kwargs)
        except KeyError:
            raise ConfigError("study_name", study_name,
                              f"an existing study in {self.masked_url}: {self.study_names()}") from None
