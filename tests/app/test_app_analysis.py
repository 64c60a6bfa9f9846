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


# ---------------------------------------------------------------------------- gain per hypernet version

def _gain_rows(*rows):
    """(version, promoted, warm_trials, gain, step0_gain) -> an `analysis.version_gains` frame."""
    return pd.DataFrame([{"version": v, "promoted": p, "refit_seconds": 1.0, "note": "", "warm_trials": n,
                          "warm_final": math.nan, "control_final": 0.5, "gain": g, "warm_step0": math.nan,
                          "control_step0": 2.3, "step0_gain": s} for v, p, n, g, s in rows],
                        columns=analysis.GAIN_COLUMNS)


def test_gain_trend_in_words():
    nan = math.nan
    text = analysis.gain_trend(_gain_rows((0, True, 10, 0.012, 1.0), (1, False, 0, nan, nan),
                                          (2, True, 6, 0.0304, 1.2), (3, True, 0, nan, nan)))
    assert text.startswith("Gain in median final val loss grew from +0.012 (v0, 10 warm trials) to "
                           "+0.030 (v2, 6 warm trials); step-0 gain from +1.000 (v0) to +1.200 (v2).")
    assert "No finished warm trial started from v1 (not promoted, so workers never use it)." in text
    assert "Not used by a finished warm trial yet: v3." in text
    shrank = analysis.gain_trend(_gain_rows((0, True, 3, 0.05, 1.0), (1, True, 1, -0.01, 1.1)))
    assert shrank.startswith("Gain in median final val loss shrank from +0.050 (v0, 3 warm trials) to -0.010 "
                             "(v1, 1 warm trial)")
    only_v0 = analysis.gain_trend(_gain_rows((0, True, 4, 0.02, 1.0), (1, True, 0, nan, nan)))
    assert only_v0.startswith("Gain in median final val loss: +0.020 (v0, 4 warm trials); no refit has been used "
                              "by a trial yet.")
    pruned_only = analysis.gain_trend(_gain_rows((0, True, 2, nan, 0.9), (1, True, 2, nan, 1.3)))
    assert pruned_only.startswith("Gain in mean step-0 val loss grew from +0.900 (v0")
    assert "No warm-started trial has finished yet" in analysis.gain_trend(_gain_rows((0, True, 0, nan, nan)))
    no_control = _gain_rows((0, True, 2, nan, nan)).assign(control_final=nan, control_step0=nan)
    assert "No random-init control trial has finished yet" in analysis.gain_trend(no_control)


def test_version_gains_is_nas_gain_as_a_frame(demo):
    from nas.gain import gain_per_version

    reader = Reader(demo["url"])
    trials, versions = reader.trials("vit-digits"), reader.version_list("vit-digits")
    frame = analysis.version_gains(trials, versions)
    rows = gain_per_version(trials, versions)
    assert list(frame.columns) == analysis.GAIN_COLUMNS and list(frame["version"]) == [0, 1, 2, 3]
    assert list(frame["warm_trials"]) == [r.warm_trials for r in rows] and frame["warm_trials"].iloc[2] == 0
    assert frame["gain"].tolist()[:2] == pytest.approx([r.gain for r in rows][:2])
    assert frame["note"].iloc[1].startswith("refit of v0") and "promoted: val loss after 20" in frame["note"].iloc[1]


def test_refit_summary():
    versions = pd.DataFrame({"version": [0, 1, 2, 3], "promoted": [True, True, False, True],
                             "seconds": [3.5, 10.0, 20.0, 22.3]})
    assert analysis.refit_summary(versions) == "3 refits, 2 promoted, 52.3 s of refitting in all (v0 set up in 3.5 s)."
    assert analysis.refit_summary(versions.iloc[:1]) == "No refit yet (v0 set up in 3.5 s)."
    assert analysis.refit_summary(versions, trial_seconds=157.7) == (
        "3 refits, 2 promoted, 52.3 s of refitting in all, 25 % of refit + trial seconds (v0 set up in 3.5 s).")
