"""The refit lease and the version numbering under contention, on SQLite and PostgreSQL.

Four processes hammer the same lease and the same versions table for a few seconds. Mutual
exclusion is checked from the holders' own clocks (no two held intervals overlap), numbering
from the table (0..k without a gap or a duplicate), and robustness from the processes' exit
codes (a "database is locked" or a serialisation failure would raise in a child).
"""
from __future__ import annotations

import json
import multiprocessing as mp
import time
from pathlib import Path

import pytest

N_PROCS = 4
SECONDS = 2.0


def _contend(url: str, out: str, index: int, seconds: float) -> None:
    from nas.lease import hold_lease
    from nas.storage import make_engine
    from nas.versions import record_version

    engine = make_engine(url)
    held, recorded = [], []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with hold_lease(engine, "refit:stress", ttl_s=30, heartbeat=False) as lease:
            if lease:
                start = time.time()
                v = record_version(engine, "stress", artifact_id=f"a-{index}-{len(held)}", sha256="0" * 64,
                                   promoted=True, note=f"proc {index}")
                time.sleep(0.01)  # work done under the lease
                held.append((start, time.time()))
                recorded.append(v.version)
        # versions allocated without the lease too: the unique constraint must serialise them
        recorded.append(record_version(engine, "free-for-all", artifact_id=f"b-{index}", sha256="1" * 64,
                                       promoted=False).version)
    Path(out).write_text(json.dumps({"held": held, "recorded": recorded}))


def _run_contention(url: str, tmp_path: Path) -> tuple[list, int]:
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_contend, args=(url, str(tmp_path / f"p{i}.json"), i, SECONDS))
             for i in range(N_PROCS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * N_PROCS  # a lock error in a child raises -> exit code 1
    results = [json.loads((tmp_path / f"p{i}.json").read_text()) for i in range(N_PROCS)]
    held = sorted(iv for r in results for iv in r["held"])
    return held, sum(len(r["held"]) for r in results)


def _check(url: str, tmp_path: Path) -> None:
    from nas.lease import current_holder
    from nas.storage import make_engine
    from nas.versions import list_versions

    from _rel import STATS

    held, n_held = _run_contention(url, tmp_path)
    STATS["leases"] += n_held
    assert n_held >= N_PROCS  # everybody got the lease at some point or someone looped a lot
    overlaps = [(a, b) for a, b in zip(held, held[1:]) if b[0] < a[1]]
    assert not overlaps, f"two processes held the refit lease at once: {overlaps[:3]}"
    for study in ("stress", "free-for-all"):
        numbers = [v.version for v in list_versions(url, study)]
        assert numbers == list(range(len(numbers))), f"{study}: {numbers}"
    assert len(list_versions(url, "stress")) == n_held
    assert current_holder(make_engine(url), "refit:stress") is None  # every holder released


def test_lease_and_version_numbers_under_contention_sqlite(tmp_path):
    _check(f"sqlite:///{tmp_path}/study.db", tmp_path)


@pytest.mark.postgres
def test_lease_and_version_numbers_under_contention_postgres(pg_url, tmp_path):
    _check(pg_url, tmp_path)


def _hold_then_die(url: str, ttl: float, started: str) -> None:
    import os

    from nas.lease import Lease
    from nas.storage import make_engine

    lease = Lease(make_engine(url), "refit:crash", ttl)
    assert lease.acquire()
    lease.start_heartbeat()
    Path(started).write_text(lease.holder)
    die = Path(started + ".die")
    deadline = time.monotonic() + 60
    while not die.exists() and time.monotonic() < deadline:  # renewals keep it alive past its TTL ...
        time.sleep(0.02)
    os._exit(0)  # ... until we die without releasing (like kill -9)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_lease_of_a_dead_holder_expires_and_is_taken_over(backend, tmp_path, request):
    from nas.lease import current_holder, try_acquire
    from nas.storage import make_engine

    url = request.getfixturevalue("pg_url") if backend == "postgres" else f"sqlite:///{tmp_path}/study.db"
    ttl = 1.5
    started = tmp_path / "holder"
    p = mp.get_context("spawn").Process(target=_hold_then_die, args=(url, ttl, str(started)))
    p.start()
    engine = make_engine(url)
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    holder = started.read_text()
    time.sleep(ttl * 1.5)  # past the first TTL: only the heartbeat keeps it
    assert current_holder(engine, "refit:crash") == holder
    assert not try_acquire(engine, "refit:crash", "intruder", ttl)
    (tmp_path / "holder.die").write_text("")
    p.join(60)
    assert p.exitcode == 0
    deadline = time.monotonic() + ttl + 5
    while current_holder(engine, "refit:crash") is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert current_holder(engine, "refit:crash") is None, "the dead holder's lease never expired"
    assert try_acquire(engine, "refit:crash", "successor", ttl)
    assert current_holder(engine, "refit:crash") == "successor"
