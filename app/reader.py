"""Reading a study storage, read-only: opening it, its studies and trials, our versions table.

No Streamlit in here: the app caches what these return, and tests call them directly. The
dashboard must never change a study, so the database is opened read-only *by the driver*
(SQLite `mode=ro`, PostgreSQL/MySQL read-only sessions): a bug cannot turn into a write.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import optuna
import pandas as pd
import sqlalchemy as sa
from optuna.trial import FrozenTrial

from app.frames import STUDY_COLUMNS, study_row
from nas.secrets import mask_url

if TYPE_CHECKING:
    from nas.versions import HypernetVersion

_CONNECT_TIMEOUT_S = 5  # an unreachable server must not hang the page


class StorageError(RuntimeError):
    """The storage cannot be read; the message names it with credentials masked."""


class ArtifactError(RuntimeError):
    """A trial's weights artifact is missing, unreadable or does not fit the trial's config."""


def short_error(e: BaseException, limit: int = 300) -> str:
    """First line of an error, credentials masked, cut to `limit` characters: for st.error."""
    text = mask_url(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
    return text if len(text) <= limit else text[:limit] + "…"


# ----------------------------------------------------------------------------------------------
# Opening the storage read-only
# ----------------------------------------------------------------------------------------------

def readonly_url(url: str) -> tuple[str, dict[str, Any]]:
    """(URL, engine kwargs) that open `url` so the database driver refuses every write."""
    try:
        parsed = sa.engine.make_url(url)
    except Exception as e:  # noqa: BLE001 - any parse failure is a user input error
        raise StorageError(f"{mask_url(url)!r} is not a database URL ({e})") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        db = parsed.database or ""
        if db in ("", ":memory:") or "mode=memory" in db:
            raise StorageError(f"{mask_url(url)} is an in-memory database: nothing to show")
        path = Path(db.removeprefix("file:").split("?", 1)[0]).expanduser().resolve()
        if not path.is_file():
            raise StorageError(f"no study database at {path} (storage {mask_url(url)})")
        query = {"mode": "ro", "uri": "true"}
        if not os.access(path.parent, os.W_OK):
            # WAL files need a writable folder even for readers; a read-only snapshot is safe to
            # open as immutable (no locking, no -shm file).
            query = {"immutable": "1", "uri": "true"}
        params = "&".join(f"{k}={v}" for k, v in query.items())
        return f"{parsed.drivername}:///file:{quote(str(path))}?{params}", {}
    if backend == "postgresql":
        return url, {"connect_args": {"options": "-c default_transaction_read_only=on",
                                      "connect_timeout": _CONNECT_TIMEOUT_S}, "pool_pre_ping": True}
    if backend in ("mysql", "mariadb"):
        return url, {"connect_args": {"init_command": "SET SESSION TRANSACTION READ ONLY",
                                      "connect_timeout": _CONNECT_TIMEOUT_S}, "pool_pre_ping": True}
    raise StorageError(f"cannot open {backend} storage {mask_url(url)} read-only; "
                       "supported: sqlite, postgresql, mysql")


class Reader:
    """One read-only storage: its studies and their trials.

    Study objects are kept, because Optuna's RDB storage cache then reads only new or
    unfinished trials on each refresh instead of all 5,000 again.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.masked_url = mask_url(url)
        ro_url, engine_kwargs = readonly_url(url)
        try:
            probe = sa.create_engine(ro_url, **engine_kwargs)
            try:
                has_tables = sa.inspect(probe).has_table("studies")
            finally:
                probe.dispose()
            # Without Optuna's tables there is nothing to read; RDBStorage would try to create them.
            self.storage = (optuna.storages.RDBStorage(ro_url, engine_kwargs=engine_kwargs, skip_table_creation=True)
                            if has_tables else None)
        except StorageError:
            raise
        except Exception as e:  # noqa: BLE001 - driver errors vary; the user needs the gist
            raise StorageError(f"cannot read study storage {self.masked_url}: {short_error(e)}") from None
        self._studies: dict[str, optuna.Study] = {}
        self._lock = threading.Lock()

    @property
    def engine(self) -> sa.engine.Engine | None:
        return None if self.storage is None else self.storage.engine

    def study_names(self) -> list[str]:
        if self.storage is None:
            return []
        return sorted(s.study_name for s in self.storage.get_all_studies())

    def study(self, name: str) -> optuna.Study:
        with self._lock:
            if name not in self._studies:
                if self.storage is None:
                    raise StorageError(f"no studies in {self.masked_url}")
                try:
                    self._studies[name] = optuna.load_study(study_name=name, storage=self.storage)
                except KeyError:
                    raise StorageError(f"no study named {name!r} in {self.masked_url}") from None
            return self._studies[name]

    def trials(self, name: str) -> list[FrozenTrial]:
        """All trials, shared (not copied): callers must not modify them."""
        return self.study(name).get_trials(deepcopy=False)

    def trial(self, name: str, number: int) -> FrozenTrial:
        trials = self.trials(name)  # sorted by number, and numbers are 0..n-1 within a study
        if 0 <= number < len(trials) and trials[number].number == number:
            return trials[number]
        for t in trials:
            if t.number == number:
                return t
        raise KeyError(f"study {name!r} has no trial {number}")

    def versions(self, name: str) -> pd.DataFrame:
        return versions_frame(self.engine, name)

    def version_list(self, name: str) -> list[HypernetVersion]:
        """The study's hypernet versions as `nas.versions` returns them, oldest first (for `nas.gain`)."""
        return version_list(self.engine, name)

    def studies(self) -> pd.DataFrame:
        rows = [study_row(self.study(name)) for name in self.study_names()]
        return pd.DataFrame(rows, columns=STUDY_COLUMNS)

    def close(self) -> None:
        if self.storage is not None:
            self.storage.engine.dispose()


# ----------------------------------------------------------------------------------------------
# Our own table: hypernet versions
# ----------------------------------------------------------------------------------------------

VERSION_COLUMNS = ["version", "created_at", "trials_used", "val_loss", "parent_val_loss", "promoted", "device",
                   "seconds", "artifact_id", "sha256", "note"]


def version_list(engine: sa.engine.Engine | None, study_name: str) -> list[HypernetVersion]:
    """The study's hypernet versions (nas.versions), oldest first; [] when none were recorded."""
    if engine is None:
        return []
    from nas.versions import list_versions

    try:
        return list_versions(engine, study_name)
    except sa.exc.SQLAlchemyError as e:
        raise StorageError(f"cannot read hypernet versions: {short_error(e)}") from None


def versions_frame(engine: sa.engine.Engine | None, study_name: str) -> pd.DataFrame:
    """The study's hypernet versions (nas.versions), oldest first; empty when none were recorded."""
    from dataclasses import asdict

    return pd.DataFrame([asdict(v) for v in version_list(engine, study_name)], columns=VERSION_COLUMNS)

