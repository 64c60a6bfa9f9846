"""`logah-nas export` says when the best trial overall (`optuna best-trial`) is not the exported one."""
from __future__ import annotations

import optuna
import pytest
from _nas_tiny import tiny_overrides, tiny_config
from optuna.trial import TrialState

from nas.cli import main
from nas.study import export_note, open_session, run_trials


@pytest.fixture(scope="module")
def study_with_better_control(tmp_path_factory):
    """A tiny study of warm trials, plus a control trial (copied weights) better than all of them."""
    tmp = tmp_path_factory.mktemp("note")
    session = open_session(tiny_config(tmp, "n_trials=1", "study.control_fraction=0.0"), create=True)
    run_trials(session)
    (warm,) = session.study.get_trials(states=(TrialState.COMPLETE,))
    session.study.add_trial(optuna.trial.create_trial(
        params=warm.params, distributions=warm.distributions, value=warm.value - 1.0,
        user_attrs={**warm.user_attrs, "warm_start": False, "hypernet_version": None}))
    return session.study, tmp, warm.number


def test_export_says_which_trial_optuna_calls_best_and_how_to_export_it(study_with_better_control, capsys):
    study, tmp, warm_number = study_with_better_control
    best = study.best_trial  # what `optuna best-trial` shows
    assert best.number != warm_number
    assert main(["export", *tiny_overrides(tmp)]) == 0
    out = capsys.readouterr()
    assert out.out.strip().endswith(f"trial{warm_number}")  # stdout: the path only (scripts read it)
    assert f"best trial overall (`optuna best-trial`) is #{best.number}" in out.err
    assert "random-init control" in out.err and f"logah-nas export trial={best.number}" in out.err
    assert main(["export", *tiny_overrides(tmp), f"trial={best.number}"]) == 0  # what the note says works
    assert "best trial overall" not in capsys.readouterr().err  # asked for it: no note


def test_no_note_when_the_exported_trial_is_the_best(study_with_better_control):
    study, _, warm_number = study_with_better_control
    assert export_note(study, study.best_trial) is None
    assert "not the exported #" in export_note(study, study.trials[warm_number])
