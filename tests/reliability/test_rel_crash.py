"""kill -9 of a worker mid-trial and mid-refit; the study recovers and nothing is half-written.

Each test creates a tiny study in this process, starts a real `python -m nas worker`, waits
(polling the database, never sleeping blindly) until the worker is inside a trial or holds the
refit lease, SIGKILLs it, then lets `python -m nas search` (mid-trial) or a fresh worker
(mid-refit) finish the study and audits the database and the artifact store.
"""
from __future__ import annotations

import os
import time

import pytest
from _rel import (LOCK_ERRORS, STATS, check_versions_and_artifacts, create_study, overrides, refit_intervals_disjoint,
                  run_cli, sqlite_url, start_worker, stop, trials_by_state, wait_for)

CRASHY = ["study.heartbeat_interval=1", "study.max_retry=2", "study.control_fraction=0.0"]


@pytest.fixture
def workers():
    started: list = []
    yield started
    stop(started)


def _beating(url: str) -> list[int]:
    """Numbers of RUNNING trials whose heartbeat thread has written at least once (Optuna's tables)."""
    import sqlalchemy as sa

    from nas.storage import make_engine

    with make_engine(url).connect() as conn:
        return list(conn.execute(sa.text(
            "SELECT t.number FROM trials t JOIN trial_heartbeats h ON h.trial_id = t.trial_id "
            "WHERE t.state = 'RUNNING'")).scalars())


def test_worker_killed_mid_trial_is_failed_by_heartbeat_and_retried(tmp_path, workers):
    import optuna

    from nas.storage import make_storage

    url = sqlite_url(tmp_path)
    cfg, _ = create_study(tmp_path, url, *CRASHY, "n_trials=3")
    study = optuna.load_study(study_name=cfg.study_name, storage=make_storage(url, heartbeat_interval=None))

    victim = start_worker(tmp_path, url, cfg.study_name, 0)
    workers.append(victim)

    def in_training():  # heartbeat written and every parameter suggested: the worker is mid-trial
        trials = study.get_trials(deepcopy=False)
        return [n for n in _beating(url) if "n_params" in trials[n].user_attrs]

    (number,) = wait_for("a RUNNING trial with a heartbeat", in_training, timeout=90, alive=victim)
    victim.kill9()
    STATS["kills"] += 1
    killed = running = study.get_trials(deepcopy=False)[number]
    assert killed.state.name == "RUNNING"  # nobody cleaned up: it looks alive until the heartbeat says otherwise
    time.sleep(2.5)  # grace period = 2 x heartbeat_interval

    # what a user does after a crash: run the same `search` again (one in-process worker, then export)
    rescue = run_cli(["search", *overrides(tmp_path, url, *CRASHY, "n_trials=3", "workers=1")], cwd=tmp_path)
    assert rescue.returncode == 0, rescue.stdout[-3000:] + rescue.stderr[-3000:]
    assert not LOCK_ERRORS.search(rescue.stdout + rescue.stderr) and "exported to" in rescue.stdout

    states = trials_by_state(study)
    STATS["trials"] += len(study.trials)
    STATS["workers"] += 2
    assert not states["RUNNING"] and not states["WAITING"]
    assert [t.number for t in states["FAIL"]] == [running.number]
    assert states["FAIL"][0].user_attrs["fail_reason"].startswith("worker died")
    retries = [t for t in study.get_trials(deepcopy=False) if t.system_attrs.get("failed_trial") == running.number]
    assert len(retries) == 1, "the killed trial must be retried exactly once"
    retry = retries[0]
    assert retry.state.name == "COMPLETE" and retry.system_attrs["retry_history"] == [running.number]
    assert retry.params == killed.params  # the same architecture and hyper-parameters, not lost
    assert len(states["COMPLETE"]) + len(states["PRUNED"]) >= 3
    check_versions_and_artifacts(url, cfg.study_name, tmp_path / "artifacts")


def test_trial_orphaned_before_its_first_heartbeat_is_reaped(tmp_path):
    """A worker killed right after `ask()` committed, before its heartbeat thread wrote once."""
    import optuna

    from nas.study import open_session, run_trials

    url = sqlite_url(tmp_path)
    cfg, _ = create_study(tmp_path, url, *CRASHY, "n_trials=1")
    orphan = optuna.load_study(study_name=cfg.study_name, storage=cfg.storage).ask()  # RUNNING, never beats
    time.sleep(2.5)  # older than the grace period
    session = open_session(cfg)
    run_trials(session)
    states = trials_by_state(session.study)
    assert [t.number for t in states["FAIL"]] == [orphan.number] and not states["RUNNING"]
    assert states["FAIL"][0].user_attrs["fail_reason"] == "worker died before its first heartbeat"


@pytest.fixture
def crash_storage(request, tmp_path):
    """PostgreSQL when the CI server is there (the multi-machine setup), else SQLite."""
    if os.environ.get("LOGAH_TEST_POSTGRES_URL"):
        return request.getfixturevalue("pg_url")
    return sqlite_url(tmp_path)


def _kill_holding_the_lease(victim, workers: list, engine, name: str) -> tuple[str, float]:
    """kill -9 `victim` the moment it holds the refit lease `name`: (its holder id, when)."""
    from nas.lease import current_holder

    workers.append(victim)
    holder = wait_for("the refit lease", lambda: current_holder(engine, name), timeout=120, every=0.02, alive=victim)
    assert f":{victim.pid}:" in holder
    victim.kill9()
    STATS["kills"] += 1
    return holder, time.time()


def test_worker_killed_mid_refit_leaves_no_half_version_and_a_later_refit_succeeds(tmp_path, workers, crash_storage):
    from nas.lease import current_holder
    from nas.refit import lease_name
    from nas.storage import make_engine
    from nas.versions import list_versions, leases

    url, ttl = crash_storage, 2.0
    cfg, session = create_study(tmp_path, url, *CRASHY, "n_trials=3", "hypernet.refit_every=1",
                                "hypernet.refit_steps=8", f"hypernet.lease_ttl_s={ttl}", "hypernet.refit_in=worker")
    engine, name = make_engine(url), lease_name(cfg.study_name)
    holder, killed_at = _kill_holding_the_lease(start_worker(tmp_path, url, cfg.study_name, 0), workers, engine, name)

    import sqlalchemy as sa

    with engine.connect() as conn:
        row = conn.execute(sa.select(leases).where(leases.c.name == name)).one()
    assert row.holder == holder  # never released: the process died holding it
    assert [v.version for v in list_versions(url, cfg.study_name)] == [0]  # no half-recorded version
    wait_for("the dead holder's lease to expire", lambda: current_holder(engine, name) is None, timeout=ttl + 5)

    rescuer = start_worker(tmp_path, url, cfg.study_name, 1)
    workers.append(rescuer)
    assert rescuer.wait(150) == 0, rescuer.output()[-4000:]
    out = rescuer.output()
    assert not LOCK_ERRORS.search(out) and "refit of study" not in out, out[-4000:]  # "refit ... failed" is logged so

    versions = check_versions_and_artifacts(url, cfg.study_name, tmp_path / "artifacts")
    later = [v for v in versions if v.version >= 1]
    assert later and all(v.created_at.timestamp() > killed_at for v in later)
    assert current_holder(engine, name) is None
    states = trials_by_state(session.study)
    STATS["trials"] += len(session.study.trials)
    STATS["workers"] += 2
    assert not states["RUNNING"] and not states["FAIL"]
    assert len(states["COMPLETE"]) + len(states["PRUNED"]) >= 3


class _DiesMidStream:
    """A file object that delivers 64 KiB and then fails, like a process killed mid-upload."""

    def __init__(self) -> None:
        self.sent = False

    def read(self, n: int = -1) -> bytes:
        if self.sent:
            raise KeyboardInterrupt("killed mid-write")
        self.sent = True
        return b"\0" * 65536


def test_an_interrupted_artifact_write_leaves_no_partial_file(tmp_path):
    """upload_artifact records the artifact in the study *before* writing it, so a write cut
    short must leave nothing (or the old file), never a prefix that readers would trust."""
    from nas.storage import make_artifact_store

    store = make_artifact_store(tmp_path / "artifacts")
    with pytest.raises(KeyboardInterrupt):
        store.write("a1b2", _DiesMidStream())
    assert not (tmp_path / "artifacts" / "a1b2").exists(), "a half-written artifact is left under its final name"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_refitter_killed_mid_refit_loses_nothing_and_another_refitter_takes_over(tmp_path, workers, backend, request):
    """Refits off the trial path (`logah-nas refitter`): the worker never refits; a refitter killed
    holding the lease leaves no version behind; a second one waits out the lease, then makes every
    due refit exactly once and exits when the study is finished."""
    from nas.lease import current_holder
    from nas.refit import lease_name
    from nas.storage import make_engine
    from nas.versions import list_versions

    if backend == "postgresql":
        if not os.environ.get("LOGAH_TEST_POSTGRES_URL"):
            pytest.skip("LOGAH_TEST_POSTGRES_URL is not set: .ci/run starts PostgreSQL")
        url = request.getfixturevalue("pg_url")
    else:
        url = sqlite_url(tmp_path)
    ttl = 2.0
    cfg, session = create_study(tmp_path, url, *CRASHY, "n_trials=4", "hypernet.refit_every=2",
                                "hypernet.refit_steps=20", f"hypernet.lease_ttl_s={ttl}")
    worker = start_worker(tmp_path, url, cfg.study_name, 0)
    workers.append(worker)
    assert worker.wait(150) == 0, worker.output()[-4000:]
    assert [v.version for v in list_versions(url, cfg.study_name)] == [0]  # no refit on the trial path

    engine, name = make_engine(url), lease_name(cfg.study_name)
    victim = start_worker(tmp_path, url, cfg.study_name, 1, command="refitter")
    _, killed_at = _kill_holding_the_lease(victim, workers, engine, name)
    assert [v.version for v in list_versions(url, cfg.study_name)] == [0]  # nothing half-recorded

    rescuer = start_worker(tmp_path, url, cfg.study_name, 2, command="refitter")
    workers.append(rescuer)
    assert rescuer.wait(150) == 0, rescuer.output()[-4000:]
    out = rescuer.output()
    assert "refitter: 2 refits" in out and not LOCK_ERRORS.search(out) and "Traceback" not in out, out[-4000:]
    versions = check_versions_and_artifacts(url, cfg.study_name, tmp_path / "artifacts")
    assert [v.version for v in versions] == [0, 1, 2]  # 4 trials / refit_every 2: each refit once
    assert all(v.created_at.timestamp() > killed_at for v in versions[1:])
    assert refit_intervals_disjoint(versions) and current_holder(engine, name) is None
    states = trials_by_state(session.study)
    STATS["trials"] += len(session.study.trials)
    STATS["workers"] += 3
    assert not states["RUNNING"] and not states["FAIL"] and len(states["COMPLETE"]) + len(states["PRUNED"]) >= 4
