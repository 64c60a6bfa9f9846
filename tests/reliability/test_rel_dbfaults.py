"""Database faults: PostgreSQL restarted mid-study; SQLite read-only.

The restart test needs `.ci/run`'s server and its pg_ctl (`LOGAH_CI_PG_CTL`, e.g.
"runuser -u postgres -- .../pg_ctl -D DATA -l LOG"); without it the test is skipped.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys

import pytest
from _rel import STATS, child_env, overrides, retried_from, run_cli, trials_by_state, wait_for

PG_CTL_ENV = "LOGAH_CI_PG_CTL"


@pytest.mark.postgres
def test_postgres_restarted_mid_study_the_study_completes_nothing_left_running(tmp_path, pg_database):
    if not os.environ.get(PG_CTL_ENV):
        pytest.skip(f"{PG_CTL_ENV} is not set (.ci/run exports it): no way to restart the server")
    import optuna

    from nas.storage import make_storage
    from nas.study import COUNTED

    _, url = pg_database
    args = overrides(tmp_path, url, "study.steps=12", "study.eval_every=6", "study.heartbeat_interval=2",
                     "n_trials=6", "workers=2")
    search = subprocess.Popen([sys.executable, "-m", "nas", "search", *args], cwd=tmp_path, env=child_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def started():
            try:
                study = optuna.load_study(study_name="vit-digits", storage=make_storage(url, heartbeat_interval=None))
                return len(study.get_trials(deepcopy=False, states=COUNTED)) >= 1
            except Exception:
                return False

        wait_for("a first trial done", started, timeout=150, every=0.5)
        from conftest import _dispose_engines

        _dispose_engines()
        assert search.poll() is None, "the study finished before the restart"
        subprocess.run([*shlex.split(os.environ[PG_CTL_ENV]), "-m", "fast", "-w", "restart"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        out, err = search.communicate(timeout=240)
    finally:
        if search.poll() is None:
            search.kill()
            search.communicate()
    assert search.returncode == 0, out[-3000:] + err[-3000:]
    assert "trials done: 6/6" in out and "Traceback" not in err, out[-3000:] + err[-3000:]
    study = optuna.load_study(study_name="vit-digits", storage=make_storage(url, heartbeat_interval=None))
    states = trials_by_state(study)
    assert not states["RUNNING"], [t.number for t in states["RUNNING"]]
    failed = {t.number for t in states["FAIL"]}
    retried = [retried_from(t) for t in study.trials if retried_from(t) is not None]
    assert len(retried) == len(set(retried)), "a failed trial was retried twice"
    assert set(retried) <= failed
    STATS["trials"] += len(study.trials)
    STATS["workers"] += 2


def _restart_postgres() -> None:
    from conftest import _dispose_engines

    _dispose_engines()
    subprocess.run([*shlex.split(os.environ[PG_CTL_ENV]), "-m", "fast", "-w", "restart"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)


@pytest.mark.postgres
def test_a_worker_started_by_hand_survives_a_postgres_restart(tmp_path, pg_database):
    """Nobody restarts a worker on another machine: it waits the outage out (backoff), fails the
    trial it was running (retried) and finishes the study."""
    if not os.environ.get(PG_CTL_ENV):
        pytest.skip(f"{PG_CTL_ENV} is not set (.ci/run exports it): no way to restart the server")
    from _rel import create_study, start_worker, stop

    from nas.study import COUNTED

    _, url = pg_database
    cfg, session = create_study(tmp_path, url, "study.steps=12", "study.eval_every=6", "study.heartbeat_interval=2",
                                "n_trials=8")
    worker = start_worker(tmp_path, url, cfg.study_name, 0)
    try:
        wait_for("a first trial done", lambda: len(session.study.get_trials(deepcopy=False, states=COUNTED)) >= 1,
                 timeout=150, every=0.2, alive=worker)
        _restart_postgres()
        assert worker.wait(240) == 0, worker.output()[-4000:]
    finally:
        stop([worker])
    states = trials_by_state(session.study)
    assert not states["RUNNING"] and len(states["COMPLETE"]) + len(states["PRUNED"]) >= 8
    # (a trial whose own database writes failed is logged by Optuna with its traceback, and retried)
    STATS["trials"] += len(session.study.trials)
    STATS["workers"] += 1


@pytest.mark.postgres
def test_the_refit_lease_is_renewed_across_a_postgres_restart(pg_database):
    if not os.environ.get(PG_CTL_ENV):
        pytest.skip(f"{PG_CTL_ENV} is not set (.ci/run exports it): no way to restart the server")
    import time

    import sqlalchemy as sa

    from nas.lease import Lease, current_holder
    from nas.storage import make_engine
    from nas.versions import leases

    _, url = pg_database
    engine = make_engine(url)
    lease = Lease(engine, "refit:restart", ttl_s=60)
    assert lease.acquire()

    def expires():
        with engine.connect() as conn:
            return conn.execute(sa.select(leases.c.expires_at).where(leases.c.name == lease.name)).scalar_one()

    before = expires()
    _restart_postgres()
    time.sleep(0.05)
    assert wait_for("a renewal after the restart", lambda: lease.renew() and expires() > before, timeout=30, every=0.5)
    assert not lease.lost and current_holder(engine, lease.name) == lease.holder
    lease.release()
    assert current_holder(engine, lease.name) is None


def test_read_only_sqlite_database_is_one_clear_error(tmp_path):
    url = f"sqlite:///{tmp_path}/study.db"
    first = run_cli(["search", *overrides(tmp_path, url, "n_trials=1", "workers=1")], cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    os.chmod(tmp_path / "study.db", 0o444)
    try:
        if os.geteuid() == 0:
            pytest.skip("root writes read-only files")
        again = run_cli(["search", *overrides(tmp_path, url, "n_trials=2", "workers=1")], cwd=tmp_path, timeout=120)
    finally:
        os.chmod(tmp_path / "study.db", 0o644)
    assert again.returncode != 0 and "Traceback" not in again.stderr
    assert again.stderr.count("\n") <= 3 and "readonly" in again.stderr.lower().replace("-", ""), again.stderr[-2000:]


def test_sqlite_database_that_cannot_grow_is_one_clear_error_not_a_retry_loop(tmp_path):
    """A full disk (emulated with a file-size limit: the database and its WAL cannot grow) is not an
    outage to wait out: `search` stops at once with what to do and how to resume."""
    import resource
    import signal

    url = f"sqlite:///{tmp_path}/study.db"
    first = run_cli(["search", *overrides(tmp_path, url, "n_trials=1", "workers=1")], cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    for extra in ("study.db-wal", "study.db-shm"):
        (tmp_path / extra).unlink(missing_ok=True)
    limit = (tmp_path / "study.db").stat().st_size + 1

    def cannot_grow():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    again = subprocess.run([sys.executable, "-m", "nas", "search", *overrides(tmp_path, url, "n_trials=4", "workers=1")],
                           cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=120,
                           preexec_fn=cannot_grow)
    assert again.returncode == 2, again.stdout[-2000:] + again.stderr[-3000:]
    last = again.stderr.strip().splitlines()[-1]
    assert last.startswith("logah-nas: error: the study's database cannot be written (") and "resume" in last
    assert "retrying" not in again.stderr
