"""Hypernet versions of a study, and the lease table, stored next to Optuna's tables.

Why a table and not study user attrs: several workers (maybe on several machines) refit and read
versions concurrently; a table with a unique (study_name, version) constraint gives consecutive
version numbers without a lost update, and the dashboard reads it with plain SQL.

Version 0 is the initial hypernet (the shipped pretrained checkpoint or a random one); every
refit adds the next number. Only *promoted* versions (validation better than their parent) are
used by workers; a worse refit is kept for the record.

Rows carry the identity of the study that recorded them (`study_uid`: the study's `study_uid` user
attr, a uuid set at creation), not only its name: `optuna delete-study` leaves our rows behind, and
a new study of the same name must never reuse them. Reads ignore rows of another identity; the first
version a new study records removes them (the unique (study_name, version) key would refuse its
version 0 otherwise). Rows without an identity (older databases) belong to a study without one.
"""
from __future__ import annotations

import datetime as dt
import json
import threading
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from nas.attrs import STUDY_UID

metadata = sa.MetaData()

hypernet_versions = sa.Table(
    "logah_hypernet_versions", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("study_name", sa.String(512), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),  # naive UTC (SQLite has no time zones)
    sa.Column("trials_used", sa.Integer, nullable=False, default=0),
    sa.Column("val_loss", sa.Float, nullable=True),
    sa.Column("parent_val_loss", sa.Float, nullable=True),
    sa.Column("promoted", sa.Boolean, nullable=False, default=False),
    sa.Column("artifact_id", sa.String(255), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("device", sa.String(64), nullable=False, default="cpu"),
    sa.Column("seconds", sa.Float, nullable=False, default=0.0),
    sa.Column("note", sa.Text, nullable=False, default=""),
    sa.Column("study_uid", sa.String(64), nullable=True),  # the recording study's STUDY_UID attr (None: none)
    sa.UniqueConstraint("study_name", "version", name="uq_logah_hypernet_versions_study_version"),
)

leases = sa.Table(
    "logah_leases", metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("holder", sa.String(255), nullable=False),
    sa.Column("acquired_at", sa.DateTime, nullable=False),  # naive UTC
    sa.Column("expires_at", sa.DateTime, nullable=False),  # naive UTC
)

_ready: set[tuple[str, int]] = set()  # engines whose tables exist (per process)
_ready_lock = threading.Lock()
_with_uid: set[tuple[str, int]] = set()  # engines whose versions table has the study_uid column

# Optuna's own tables (same database), read to find the live study's identity.
_optuna_studies = sa.table("studies", sa.column("study_id"), sa.column("study_name"))
_optuna_study_attrs = sa.table("study_user_attributes", sa.column("study_id"), sa.column("key"),
                               sa.column("value_json"))


def utcnow() -> dt.datetime:
    """Naive UTC now: what we store (SQLite drops tz info; Postgres `timestamp` has none)."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


@dataclass(frozen=True)
class HypernetVersion:
    id: int
    study_name: str
    version: int
    created_at: dt.datetime  # aware, UTC
    trials_used: int
    val_loss: float | None
    parent_val_loss: float | None
    promoted: bool
    artifact_id: str
    sha256: str
    device: str
    seconds: float
    note: str
    study_uid: str | None = None


class VersionExistsError(ValueError):
    """An explicit version number was already recorded for the study (another process won)."""


def _engine(engine_or_url: Engine | str) -> Engine:
    if isinstance(engine_or_url, str):
        from nas.storage import make_engine

        return make_engine(engine_or_url)
    return engine_or_url


def ensure_tables(engine: Engine) -> None:
    """Create our tables if missing. Safe when several processes race on a fresh database."""
    key = (str(engine.url), id(engine))
    if key in _ready:
        return
    with _ready_lock:
        for attempt in range(5):
            try:
                metadata.create_all(engine, checkfirst=True)
                break
            except (OperationalError, ProgrammingError, IntegrityError):
                # Another process created a table between our check and our CREATE.
                if all(sa.inspect(engine).has_table(t.name) for t in metadata.sorted_tables):
                    break
                if attempt == 4:
                    raise
        _add_uid_column(engine)
        _ready.add(key)


def _add_uid_column(engine: Engine) -> None:
    """Databases created before versions carried a study identity get the column (nullable)."""
    if _has_uid_column(engine):
        return
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"ALTER TABLE {hypernet_versions.name} ADD COLUMN study_uid VARCHAR(64)"))
    except (OperationalError, ProgrammingError):  # another process added it first
        if not _has_uid_column(engine, fresh=True):
            raise


def _has_uid_column(engine: Engine, fresh: bool = False) -> bool:
    key = (str(engine.url), id(engine))
    if key in _with_uid and not fresh:
        return True
    columns = {c["name"] for c in sa.inspect(engine).get_columns(hypernet_versions.name)}
    if "study_uid" in columns:
        _with_uid.add(key)
    return "study_uid" in columns


def live_study_uid(conn: sa.Connection, study_name: str) -> str | None:
    """The `STUDY_UID` attr of the Optuna study named `study_name` in this database (None: no such
    study, or one created without an identity)."""
    if not sa.inspect(conn).has_table("study_user_attributes"):
        return None
    s, a = _optuna_studies, _optuna_study_attrs
    value = conn.execute(sa.select(a.c.value_json).select_from(s.join(a, s.c.study_id == a.c.study_id))
                         .where(s.c.study_name == study_name, a.c.key == STUDY_UID)).scalar()
    return None if value is None else str(json.loads(value))


def _select(conn: sa.Connection) -> sa.Select:
    """SELECT of our columns that this database has (study_uid is missing from older ones)."""
    t = hypernet_versions
    if _has_uid_column(conn.engine):
        return sa.select(t)
    return sa.select(*(c for c in t.c if c.name != "study_uid"))


def _of_study(conn: sa.Connection, study_name: str):
    """WHERE clause: the rows of the live study named `study_name` (identity included)."""
    t = hypernet_versions
    if not _has_uid_column(conn.engine):  # an older database nobody has written to since: names only
        return t.c.study_name == study_name
    uid = live_study_uid(conn, study_name)
    return sa.and_(t.c.study_name == study_name, t.c.study_uid.is_(None) if uid is None else t.c.study_uid == uid)


def _float(x) -> float | None:
    return None if x is None else float(x)


def _row_to_version(row) -> HypernetVersion:
    m = row._mapping
    created = m["created_at"]
    if created.tzinfo is None:
        created = created.replace(tzinfo=dt.timezone.utc)
    return HypernetVersion(
        id=m["id"], study_name=m["study_name"], version=m["version"], created_at=created,
        trials_used=int(m["trials_used"]), val_loss=_float(m["val_loss"]), parent_val_loss=_float(m["parent_val_loss"]),
        promoted=bool(m["promoted"]), artifact_id=m["artifact_id"], sha256=m["sha256"], device=m["device"],
        seconds=float(m["seconds"]), note=m["note"], study_uid=m.get("study_uid"),
    )


def record_version(engine: Engine | str, study_name: str, *, artifact_id: str, sha256: str,
                   promoted: bool, trials_used: int = 0, val_loss: float | None = None,
                   parent_val_loss: float | None = None, device: str = "cpu", seconds: float = 0.0,
                   note: str = "", version: int | None = None) -> HypernetVersion:
    """Insert a version; its number is the study's previous maximum + 1 (0 for the first).

    The number is allocated and inserted in one transaction; when two processes race, the unique
    constraint rejects the loser, which retries with the next number. Passing `version` asks for
    that exact number and raises `VersionExistsError` if it is taken (used for version 0).
    """
    engine = _engine(engine)
    ensure_tables(engine)
    t = hypernet_versions
    for _ in range(50):
        try:
            with engine.begin() as conn:
                mine = _of_study(conn, study_name)
                # A deleted study's rows (another identity, same name) are garbage: drop them.
                conn.execute(t.delete().where(t.c.study_name == study_name, sa.not_(mine)))
                number = version
                if number is None:
                    prev = conn.execute(sa.select(sa.func.max(t.c.version)).where(mine)).scalar()
                    number = 0 if prev is None else int(prev) + 1
                row = conn.execute(t.insert().values(
                    study_name=study_name, study_uid=live_study_uid(conn, study_name), version=number,
                    created_at=utcnow(), trials_used=int(trials_used),
                    val_loss=None if val_loss is None else float(val_loss),
                    parent_val_loss=None if parent_val_loss is None else float(parent_val_loss),
                    promoted=bool(promoted), artifact_id=artifact_id, sha256=sha256, device=str(device),
                    seconds=float(seconds), note=note,
                ).returning(*t.c)).one()
                return _row_to_version(row)
        except IntegrityError:
            if version is not None:
                raise VersionExistsError(f"study {study_name!r} already has hypernet version {version}") from None
    raise RuntimeError(f"could not allocate a hypernet version number for study {study_name!r}")


def _has_table(engine: Engine) -> bool:
    return sa.inspect(engine).has_table(hypernet_versions.name)


def list_versions(engine_or_url: Engine | str, study_name: str) -> list[HypernetVersion]:
    """All versions of a study, oldest first. Read-only: an absent table means no versions."""
    engine = _engine(engine_or_url)
    if not _has_table(engine):
        return []
    t = hypernet_versions
    with engine.connect() as conn:
        rows = conn.execute(_select(conn).where(_of_study(conn, study_name)).order_by(t.c.version)).all()
    return [_row_to_version(r) for r in rows]


def get_version(engine_or_url: Engine | str, study_name: str, version: int) -> HypernetVersion | None:
    engine = _engine(engine_or_url)
    if not _has_table(engine):
        return None
    t = hypernet_versions
    with engine.connect() as conn:
        row = conn.execute(_select(conn).where(_of_study(conn, study_name), t.c.version == version)).first()
    return None if row is None else _row_to_version(row)


def latest_promoted(engine_or_url: Engine | str, study_name: str) -> HypernetVersion | None:
    """The hypernet version workers should use now (None before version 0 is registered)."""
    engine = _engine(engine_or_url)
    if not _has_table(engine):
        return None
    t = hypernet_versions
    with engine.connect() as conn:
        row = conn.execute(_select(conn).where(_of_study(conn, study_name), t.c.promoted.is_(True))
                           .order_by(t.c.version.desc()).limit(1)).first()
    return None if row is None else _row_to_version(row)


def refit_share(refit_seconds: float, trial_seconds: float) -> float:
    """The refits' share of a study's compute: refit seconds / (refit seconds + trial seconds), all
    workers together (what `hypernet.refit_max_share` caps; `nas.refit` and the dashboard show it)."""
    return refit_seconds / (refit_seconds + trial_seconds) if refit_seconds > 0 else 0.0


__all__ = ["HypernetVersion", "VersionExistsError", "ensure_tables", "get_version", "hypernet_versions",
           "latest_promoted", "leases", "list_versions", "live_study_uid", "metadata", "record_version", "refit_share",
           "utcnow"]
