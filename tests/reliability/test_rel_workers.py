"""Many workers on one study: 4 processes on PostgreSQL, 2 on SQLite, with hypernet refits.

Both run the real `python -m nas search ... workers=N` (which spawns `python -m nas worker`
processes) and then audit the database: every trial accounted for, none left RUNNING, hypernet
versions 0..k, refits never overlapping in time (the lease), every artifact whole, and no lock
error in any worker's output.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from _rel import LOCK_ERRORS, STATS, check_versions_and_artifacts, overrides, refit_intervals_disjoint, run_cli, \
    sqlite_url, trials_by_state


def _audit(tmp_path: Path, storage: str, n_trials: int, workers: int, run) -> dict:
    import optuna

    from nas.storage import make_storage

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    logs = sorted((tmp_path / "logs").glob("vit-digits-worker*.log"))
    assert len(logs) == workers
    for log in logs:
        text = log.read_text(errors="replace")
        assert not LOCK_ERRORS.search(text), f"{log.name}:\n{text[-3000:]}"
        assert "Traceback" not in text, f"{log.name}:\n{text[-3000:]}"
    assert not LOCK_ERRORS.search(run.stdout + run.stderr)

    study = optuna.load_study(study_name="vit-digits", storage=make_storage(storage, heartbeat_interval=None))
    states = trials_by_state(study)
    counted = len(states["COMPLETE"]) + len(states["PRUNED"])
    # MaxTrialsCallback stops each worker after the trial it is running: at most workers-1 extra
    assert n_trials <= counted <= n_trials + workers - 1, {k: len(v) for k, v in states.items()}
    assert not states["RUNNING"] and not states["WAITING"] and not states["FAIL"], \
        [(t.number, t.state.name, t.user_attrs.get("fail_reason")) for t in study.trials if t.state.name != "COMPLETE"]
    for t in states["COMPLETE"]:
        assert {"config", "n_params", "warm_start", "loss_step0", "weights_artifact_id", "train_seconds"} <= set(t.user_attrs)

    versions = check_versions_and_artifacts(storage, "vit-digits", tmp_path / "artifacts")
    assert len(versions) >= 3, f"expected refits, got versions {[v.version for v in versions]}"
    assert refit_intervals_disjoint(versions), [(v.version, v.created_at, v.seconds) for v in versions]
    used = {t.user_attrs["hypernet_version"] for t in states["COMPLETE"] if t.user_attrs["warm_start"]}
    assert used <= {v.version for v in versions if v.promoted}
    exported = re.search(r"exported to (\S+)", run.stdout)
    assert exported and (Path(exported.group(1)) / "model.safetensors").exists()
    STATS["trials"] += len(study.trials)
    return {"trials": len(study.trials), "versions": len(versions)}


@pytest.mark.slow
@pytest.mark.postgres
def test_four_workers_on_postgres_with_refits(pg_password_study):
    s = pg_password_study
    _audit(s["tmp"], s["url"], s["n_trials"], s["workers"], s["search"])


@pytest.mark.slow
def test_two_workers_on_sqlite_never_hit_a_locked_database(tmp_path):
    from nas.storage import SQLITE_TIMEOUT_S, make_engine

    url = sqlite_url(tmp_path)
    n_trials, workers = 8, 2
    run = run_cli(["search", *overrides(tmp_path, url, f"n_trials={n_trials}", f"workers={workers}",
                                        "hypernet.refit_every=2", "hypernet.refit_in=worker")],
                  cwd=tmp_path, timeout=200)  # workers contend for the refit lease
    STATS["workers"] += workers
    _audit(tmp_path, url, n_trials, workers, run)
    # The approach documented in nas/storage.py: WAL (a property of the file) + a busy timeout.
    import sqlite3

    with sqlite3.connect(tmp_path / "study.db") as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with make_engine(url).connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == SQLITE_TIMEOUT_S * 1000
    from nas.storage import make_storage

    with make_storage(url).engine.connect() as conn:  # Optuna's own engine too
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == SQLITE_TIMEOUT_S * 1000


def test_sqlite_writers_wait_for_a_held_write_lock_instead_of_failing(tmp_path):
    """The busy timeout at work: another connection holds SQLite's write lock for 1.5 s; our
    version table and Optuna's tables both wait for it and then succeed (no "database is locked")."""
    import sqlite3
    import threading
    import time

    import optuna

    from nas.storage import make_storage
    from nas.versions import list_versions, record_version

    url = sqlite_url(tmp_path)
    study = optuna.create_study(study_name="s", storage=make_storage(url, heartbeat_interval=None))
    record_version(url, "s", artifact_id="a0", sha256="0" * 64, promoted=True)
    blocker = sqlite3.connect(tmp_path / "study.db", check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")  # take the write lock, as a worker mid-commit would
    blocker.execute("UPDATE logah_hypernet_versions SET note = 'held' WHERE version = 0")
    release = threading.Timer(1.5, blocker.commit)
    release.start()
    t0 = time.monotonic()
    try:
        record_version(url, "s", artifact_id="a1", sha256="1" * 64, promoted=True)
        study.set_user_attr("after", True)
    finally:
        release.join()
        blocker.close()
    assert time.monotonic() - t0 >= 1.0  # it really waited for the lock
    assert [v.version for v in list_versions(url, "s")] == [0, 1] and study.user_attrs["after"] is True
