"""Warm-vs-control gain per hypernet version: the rows the dashboard and bench/closed_loop.py read."""
import datetime as dt
import math

import optuna
from optuna.trial import TrialState

from nas.gain import gain_per_version
from nas.versions import HypernetVersion


def _trial(value, warm, version=None, step0=2.0, state=TrialState.COMPLETE):
    attrs = {"warm_start": warm, "loss_step0": step0}
    if version is not None:
        attrs["hypernet_version"] = version
    return optuna.trial.create_trial(state=state, value=value if state == TrialState.COMPLETE else None,
                                     user_attrs=attrs)


def _version(n, promoted=True, seconds=1.5):
    return HypernetVersion(id=n, study_name="s", version=n, created_at=dt.datetime.now(dt.timezone.utc),
                           trials_used=0, val_loss=None, parent_val_loss=None, promoted=promoted,
                           artifact_id="a", sha256="0" * 64, device="cpu", seconds=seconds, note=f"v{n}")


def _numbered(trials):
    for number, t in enumerate(trials):
        t.number = number
    return trials


def test_each_version_is_scored_by_its_own_warm_trials_against_the_controls_of_its_period():
    """Controls #1-#3 and #6-#7 interleave with v0's warm trials (#0, #4) and v1's (#5-#9): each version is
    compared with the controls between its first and last warm trial, not with the whole study's
    (the sampler's later, better architectures would otherwise count as the hypernet's gain)."""
    trials = _numbered([
        _trial(0.9, False, step0=2.3), _trial(0.7, False, step0=2.3), _trial(None, False, state=TrialState.PRUNED),
        _trial(0.8, True, 0, step0=1.9), _trial(0.6, True, 0, step0=1.7),
        _trial(0.3, True, 1, step0=0.9), _trial(0.5, False, step0=2.1), _trial(0.4, False, step0=2.3),
        _trial(None, True, 1, step0=1.1, state=TrialState.PRUNED), _trial(None, True, 1, state=TrialState.FAIL)])
    trials[0], trials[3] = trials[3], trials[0]  # v0's first warm trial is #0: controls 1, 2 fall in its period
    _numbered(trials)
    rows = gain_per_version(trials, [_version(0), _version(1), _version(2, promoted=False)])
    assert [r.version for r in rows] == [0, 1, 2]
    v0, v1, v2 = rows
    assert (v0.warm_trials, v0.controls, v0.warm_final, v0.control_final) == (2, 3, 0.7, 0.8)  # controls #1-#3
    assert math.isclose(v0.gain, 0.1) and math.isclose(v0.step0_gain, 2.2 - 1.8)  # the pruned one counts at step 0
    assert (v1.warm_trials, v1.controls, v1.warm_final) == (2, 2, 0.3) and math.isclose(v1.warm_step0, 1.0)
    assert math.isclose(v1.control_final, 0.45) and math.isclose(v1.gain, 0.15)  # the FAIL is left out
    assert v2.warm_trials == 0 and v2.controls == 0 and math.isnan(v2.gain) and not v2.promoted
    assert v2.refit_seconds == 1.5


def test_search_summary_line_lists_the_versions_warm_trials_used():
    from nas.cli import _gain_per_version

    study = optuna.create_study()
    for t in (_trial(0.8, True, 0), _trial(0.9, False), _trial(0.7, True, 0), _trial(0.5, True, 1), _trial(1.0, False),
              _trial(0.6, True, 1)):
        study.add_trial(t)
    line = _gain_per_version(study, [_version(0), _version(1), _version(2, promoted=False)])
    assert line == "gain over controls (median final val loss) by hypernet version: v0 +0.1500 (2 warm), v1 +0.4500 (2 warm)"
    only_warm = optuna.create_study()
    only_warm.add_trial(_trial(0.5, True, 0))
    assert _gain_per_version(only_warm, [_version(0)]) is None  # no control to compare with
