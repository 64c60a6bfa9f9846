"""app.analysis: warm start vs random init, parameter importances."""
import math

import optuna
import pandas as pd
import pytest

import _studies
from app import analysis
from app.reader import Reader


# ---------------------------------------------------------------------------- warm start gain

def _frames(curves: dict[int, tuple[str, list[float]]], seconds: float = 10.0):
    trials = pd.DataFrame([{"number": n, "state": "COMPLETE", "value": v[-1], "init": init, "loss_step0": v[0],
                            "train_seconds": seconds, "predict_seconds": 1.0 if init == "warm" else 0.0}
                           for n, (init, v) in curves.items()])
    long = pd.DataFrame([{"number": n, "init": init, "step": 10 * i, "value": x}
                         for n, (init, v) in curves.items() for i, x in enumerate(v)])
    return trials, long


def test_warm_start_gain_numbers():
    trials, curves = _frames({0: ("warm", [1.0, 0.5, 0.4]), 1: ("warm", [1.2, 0.7, 0.6]),
                              2: ("random", [2.0, 1.0, 0.6]), 3: ("random", [2.2, 1.2, 0.9])})
    g = analysis.warm_start_gain(trials, curves, target=0.65)
    assert g.loc["loss at step 0 (mean)", "warm"] == pytest.approx(1.1)
    assert g.loc["loss at step 0 (mean)", "gain"] == pytest.approx(2.1 - 1.1)
    # trapezoid over steps 0,10,20 divided by 20: (a + 2b + c) / 4
    auc = g.loc["val-loss AUC (mean loss over training)"]
    assert auc["warm"] == pytest.approx(((1 + 1 + .4) + (1.2 + 1.4 + .6)) / 8)
    assert auc["random"] == pytest.approx(((2 + 2 + .6) + (2.2 + 2.4 + .9)) / 8)
    assert g.loc["steps to target (median)", "warm"] == 15  # trial 0 at step 10, trial 1 at step 20
    assert g.loc["steps to target (median)", "random"] == 20  # only trial 2 gets there
    assert g.loc["reached target", "warm"] == 1.0 and g.loc["reached target", "random"] == 0.5
    assert g.loc["steps to target (median)", "gain"] == pytest.approx(20 / 15)
    # seconds = predict + train * step / last step: warm (1+5, 1+10) -> 8.5; random 10
    assert g.loc["seconds to target (median)", "warm"] == pytest.approx(8.5)
    assert g.loc["seconds to target (median)", "gain"] == pytest.approx(10 / 8.5)
    assert analysis.default_target(trials) == pytest.approx(0.75)  # median final loss of random trials


def test_warm_start_gain_without_random_trials_is_nan_not_error():
    trials, curves = _frames({0: ("warm", [1.0, 0.5]), 1: ("warm", [1.1, 0.6])})
    g = analysis.warm_start_gain(trials, curves, target=None)
    assert g.loc["complete", "random"] == 0 and math.isnan(g.loc["loss at step 0 (mean)", "gain"])
    assert math.isnan(g.loc["steps to target (median)", "warm"])
    assert analysis.default_target(trials) == pytest.approx(0.55)
    bands = analysis.mean_curves(curves)
    assert list(bands["mean"]) == pytest.approx([1.05, 0.55]) and list(bands["n"]) == [2, 2]


# ---------------------------------------------------------------------------- importances

def test_importances_fixed_seed_and_too_few_trials(demo, tmp_path):
    reader = Reader(demo["url"])
    values, why = analysis.importances(reader.study("vit-digits"))
    assert why is None and set(values) == set(reader.study("vit-digits").trials[0].params)
    assert sum(values.values()) == pytest.approx(1.0)
    assert analysis.importances(reader.study("vit-digits"))[0] == values  # fixed seed: same answer
    small = optuna.create_study(storage=f"sqlite:///{tmp_path / 'few.db'}", study_name="few")
    small.add_trials(_studies.synthetic_trials(4))
    values, why = analysis.importances(Reader(f"sqlite:///{tmp_path / 'few.db'}").study("few"))
    assert values == {} and "at least 5 completed trials" in why
