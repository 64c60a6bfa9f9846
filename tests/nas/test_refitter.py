"""The refitter process: refits when due under the lease, off the trial path, until the study is done."""
from __future__ import annotations

from dataclasses import replace

import pytest
from _nas_tiny import tiny_config

from nas import refit as refit_mod
from nas.lease import current_holder, try_acquire
from nas.refit import lease_name
from nas.refitter import run_refitter, study_finished
from nas.study import open_session, run_trials
from nas.versions import leases, list_versions


@pytest.fixture
def session(tmp_path):
    s = open_session(tiny_config(tmp_path, "n_trials=3", "study.control_fraction=0.0", "hypernet.refit_every=1"),
                     create=True)
    run_trials(s)
    return s


def test_workers_do_not_refit_when_a_refitter_does(session):
    """refit_in=refitter (the default): three trials completed with refit_every=1 and no version."""
    assert session.cfg.hypernet.refit_in == "refitter"
    assert [v.version for v in list_versions(session.engine, session.cfg.study_name)] == [0]


def test_refitter_does_every_due_refit_then_stops_on_a_finished_study(session, monkeypatch):
    values = iter([2.0, 1.5, 1.5, 1.2, 1.2, 1.4])  # parent, child per refit
    monkeypatch.setattr(refit_mod, "validation_loss", lambda *a, **k: next(values))
    assert study_finished(session)
    report = run_refitter(session, poll_s=0.01)
    versions = list_versions(session.engine, session.cfg.study_name)
    assert [v.version for v in versions] == [0, 1, 2, 3]  # one per completed trial, none twice
    assert [v.promoted for v in versions[1:]] == [True, True, False]
    assert report.describe() == "refitter: 3 refits, 2 promoted"
    assert current_holder(session.engine, lease_name(session.cfg.study_name)) is None  # released


def test_refitter_waits_while_another_process_holds_the_lease(session, monkeypatch):
    monkeypatch.setattr(refit_mod, "validation_loss", lambda *a, **k: 1.0)
    assert try_acquire(session.engine, lease_name(session.cfg.study_name), "another-refitter", ttl_s=600)
    polls = iter(range(5))
    report = run_refitter(session, poll_s=0.01, stop=lambda: next(polls, None) is None)
    assert report.versions == [] and len(list_versions(session.engine, session.cfg.study_name)) == 1
    with session.engine.begin() as conn:
        conn.execute(leases.delete())
    assert len(run_refitter(session, poll_s=0.01).versions) == 3  # the lease is free: it catches up


def test_a_refit_that_keeps_failing_stops_the_refitter_with_the_error(session):
    calls = []

    def broken(s, lease=None):
        calls.append(1)
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        run_refitter(session, poll_s=0.01, max_failures=2, refit_fn=broken)
    assert len(calls) == 2


def test_refit_in_is_validated(tmp_path):
    from search_spaces import ConfigError

    with pytest.raises(ConfigError) as err:
        tiny_config(tmp_path, "hypernet.refit_in=thread")
    assert err.value.field == "hypernet.refit_in"


def test_a_transferred_version_0_is_refitted_with_every_part_learned(session, monkeypatch):
    """A refit of a hypernet that left parts at init (version 0 by transfer) trains and predicts them."""
    from hypernet import transfer
    from nas.hypernets import load_version, upload_checkpoint
    from nas.versions import latest_promoted, record_version

    monkeypatch.setattr(refit_mod, "validation_loss", lambda hn, *a, **k: 2.0 if hn.config.keep_init else 1.0)
    v0 = latest_promoted(session.engine, session.cfg.study_name)
    hn = transfer(load_version(v0, session.artifact_store), session.space.signature(), ["head"])
    artifact, sha = upload_checkpoint(hn, session.study, session.artifact_store, {"version": 1})
    record_version(session.engine, session.cfg.study_name, artifact_id=artifact, sha256=sha, promoted=True,
                   trials_used=0, device="cpu", seconds=0.0, note="transferred")
    cfg = replace(session.cfg, hypernet=replace(session.cfg.hypernet, refit_every=3))
    version = refit_mod.refit(replace(session, cfg=cfg))
    assert version.promoted and version.parent_val_loss == 2.0 and version.val_loss == 1.0
    assert load_version(version, session.artifact_store).config.keep_init == ()


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")
def test_a_refitter_on_a_gpu_box_refits_on_cuda(tmp_path):
    """`logah-nas refitter device=cuda`: meta-training and the fine-tuned promotion check run on the
    GPU; the version records the device and loads on a CPU-only worker."""
    from nas.hypernets import load_version

    s = open_session(tiny_config(tmp_path, "n_trials=2", "study.control_fraction=0.0", "hypernet.refit_every=2",
                                 "hypernet.promote_steps=3"), create=True)
    run_trials(s)
    gpu = replace(s, cfg=replace(s.cfg, device="cuda"))
    report = run_refitter(gpu, poll_s=0.01)
    (version,) = report.versions
    assert version.device.startswith("cuda")
    hn = load_version(version, s.artifact_store)
    assert next(hn.parameters()).device.type == "cpu"


def test_the_refitter_search_started_does_not_outlive_it(tmp_path):
    """kill -9 of `search` (its workers=1 trial loop is in the search process itself) must not leave
    its refitter polling an unfinished study forever: it stops once its parent is gone."""
    import os
    import subprocess
    import sys
    import time

    from _nas_tiny import tiny_overrides

    overrides = [*tiny_overrides(tmp_path), "n_trials=50", "hypernet.refit_every=2"]
    open_session(tiny_config(tmp_path, "n_trials=50", "hypernet.refit_every=2"), create=True)
    spawner = ("import sys; from nas.config import compose; from nas.workers import REFITTER, spawn_worker; "
               "print(spawn_worker(compose(sys.argv[1:]), REFITTER).process.pid)")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    parent = subprocess.run([sys.executable, "-c", spawner, *overrides], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=60, check=True)
    pid = int(parent.stdout.split()[-1])

    def gone() -> bool:
        try:
            return open(f"/proc/{pid}/stat").read().split(") ")[1][0] in "ZX"  # exited (a zombie until reaped)
        except FileNotFoundError:
            return True

    deadline = time.monotonic() + 90
    while not gone() and time.monotonic() < deadline:
        time.sleep(0.5)
    if not gone():
        os.kill(pid, 9)
        raise AssertionError("the refitter outlived the process that started it")


def test_a_workers_1_search_restarts_its_refitter_when_it_dies(tmp_path, monkeypatch, capsys):
    """workers=1 runs trials in search's own process; its refitter is checked after every trial and
    restarted (up to worker_restarts times) when it died."""
    import subprocess
    import sys
    from pathlib import Path

    from nas import workers
    from nas.cli import _run_in_process
    from nas.workers import REFITTER, WorkerProcess

    session = open_session(tiny_config(tmp_path, "n_trials=2", "worker_restarts=1"), create=True)
    dead = subprocess.Popen([sys.executable, "-c", "raise SystemExit(1)"])
    dead.wait()
    spawned = []

    def fake_spawn(cfg, index):
        spawned.append(index)
        return WorkerProcess(index, subprocess.Popen([sys.executable, "-c", "raise SystemExit(1)"]), Path("log"))

    monkeypatch.setattr(workers, "spawn_worker", fake_spawn)
    helpers = [WorkerProcess(REFITTER, dead, Path("log"))]
    assert _run_in_process(session, helpers) == 0
    assert spawned == [REFITTER]  # once: worker_restarts=1
    assert "refitter (pid" in capsys.readouterr().err


@pytest.mark.parametrize("code", [2, 4])
def test_a_workers_1_search_gives_up_a_refitter_that_would_fail_the_same_way(tmp_path, monkeypatch, capsys, code):
    """Exit 2 (configuration or storage error) and 4 (failure guard) are not restarted, as in
    `supervise`: the in-process run shares its restart policy (`nas.workers.Restarter`)."""
    import subprocess
    import sys
    from pathlib import Path

    from nas import workers
    from nas.cli import _run_in_process
    from nas.workers import REFITTER, WorkerProcess

    session = open_session(tiny_config(tmp_path, "n_trials=2", "worker_restarts=3"), create=True)
    dead = subprocess.Popen([sys.executable, "-c", f"raise SystemExit({code})"])
    dead.wait()
    monkeypatch.setattr(workers, "spawn_worker", lambda cfg, index: pytest.fail("restarted a hopeless refitter"))
    assert _run_in_process(session, [WorkerProcess(REFITTER, dead, tmp_path / "log")]) == 0
    assert "not restarting it" in capsys.readouterr().err


def test_a_database_outage_mid_refit_is_not_counted_as_a_failed_refit(session):
    """It propagates at once (the command waits it out, `run_despite_outages`), also when Optuna
    surfaces it as another error whose context is the storage error."""
    import sqlalchemy.exc

    calls = []

    def outage(s, lease=None):
        calls.append(1)
        try:
            raise sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection"))
        except sqlalchemy.exc.OperationalError:
            raise UnboundLocalError("cannot access local variable 'updated_state'")

    with pytest.raises(UnboundLocalError):
        run_refitter(session, poll_s=0.01, max_failures=5, refit_fn=outage)
    assert len(calls) == 1  # not retried as a failed refit
