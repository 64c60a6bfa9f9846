"""Every bench script runs end to end on tiny settings and prints its JSON line then its table.

Only that they run and report what they claim: their figures (targets, timings) belong to real
runs (bench/RESULTS.md), never to unit tests.
"""
from __future__ import annotations

import importlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # subprocesses, ~1 min in all


def run_bench(script: str, *args: str) -> tuple[dict, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first, _, human = proc.stdout.partition("\n")
    return json.loads(first), human


def bench_attr(module: str, name: str):
    """`name` from bench/<module>.py (the bench folder is not a package; scripts import siblings by path)."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        return getattr(importlib.import_module(module), name)
    finally:
        sys.path.remove(str(ROOT / "bench"))


def test_warm_start_quality_compares_mean_curves_over_seeds():
    payload, human = run_bench("warm_start_quality.py", "--spaces", "vit", "--archs", "1", "--steps", "6",
                               "--eval-every", "3", "--seeds", "0,1")
    (row,) = payload["rows"]
    assert payload["bench"] == "warm_start_quality" and row["seeds"] == [0, 1]
    assert len(row["per_seed_steps_to_match"]) == 2 and row["warm_step0"] < row["rand_step0"]
    assert row["eval_batches"] == 6  # digits' whole val split: 179 images in batches of 32
    assert "seeds <= 1/3" in human


def test_warm_start_quality_refuses_a_checkpoint_of_another_space():
    gpt2 = ROOT / "hypernet" / "pretrained" / "gpt2_pytext.safetensors"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "warm_start_quality.py"), "--spaces", "vit",
                           "--checkpoint", f"vit={gpt2}"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode != 0 and "was trained for" in proc.stderr and "'space': 'gpt2'" in proc.stderr


def test_bench_search_times_both_arms_from_before_opening_the_study():
    payload, human = run_bench("bench_search.py", "--trials", "2", "--steps", "4", "--refit-every", "0",
                               "--screen", "4")
    arms = {a["arm"]: a for a in payload["arms"]}
    assert payload["bench"] == "search" and payload["screen"] == 4
    assert arms["warm"]["completed"] == arms["cold"]["completed"] == 2
    assert all(0 < a["setup_s"] < a["wall_s"] for a in arms.values())
    assert [t["quantile"] for t in payload["targets"]] == [0.0, 0.25, 0.5] and "speed-up" in human


def test_screen_quality_reports_rank_correlation_against_random_picks():
    payload, human = run_bench("screen_quality.py", "--archs", "4", "--top", "2", "--steps", "3")
    s = payload["summary"]
    assert payload["bench"] == "screen_quality" and len(payload["rows"]) == 4
    assert [r["score"] for r in payload["rows"]] == sorted(r["score"] for r in payload["rows"])
    assert -1 <= s["spearman"] <= 1 and min(r["final"] for r in payload["rows"]) <= s["random_best_final_expected"]
    assert "Spearman" in human


def test_adam_sharpness_probes_prediction_and_trained_baseline_with_the_same_steps():
    payload, human = run_bench("adam_sharpness.py", "--space", "gpt2", "--data", "pytext", "--archs", "1",
                               "--steps", "2", "--grad-batches", "1", "--val-batches", "1", "--deltas", "1e-4,1e-3")
    (row,) = payload["rows"]
    assert payload["bench"] == "adam_sharpness" and payload["deltas"] == [1e-4, 1e-3]
    for who in ("predicted", "random_trained", "warm_trained"):
        assert all(isinstance(row[f"{who}_{d}"], float) for d in ("0.0001", "0.001"))
    assert row["predicted_val"] < row["random_trained_val"]  # 2 steps from random init stay near ln(256)
    assert "trained 2 steps from random init" in human


@pytest.mark.parametrize("script, args, key", [
    ("hypernet_params.py", [], "rows"),
    ("rank_ablation.py", ["--steps", "2", "--ranks", "4,8"], "rows"),
])
def test_other_benches_run(script, args, key):
    payload, _ = run_bench(script, *args)
    assert payload[key]


@pytest.mark.parametrize("pure", [False, True], ids=["residual", "pure"])
def test_predict_cost_splits_the_time_into_the_vms_part_and_the_codes(pure):
    payload, human = run_bench("predict_cost.py", "--models", "vit_s", "--threads", "1", "--repeats", "1",
                               *["--pure"] * pure)
    (row,) = payload["rows"]
    assert payload["pure"] is pure and row["model"] == "vit_s"
    assert all(row[k] > 0 for k in ("init_s", "touch_s", "predict_s", "again_s"))
    assert row["peak_over_model"] > 1 and "again s" in human and "touch s" in human


def test_expected_best_of_random_picks_is_exact():
    expected_best_of_random = bench_attr("screen_quality", "expected_best_of_random")
    assert expected_best_of_random([1.0, 2.0, 3.0], 2) == pytest.approx(4 / 3)  # mins of {12, 13, 23}
    assert expected_best_of_random([5.0, 1.0, 3.0, 2.0], 1) == pytest.approx(11 / 4)
    assert expected_best_of_random([5.0, 1.0, 3.0], 3) == 1.0


def test_sign_step_probe_restores_the_model_and_measures_from_its_own_loss():
    sign_step_increase = bench_attr("adam_sharpness", "sign_step_increase")
    import torch

    from nas.data import load_dataset
    from search_spaces import build_model, get_space

    dataset = load_dataset("digits")
    config = get_space("vit", **dataset.space_options()).sample(random.Random(0))
    torch.manual_seed(0)
    model = build_model(config)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = sign_step_increase(model, dataset, deltas=[0.0, 0.05], grad_batches=1, val_batches=1)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert result["increase"][0.0] == pytest.approx(0.0, abs=1e-6)  # a zero step changes nothing
    assert result["increase"][0.05] != pytest.approx(0.0, abs=1e-6)


def test_warm_start_quality_scores_images_on_the_whole_val_split():
    default_eval_batches = bench_attr("warm_start_quality", "default_eval_batches")
    from types import SimpleNamespace

    from nas.data import load_dataset

    digits = load_dataset("digits")
    n_val = digits.num_examples("val")
    for batch_size in (32, 50, n_val, 1000):
        batches = default_eval_batches(digits, batch_size)
        assert (batches - 1) * batch_size < n_val <= batches * batch_size  # every val image, no empty batch
    assert default_eval_batches(SimpleNamespace(kind="text"), 32) == 4


def test_step0_scores_every_held_out_class_against_the_random_inits(tmp_path):
    out = tmp_path / "step0.json"
    payload, human = run_bench("step0.py", "--spaces", "vit", "--seeds", "0,1", "--quick", "--markdown", "--out", str(out))
    res = payload["spaces"]["vit"]
    from nas.unseen import CLASSES

    assert {r["class"] for r in res["rows"]} == set(CLASSES) and res["n"] == len(CLASSES)
    for row in res["rows"]:
        assert set(row["arms"]) == set(payload["arms"]) and row["best_random"] == min(
            row["arms"]["random_gpt2"]["mean"], row["arms"]["random_pytorch"]["mean"])
        assert row["arms"]["random_gpt2"]["se"] is not None  # two seeds: a standard error
        assert row["below_random"]["hypernet_full"] == (row["arms"]["hypernet_full"]["mean"] < row["best_random"])
    wide = next(r for r in res["rows"] if r["class"] == "wide_4x")
    assert wide["grown_from"] is not None  # wider than anything meta-trained: predicted through its twin
    assert "step-0 val loss" in human
    assert f"| wide_4x | {wide['arch']} | " in human and "| best init | hypernet 0.5 |" in human  # --markdown
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "step0.py"), "--from-json", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == human.strip()  # the same tables, nothing run
