"""Fixtures of the reliability suite: a fresh PostgreSQL database per test.

`.ci/run` starts a throw-away PostgreSQL 15 on 127.0.0.1 and exports LOGAH_TEST_POSTGRES_URL
(a database the tests may connect to). Each `pg_url` test gets its own database, created with
`CREATE DATABASE` and dropped (WITH (FORCE): workers may still hold pooled connections) at the
end, so tests never see each other's studies or leases. Without the variable the tests marked
`postgres` are skipped with the reason below; in CI it is set, so they run.
"""
from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # `import _rel` from the test modules

PG_ENV = "LOGAH_TEST_POSTGRES_URL"
PG_SKIP = (f"{PG_ENV} is not set: start PostgreSQL 15 as .ci/run does (initdb, pg_ctl on 127.0.0.1:55432, "
           "createdb logah_test) and export the URL")


def pytest_collection_modifyitems(config, items):
    if os.environ.get(PG_ENV):
        return
    skip = pytest.mark.skip(reason=PG_SKIP)
    for item in items:
        if "postgres" in item.keywords and Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(skip)


def _libpq(url) -> str:
    """SQLAlchemy URL -> libpq conninfo for psycopg (drops the +psycopg driver suffix)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _admin_connect():
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(os.environ[PG_ENV])
    return base, psycopg.connect(_libpq(base), autocommit=True)


@pytest.fixture
def pg_admin():
    """(base SQLAlchemy URL, autocommit psycopg connection to the CI database)."""
    if not os.environ.get(PG_ENV):
        pytest.skip(PG_SKIP)
    base, conn = _admin_connect()
    try:
        yield base, conn
    finally:
        conn.close()


def _dispose_engines() -> None:
    """Close this process's pooled connections (nas.storage caches one engine per URL)."""
    from nas import storage

    for engine in list(storage._engines.values()):
        engine.dispose()
    storage._engines.clear()


@pytest.fixture
def pg_database(pg_admin):
    """Create a fresh database; yields (name, SQLAlchemy URL as a string)."""
    base, conn = pg_admin
    name = f"logah_rel_{uuid.uuid4().hex[:12]}"
    conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name, base.set(database=name).render_as_string(hide_password=False)
    finally:
        _dispose_engines()
        try:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except Exception:  # the server was restarted by the test (test_rel_dbfaults): a new connection
            _, fresh = _admin_connect()
            with fresh:
                fresh.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_database) -> str:
    return pg_database[1]


@pytest.fixture(scope="session")
def pg_password_study(tmp_path_factory):
    """One real multi-worker study on PostgreSQL, shared by the load test and the credentials test.

    A fresh database owned by a fresh login role with a password; `python -m nas search` with 4
    worker processes, 12 trials and a refit every 2 completed trials, then `python -m nas export`.
    Yields a dict: tmp, url, role, password, n_trials, workers, search and export (CompletedProcess).
    """
    if not os.environ.get(PG_ENV):
        pytest.skip(PG_SKIP)
    from _rel import STATS, overrides, run_cli

    base, conn = _admin_connect()
    name = f"logah_rel_{uuid.uuid4().hex[:12]}"
    role, password = f"logah_rel_{uuid.uuid4().hex[:8]}", f"Pw-{uuid.uuid4().hex}"
    conn.execute(f'CREATE DATABASE "{name}"')
    conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    conn.execute(f'ALTER DATABASE "{name}" OWNER TO {role}')  # PG 15: CREATE on schema public is the owner's
    url = base.set(database=name, username=role, password=password).render_as_string(hide_password=False)
    tmp = tmp_path_factory.mktemp("pg-study")
    n_trials, workers = 12, 4
    try:
        search = run_cli(["search", *overrides(tmp, url, f"n_trials={n_trials}", f"workers={workers}",
                                               "hypernet.refit_every=2", "study.control_fraction=0.25",
                                               "hypernet.refit_in=worker")],  # 4 workers contend for the lease
                         cwd=tmp, timeout=300)
        export = run_cli(["export", *overrides(tmp, url, f"export_dir={tmp}/again")], cwd=tmp)
        STATS["workers"] += workers
        yield {"tmp": tmp, "url": url, "role": role, "password": password, "n_trials": n_trials,
               "workers": workers, "search": search, "export": export}
    finally:
        _dispose_engines()
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f"DROP ROLE IF EXISTS {role}")
        conn.close()


def pytest_terminal_summary(terminalreporter):
    """One line of figures (trials run, kills survived, bad inputs tried) for the README."""
    from _rel import STATS

    if any(STATS.values()):
        terminalreporter.write_line(
            f"reliability: {STATS['trials']} trials run by {STATS['workers']} worker processes, "
            f"{STATS['refits']} hypernet refits checked, {STATS['leases']} contended lease acquisitions, "
            f"{STATS['kills']} kill -9 survived, {STATS['bad_inputs']} bad inputs tried")
