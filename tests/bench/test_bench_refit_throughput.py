"""bench/refit_throughput.py pairs each trial with the trial of the same parameters in the study
without refits and splits the ratios by whether a refit ran during the trial."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench import refit_throughput  # noqa: E402


def _span(number: int, start: float, end: float, state: str = "COMPLETE", arch: int | None = None) -> dict:
    return {"number": number, "state": state, "start": start, "end": end,
            "params": {"depth": number if arch is None else arch, "lr": 1e-3}}


def test_trials_are_paired_by_parameters_and_split_by_how_much_of_them_a_refit_covered():
    base = {"trial_spans": [_span(0, 0, 2), _span(1, 2, 4), _span(2, 4, 6), _span(3, 6, 8), _span(4, 8, 9)]}
    run = {"refit_spans": [(9.0, 4.0)],  # a refit from 5 s to 9 s
           "trial_spans": [_span(0, 0, 2), _span(1, 2, 5), _span(2, 5, 9, arch=4), _span(3, 9, 10, "FAIL"),
                           _span(7, 10, 11)]}  # 2 has 4's parameters, 3 failed, 7 has no twin in base
    ratios = refit_throughput.paired_ratios(run, base)
    assert ratios["between"] == [pytest.approx(1.0), pytest.approx(1.5)]  # 1 overlaps the refit by 0 s
    assert ratios["during"] == [pytest.approx(4.0)]  # 4 s against its twin's 1 s
    assert refit_throughput.overlap((0, 2), (1, 5)) == 1 and refit_throughput.overlap((0, 1), (2, 3)) == 0


def test_three_studies_per_seed_differ_only_in_where_refits_run(monkeypatch, tmp_path):
    seen = []

    def fake_run(overrides, tmp, timeout, workers):
        seen.append(overrides)
        slow = 2.0 if "hypernet.refit_in=refitter" in overrides else 1.0
        refits = [] if "hypernet.refit_every=0" in overrides else [(4.0, 3.0)]
        return {"seconds": 10.0 * slow, "refits": len(refits), "refit_spans": refits,
                "trial_spans": [_span(i, 2 * i, 2 * i + 2 * slow) for i in range(3)]}

    monkeypatch.setattr(refit_throughput, "run_search", fake_run)
    payload = refit_throughput.main(["--seeds", "0,1", "--trials", "3", "--steps", "5", "--refit-every", "2",
                                     "--out", str(tmp_path / "t.json")])
    assert len(seen) == 6 and all("study.sampler=random" in o and "study.pruner=none" in o for o in seen)
    assert [o[-1] for o in seen[:3]] == ["hypernet.refit_every=0", "hypernet.refit_in=refitter",
                                         "hypernet.refit_in=worker"]
    refitter, in_worker = payload["summary"]
    assert refitter["wall"][0] == pytest.approx(2.0) and in_worker["wall"][0] == pytest.approx(1.0)
    assert in_worker["during"][0] == pytest.approx(1.0) and in_worker["refits"] == 2
    assert (tmp_path / "t.json").exists()
