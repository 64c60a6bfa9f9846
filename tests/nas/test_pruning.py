"""Controls are pruned only against controls, warm trials only against warm trials."""
from __future__ import annotations

import optuna
from optuna.trial import TrialState, create_trial

from nas.attrs import WARM_START
from nas.pruning import SameInitPruner


def _study(*curves: tuple[bool, list[float]]) -> optuna.Study:
    study = optuna.create_study()
    for warm, curve in curves:
        study.add_trial(create_trial(value=curve[-1], intermediate_values=dict(enumerate(curve)),
                                     user_attrs={WARM_START: warm}))
    return study


def _running(study: optuna.Study, warm: bool, curve: list[float]):
    trial = create_trial(state=TrialState.RUNNING, intermediate_values=dict(enumerate(curve)),
                         user_attrs={WARM_START: warm})
    study.add_trial(trial)
    return study.trials[-1]


def test_a_control_is_judged_against_controls_only():
    warm_low = [(True, [0.5, 0.2, 0.1])] * 3
    study = _study(*warm_low, (False, [2.3, 1.0, 0.6]), (False, [2.3, 1.1, 0.7]))
    median = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    pruner = SameInitPruner(median)
    control = _running(study, False, [2.3, 0.9])
    assert median.prune(study, control)  # the plain median (of warm trials) would kill it
    assert not pruner.prune(study, control)  # better than the controls' median at step 1
    bad_control = _running(study, False, [2.3, 1.5])
    assert pruner.prune(study, bad_control)
    warm = _running(study, True, [0.5, 0.4])
    assert pruner.prune(study, warm)  # worse than the warm trials' 0.2


def test_under_hyperband_controls_are_never_pruned():
    study = _study((True, [0.5, 0.2, 0.1]))
    pruner = SameInitPruner(optuna.pruners.HyperbandPruner(min_resource=1, max_resource=3))
    assert not pruner.prune(study, _running(study, False, [9.0, 9.0, 9.0]))
