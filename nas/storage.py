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

Who runs a trial: every trial that turns RUNNING records its process in the system attr
`OWNER_ATTR` (host key, pid, process start time), written by the storage itself
(`OwnedRDBStorage`), so every path that starts a trial (`ask`, a popped enqueued or retried
trial) is covered. A process that knows a worker died (`search` watching its children, or any
process on the same host finding the pid gone) fails that trial at once (`fail_trials_of`,
`reap_dead_trials`) instead of waiting out the heartbeat's grace period; the retry goes through
the same stale-trial callback as the heartbeat path.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import sqlite3
import threading
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import sqlalchemy
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

from optuna.artifacts import FileSystemArtifactStore
from optuna.exceptions import StorageInternalError

from nas.secrets import mask_url

if TYPE_CHECKING:
    import optuna

# search_spaces (atomic writes, ConfigError) is imported inside the functions: it loads torch, and
# the dashboard reads this module's constants.

_log = logging.getLogger(__name__)


# a dropped or refused connection (Optuna wraps those raised inside its sessions)
TRANSIENT_DB_ERRORS = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, StorageInternalError)


def short_error(exc: BaseException) -> str:
    """One line, passwords masked, at most 300 characters: what a log line says of an error."""
    return mask_url(f"{type(exc).__name__}: {exc}".splitlines()[0])[:300]


def _chain(exc: BaseException | None, depth: int = 8):
    while exc is not None and depth > 0:
        yield exc
        exc, depth = exc.__cause__ or exc.__context__, depth - 1


# what SQLite and PostgreSQL say when the database cannot be written, however long one waits
_UNWRITABLE = ("database or disk is full", "no space left on device", "attempt to write a readonly database",
               "read-only transaction", "disk i/o error")


def _is_db_error(exc: BaseException) -> bool:
    return isinstance(exc, (sqlalchemy.exc.DBAPIError, sqlite3.Error)) or type(exc).__module__.startswith("psycopg")


def storage_write_error(exc: BaseException) -> str | None:
    """Why the study's database cannot be written (a full disk, a read-only file), or None. Only the
    database driver's own errors count: a full artifacts folder is another problem (an OSError)."""
    for e in _chain(exc):
        if not _is_db_error(e):
            continue
        text = str(e).lower()
        for marker in _UNWRITABLE:
            if marker in text:
                return marker
    return None


def is_transient(exc: BaseException) -> bool:
    """A dropped or refused database connection, also when it surfaces as another error: Optuna's
    trial loop, when the database is down for both its `tell` and the `get_trial` after it, raises
    an UnboundLocalError whose context is the storage error. A full disk or a read-only database
    is not transient: waiting does not fix it."""
    if storage_write_error(exc) is not None:
        return False
    return any(isinstance(e, TRANSIENT_DB_ERRORS) for e in _chain(exc))


def run_despite_outages(fn, *, patience_s: float = 300.0, backoff_s: float = 1.0, max_backoff_s: float = 30.0,
                        on_reconnect=None, say=None):
    """`fn()`, run again after the database drops (a transient error), with exponential backoff,
    until an outage has lasted `patience_s` (then the error propagates). What a worker or refitter
    started by hand needs: nobody restarts it, and PostgreSQL restarts are routine. `on_reconnect()`
    runs before each new try (e.g. failing this process's interrupted trial so it is retried)."""
    say = say or _log.warning
    outage_since, delay = None, backoff_s
    while True:
        started = time.monotonic()
        try:
            return fn()
        except Exception as exc:
            if not is_transient(exc):
                raise
            now = time.monotonic()
            # a new outage when this try ran longer than a whole outage may last (it had been working);
            # a try that merely waited long to fail (a busy timeout, a connect timeout) does not reset it
            if outage_since is None or now - started > patience_s:
                outage_since, delay = now, backoff_s
            if now - outage_since > patience_s:
                raise
            say(f"storage unreachable ({short_error(exc)}); retrying in {delay:.0f} s")
            time.sleep(delay)
            delay = min(max_backoff_s, delay * 2)
            if on_reconnect is not None:
                try:
                    on_reconnect()
                except TRANSIENT_DB_ERRORS:
                    pass  # still down: fn() will say so

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
    if is_sqlite(url):
        _prepare_sqlite_file(url)
        with make_engine(url).connect():  # WAL is a property of the file: set it before Optuna connects
            pass
    last: Exception | None = None
    for _ in range(5):  # Optuna creates its tables on every construction; two fresh workers can race
        try:
            storage = _make_owned_storage_class()(url, engine_kwargs=_engine_kwargs(url))
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


OWNER_ATTR = "logah:owner"  # trial system attr: {"host", "pid", "start": process start or None, "since": UTC epoch s}


@functools.lru_cache(maxsize=1)
def host_key() -> str:
    """This machine (and pid namespace): hostname + kernel boot id + pid-namespace inode, so two
    containers with one hostname, or a rebooted host, never mistake each other's pids."""
    import socket

    parts = [socket.gethostname()]
    try:
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8])
    except OSError:
        pass
    try:
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    except OSError:
        pass
    return "/".join(parts)


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first), None where unknown."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _process_start(pid: int, fields: list[str] | None = None) -> int | None:
    """The process's start time in clock ticks since boot (Linux), None where unknown."""
    fields = _proc_stat(pid) if fields is None else fields
    try:
        return int(fields[19]) if fields is not None else None
    except (IndexError, ValueError):
        return None


def process_owner(pid: int | None = None) -> dict[str, Any]:
    """What `OWNER_ATTR` records for process `pid` (default: this one)."""
    pid = os.getpid() if pid is None else pid
    return {"host": host_key(), "pid": pid, "start": _process_start(pid)}


def owner_alive(owner: Any) -> bool | None:
    """Whether the process recorded in `owner` still runs: True/False on this host, None when the
    owner is on another host (only the heartbeat can tell) or unknown."""
    if not isinstance(owner, dict) or owner.get("host") != host_key() or not isinstance(owner.get("pid"), int):
        return None
    pid = owner["pid"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        pass
    except OSError:
        return None
    fields = _proc_stat(pid)
    start = _process_start(pid, fields)
    if owner.get("start") is not None and start is not None and start != owner["start"]:
        return False  # the pid was reused by another process
    if fields and fields[0] in ("Z", "X"):  # a zombie: dead, not yet waited for
        return False
    return True


@functools.lru_cache(maxsize=None)
def _make_owned_storage_class():
    from optuna.storages import RDBStorage
    from optuna.trial import TrialState

    class OwnedRDBStorage(RDBStorage):
        """RDBStorage that records the running process on every trial that turns RUNNING."""

        def _create_new_trial(self, study_id, template_trial=None):
            trial = super()._create_new_trial(study_id, template_trial)
            if trial.state == TrialState.RUNNING:
                owner = {**process_owner(), "since": time.time()}
                self._record_owner(trial._trial_id, owner)
                trial.system_attrs[OWNER_ATTR] = owner
            return trial

        def set_trial_state_values(self, trial_id, state, values=None):
            changed = super().set_trial_state_values(trial_id, state, values)
            if changed and state == TrialState.RUNNING:
                self._record_owner(trial_id, {**process_owner(), "since": time.time()})
            return changed

        def _record_owner(self, trial_id: int, owner: dict) -> None:
            try:
                self.set_trial_system_attr(trial_id, OWNER_ATTR, owner)
            except Exception as exc:  # never lose a trial over its bookkeeping: the heartbeat still covers it
                _log.warning("could not record the owner of trial id %d: %s", trial_id, exc)

    return OwnedRDBStorage


def set_heartbeat(storage, interval: int | None, grace_period: int | None = None, max_retry: int | None = 2) -> None:
    """Turn the heartbeat of an opened RDBStorage on (or off with `interval=None`), as its constructor
    would: a process can read a study's own settings before it starts beating with them."""
    from search_spaces import ConfigError

    for name, value in (("heartbeat_interval", interval), ("grace_period", grace_period)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise ConfigError(f"study.{name}", value, "null or an integer >= 1")
    storage.heartbeat_interval = interval
    storage.grace_period = grace_period if interval is not None else None
    callback = _retry_callback(max_retry) if interval is not None else None
    storage.heartbeat_stale_trial_callback = storage.failed_trial_callback = callback


def _retry_callback(max_retry: int | None):
    """Optuna's retry of a trial failed for a dead worker (a copy with the same params is enqueued)."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    with warnings.catch_warnings():  # "experimental" since Optuna 2.8; we rely on it knowingly
        warnings.simplefilter("ignore")
        return RetryHeartbeatStaleTrialCallback(max_retry=max_retry)


class AtomicFileSystemArtifactStore(FileSystemArtifactStore):
    """Optuna's file store, but a write is complete or absent.

    Optuna records an artifact in the study before writing its file, and its file store writes in
    place, so a worker killed mid-upload would leave a truncated file under a name the study trusts.
    """

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        from search_spaces.files import atomic_write

        with atomic_write(self._get_filepath(artifact_id)) as f:
            shutil.copyfileobj(content_body, f)


class PrefixedBoto3ArtifactStore:
    """Optuna's `Boto3ArtifactStore` under a key prefix (`s3://bucket/prefix`). An S3 PUT (and a
    multipart upload, on completion) is atomic: a reader sees the whole object or none."""

    def __init__(self, url: str, client=None) -> None:
        from optuna.artifacts import Boto3ArtifactStore

        self.url = url
        self.bucket, self.prefix = parse_s3_url(url)
        if client is None:
            import boto3
            from botocore.config import Config

            # endpoint (AWS_ENDPOINT_URL[_S3]), region and credentials: boto3's standard env vars / files
            client = boto3.client("s3", config=Config(connect_timeout=10, read_timeout=120,
                                                       retries={"max_attempts": 4, "mode": "standard"}))
        self.client = client
        self._store = Boto3ArtifactStore(self.bucket, client=client)

    def _key(self, artifact_id: str) -> str:
        return f"{self.prefix}{artifact_id}"

    def open_reader(self, artifact_id: str) -> BinaryIO:
        return self._store.open_reader(self._key(artifact_id))

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        self._store.write(self._key(artifact_id), content_body)

    def remove(self, artifact_id: str) -> None:
        self._store.remove(self._key(artifact_id))


def is_object_store(artifacts: str | os.PathLike) -> bool:
    return str(artifacts).startswith("s3://")


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> ("bucket", "some/prefix/"); credentials in the URL are refused
    (they belong in the AWS environment variables)."""
    from search_spaces import ConfigError

    rest = url[len("s3://"):]
    bucket, _, prefix = rest.partition("/")
    if not bucket or "@" in bucket or ":" in bucket:
        raise ConfigError("artifacts_dir", mask_url(url),
                          "s3://bucket/prefix (credentials and endpoint in the AWS_* environment variables)")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


def make_artifact_store(base_path: str | os.PathLike = DEFAULT_ARTIFACTS):
    """The artifact store (trial weights, hypernet checkpoints), chosen by `artifacts_dir`:
    `s3://bucket/prefix` -> an S3 (or S3-compatible) bucket every machine reaches
    (`PrefixedBoto3ArtifactStore`, needs the `s3` extra), else a local folder shared by the workers
    (`AtomicFileSystemArtifactStore`)."""
    if is_object_store(base_path):
        try:
            import boto3  # noqa: F401
        except ImportError:
            from search_spaces import ConfigError

            raise ConfigError("artifacts_dir", mask_url(str(base_path)),
                              "an s3:// URL only with boto3 installed (pip install 'logah-nas[s3]'), "
                              "or a directory path") from None
        return PrefixedBoto3ArtifactStore(str(base_path))
    Path(base_path).mkdir(parents=True, exist_ok=True)
    return AtomicFileSystemArtifactStore(base_path=str(base_path))


def check_artifact_store(store, where: str) -> None:
    """Write, read back and remove a small probe object: a process that cannot reach (or write) the
    artifacts fails at start with a ConfigError naming `artifacts_dir`, not after its first trial."""
    import io
    import socket
    import uuid

    from search_spaces import ConfigError

    probe = f".logah-probe-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        store.write(probe, io.BytesIO(b"ok"))
        with contextlib.closing(store.open_reader(probe)) as reader:
            ok = reader.read() == b"ok"
        store.remove(probe)
    except Exception as exc:  # boto3/botocore errors, OSError (read-only or missing folder, full disk)
        detail = mask_url(f"{type(exc).__name__}: {exc}".splitlines()[0])
        raise ConfigError("artifacts_dir", mask_url(where),
                          f"an artifact store this process can write and read ({detail}); for s3:// check "
                          "AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and the bucket") from None
    if not ok:
        raise ConfigError("artifacts_dir", mask_url(where), "an artifact store that returns what was written")


def _backend(study):
    return getattr(study._storage, "_backend", study._storage)  # unwrap Optuna's cache layer


def _fail_and_retry(study, trial, reason: str) -> bool:
    """FAIL a RUNNING trial with `reason` and enqueue its retry (as the heartbeat path does);
    False when another process finished or reaped it first."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    from nas.attrs import FAIL_REASON

    storage = _backend(study)
    try:
        storage.set_trial_user_attr(trial._trial_id, FAIL_REASON, reason)
        if not storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
            return False
    except UpdateFinishedTrialError:  # another process reaped (or the worker finished) it first
        return False
    callback = storage.get_heartbeat_stale_trial_callback() if hasattr(
        storage, "get_heartbeat_stale_trial_callback") else None
    if callback is None:  # heartbeat off in this process: retry all the same
        callback = _retry_callback(2)
    callback(study, storage.get_trial(trial._trial_id))
    _log.warning("trial %d of %s failed: %s", trial.number, study.study_name, reason)
    return True


def _running(study) -> list:
    from optuna.trial import TrialState

    return _backend(study).get_all_trials(study._study_id, deepcopy=False, states=(TrialState.RUNNING,))


def fail_trials_of(study, pid: int, reason: str) -> list[int]:
    """Fail (with `reason`) and retry the RUNNING trials of process `pid` of this host: what a parent
    does the moment it sees its worker die, instead of waiting for the heartbeat's grace period."""
    me = host_key()
    failed = []
    for trial in _running(study):
        owner = trial.system_attrs.get(OWNER_ATTR)
        if isinstance(owner, dict) and owner.get("host") == me and owner.get("pid") == pid:
            if _fail_and_retry(study, trial, reason):
                failed.append(trial.number)
    return failed


def reap_dead_trials(study, *, settle: bool = False) -> list[int]:
    """Fail, give a reason to, and retry the RUNNING trials whose worker died.

    Three cases: the trial's process ran on this host and is gone (known at once, heartbeat on or
    off); its heartbeat went stale (Optuna's own check, `fail_stale_trials`, which records no
    reason); it never wrote a heartbeat and started more than the grace period ago (a worker
    killed between `ask()` and its first beat, which Optuna skips: RUNNING forever). The retry goes
    through the storage's stale-trial callback, exactly as Optuna's path does.

    `settle=True` (a run's last word, once its own workers are gone): a trial that does not beat
    (never did, or missed its last beat) but is not dead by the grace period yet is waited for, at
    most the grace period, until it beats or is reaped. A database restart leaves such trials: a
    worker cut off while its new trial's row was committed never learns the trial's id (no owner
    recorded, nobody beats for it).
    """
    reaped, undecided = _reap_once(study)
    if settle and undecided:
        deadline = time.monotonic() + _grace_s(_backend(study)) + 1.0
        while undecided and time.monotonic() < deadline:
            time.sleep(0.5)
            more, undecided = _reap_once(study)
            reaped += more
    return reaped


def _grace_s(storage) -> float:
    interval = getattr(storage, "heartbeat_interval", None)
    if interval is None:
        return 0.0
    return storage.grace_period if storage.grace_period is not None else 2 * interval


def _reap_once(study) -> tuple[list[int], list[int]]:
    """(trials reaped now, RUNNING trials that do not beat but are not dead by the grace period yet)."""
    import datetime

    storage = _backend(study)
    reaped = []
    running = _running(study)
    for trial in running:
        owner = trial.system_attrs.get(OWNER_ATTR)
        if owner_alive(owner) is False:
            reason = f"worker died: process {owner['pid']} on {socket_host()} is gone"
            if _fail_and_retry(study, trial, reason):
                reaped.append(trial.number)
    if getattr(storage, "heartbeat_interval", None) is None:
        return reaped, []
    from optuna.storages._rdb.models import TrialHeartbeatModel

    grace, interval = _grace_s(storage), storage.heartbeat_interval
    stale = set(storage._get_stale_trial_ids(study._study_id))
    beats = TrialHeartbeatModel.__table__
    with storage.engine.connect() as conn:  # the database's clock, as Optuna's stale check uses
        db_now = conn.execute(sqlalchemy.select(sqlalchemy.func.now())).scalar().replace(tzinfo=None)
        beating = dict(conn.execute(sqlalchemy.select(beats.c.trial_id, beats.c.heartbeat)).all())
    late = datetime.timedelta(seconds=interval + 1)  # a live worker beats every `interval` seconds
    # When it started: the owner's UTC epoch seconds (any time zone; clocks NTP-synchronised as for
    # the refit lease), else Optuna's datetime_start, naive in the worker's local time zone, which
    # only a process in the same zone can compare with.
    now, cutoff = time.time(), datetime.datetime.now() - datetime.timedelta(seconds=grace)

    def started_long_ago(trial) -> bool:
        owner = trial.system_attrs.get(OWNER_ATTR)
        since = owner.get("since") if isinstance(owner, dict) else None
        if isinstance(since, (int, float)):
            return since < now - grace
        return trial.datetime_start is not None and trial.datetime_start < cutoff

    undecided = []
    for trial in running:
        if trial.number in reaped:
            continue
        never_beat = trial._trial_id not in beating
        if never_beat and not started_long_ago(trial):
            undecided.append(trial.number)
            continue
        if not never_beat and trial._trial_id not in stale and db_now - beating[trial._trial_id] > late:
            undecided.append(trial.number)  # stopped beating, not stale yet
            continue
        if trial._trial_id not in stale and not never_beat:
            continue
        reason = ("worker died before its first heartbeat" if never_beat
                  else f"worker died: no heartbeat for more than {grace} s")
        if _fail_and_retry(study, trial, reason):
            reaped.append(trial.number)
    return reaped, undecided


def socket_host() -> str:
    import socket

    return socket.gethostname()


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
    def artifacts(self):
        """`AtomicFileSystemArtifactStore` for a folder, `PrefixedBoto3ArtifactStore` for s3://."""
        return make_artifact_store(self.artifacts_dir)

    def check_artifacts(self) -> None:
        """ConfigError naming `artifacts_dir` unless this process can write and read the artifacts."""
        check_artifact_store(self.artifacts, self.artifacts_dir)

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
