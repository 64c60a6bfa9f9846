"""A database lease: at most one process in the whole study refits the hypernet at a time.

File locks do not work across machines and Optuna has no mutex, so the lease is a row in
`logah_leases` (same database as the study). Acquiring is one atomic statement, so it is
correct on SQLite and PostgreSQL alike:

* INSERT the row (name is the primary key): succeeds only if nobody holds or held it, or
* UPDATE ... WHERE name = :name AND (expires_at < now OR holder = me): takes over an expired
  lease (its holder crashed) or re-enters our own.

The holder renews the lease (a heartbeat thread started by `hold_lease`, every ttl/3) and
deletes the row when done. A crashed holder stops renewing, so its lease expires after `ttl_s`.
Clocks: expiry uses the caller's UTC clock, so machines must be NTP-synchronised to well under
`ttl_s` (the default TTL is minutes; skew is milliseconds).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import socket
import threading
import uuid
from typing import Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from nas.versions import ensure_tables, leases, utcnow

_log = logging.getLogger(__name__)


def new_holder_id() -> str:
    """host:pid:uuid — unique per acquisition attempt, readable in the dashboard."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def try_acquire(engine: Engine, name: str, holder: str, ttl_s: float) -> bool:
    """Take the lease `name` for `ttl_s` seconds if it is free or expired. Never blocks."""
    ensure_tables(engine)
    now = utcnow()
    expires = now + dt.timedelta(seconds=ttl_s)
    try:
        with engine.begin() as conn:
            conn.execute(leases.insert().values(name=name, holder=holder, acquired_at=now, expires_at=expires))
        return True
    except IntegrityError:
        pass  # a row exists: take it over only if it expired (or is ours)
    with engine.begin() as conn:
        result = conn.execute(
            leases.update()
            .where(leases.c.name == name, sa.or_(leases.c.expires_at < now, leases.c.holder == holder))
            .values(holder=holder, acquired_at=now, expires_at=expires))
        return result.rowcount == 1


def renew(engine: Engine, name: str, holder: str, ttl_s: float) -> bool:
    """Extend our lease; False means we lost it (it expired and someone else took it)."""
    with engine.begin() as conn:
        result = conn.execute(
            leases.update().where(leases.c.name == name, leases.c.holder == holder)
            .values(expires_at=utcnow() + dt.timedelta(seconds=ttl_s)))
        return result.rowcount == 1


def release(engine: Engine, name: str, holder: str) -> None:
    """Give the lease back (only if we still hold it)."""
    with engine.begin() as conn:
        conn.execute(leases.delete().where(leases.c.name == name, leases.c.holder == holder))


def current_holder(engine: Engine, name: str) -> str | None:
    """Who holds an unexpired lease `name` now (None if free)."""
    ensure_tables(engine)
    with engine.connect() as conn:
        row = conn.execute(sa.select(leases.c.holder, leases.c.expires_at).where(leases.c.name == name)).first()
    if row is None or row.expires_at < utcnow():
        return None
    return row.holder


class Lease:
    """A held (or not) lease. `held` is False if acquisition failed; `lost` turns True if a
    renewal found someone else holding it — the work done under it must then be discarded."""

    def __init__(self, engine: Engine, name: str, ttl_s: float, holder: str | None = None) -> None:
        self.engine, self.name, self.ttl_s = engine, name, float(ttl_s)
        self.holder = holder or new_holder_id()
        self.held = False
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> bool:
        self.held = try_acquire(self.engine, self.name, self.holder, self.ttl_s)
        return self.held

    def renew(self) -> bool:
        """Explicit renewal (also done by the heartbeat thread)."""
        if not self.held or self.lost:
            return False
        try:
            ok = renew(self.engine, self.name, self.holder, self.ttl_s)
        except Exception as exc:  # a transient DB error: keep trying until the lease would expire
            _log.warning("lease %s: renewal failed: %s", self.name, exc)
            return True
        if not ok:
            self.lost = True
            _log.warning("lease %s: lost (expired and taken by another process)", self.name)
        return ok

    def start_heartbeat(self, every_s: float | None = None) -> None:
        every = every_s if every_s is not None else max(self.ttl_s / 3.0, 0.05)

        def beat() -> None:
            while not self._stop.wait(every):
                if not self.renew():
                    return

        self._thread = threading.Thread(target=beat, name=f"lease-{self.name}", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.held and not self.lost:
            try:
                release(self.engine, self.name, self.holder)
            except Exception as exc:  # the lease will expire by itself
                _log.warning("lease %s: release failed (%s); it expires in %.0f s", self.name, exc, self.ttl_s)
        self.held = False

    def __bool__(self) -> bool:
        return self.held and not self.lost


@contextlib.contextmanager
def hold_lease(engine: Engine, name: str, ttl_s: float = 300.0, *, heartbeat: bool = True) -> Iterator[Lease]:
    """`with hold_lease(engine, "refit:study") as lease: if lease: ...` — truthy only if we hold it.

    Non-blocking: a process that does not get the lease just skips the guarded work.
    """
    lease = Lease(engine, name, ttl_s)
    lease.acquire()
    if lease.held and heartbeat:
        lease.start_heartbeat()
    try:
        yield lease
    finally:
        lease.release()


__all__ = ["Lease", "current_holder", "hold_lease", "new_holder_id", "release", "renew", "try_acquire"]
