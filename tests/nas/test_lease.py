"""The refit lease: exactly one holder across processes, expiry of a crashed holder, renewal."""
from __future__ import annotations

import multiprocessing as mp
import os
import time
import uuid

import pytest

from nas.lease import Lease, current_holder, hold_lease, try_acquire
from nas.storage import make_engine


POSTGRES = os.environ.get("LOGAH_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", pytest.param("postgres", marks=[
    pytest.mark.postgres, pytest.mark.skipif(not POSTGRES, reason="LOGAH_TEST_POSTGRES_URL is not set")])]


def _contend(url: str, name: str, barrier, results) -> None:
    engine = make_engine(url)
    barrier.wait()
    with hold_lease(engine, name, ttl_s=30) as lease:
        results.append(bool(lease))
        if lease:
            time.sleep(1.0)  # keep holding while the other process tries


@pytest.mark.parametrize("backend", BACKENDS)
def test_exactly_one_of_two_processes_holds(backend, tmp_path):
    url = f"sqlite:///{tmp_path}/db.sqlite" if backend == "sqlite" else POSTGRES
    name = f"refit:{uuid.uuid4().hex[:8]}"
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        barrier, results = manager.Barrier(2), manager.list()
        procs = [ctx.Process(target=_contend, args=(url, name, barrier, results)) for _ in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
        assert sorted(results) == [False, True]
    assert current_holder(make_engine(url), name) is None  # released on exit


def test_expired_lease_of_crashed_holder_is_taken_over(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/db.sqlite")
    assert try_acquire(engine, "L", "crashed:1:x", ttl_s=2.0)  # never renewed nor released
    assert not try_acquire(engine, "L", "other:2:y", ttl_s=10)
    assert current_holder(engine, "L") == "crashed:1:x"
    time.sleep(2.1)
    assert current_holder(engine, "L") is None
    assert try_acquire(engine, "L", "other:2:y", ttl_s=10)
    assert current_holder(engine, "L") == "other:2:y"


def test_heartbeat_keeps_the_lease_past_its_ttl_and_loss_is_detected(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/db.sqlite")
    with hold_lease(engine, "L", ttl_s=2.0) as lease:
        assert lease
        time.sleep(4.5)  # > 2 TTLs: only the heartbeat (every ttl/3) keeps it alive
        assert not try_acquire(engine, "L", "intruder", ttl_s=10)
        assert current_holder(engine, "L") == lease.holder
    manual = Lease(engine, "M", ttl_s=0.2)
    assert manual.acquire()
    time.sleep(0.3)
    assert try_acquire(engine, "M", "thief", ttl_s=10)
    assert not manual.renew() and manual.lost and not manual
    manual.release()
    assert current_holder(engine, "M") == "thief"  # the loser must not delete the thief's lease
