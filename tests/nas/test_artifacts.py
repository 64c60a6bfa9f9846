"""Export of a study's best (or chosen) trial with provenance."""
from __future__ import annotations

import json

import pytest
import torch
from _nas_tiny import tiny_config
from optuna.trial import TrialState

from nas.artifacts import export_trial, load_trial_model
from nas.export import load_exported
from nas.study import best_trial, open_session, run_trials
from search_spaces import ConfigError


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("artifacts")
    session = open_session(tiny_config(tmp, "n_trials=2", "study.control_fraction=0.0"), create=True)
    run_trials(session)
    return session, tmp


def test_export_best_trial_reloads_identically_with_provenance(finished):
    session, tmp = finished
    best = best_trial(session.study)
    out = export_trial(session.storage, session.study, tmp / "exports")
    assert out.name == f"vit-digits-trial{best.number}"
    model, config = load_exported(out)
    original = load_trial_model(best, session.artifact_store)
    x = torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(model.eval()(x)[0], original(x)[0])
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["study"] == "vit-digits" and prov["trial"] == best.number and prov["metric"] == "val_loss"
    assert prov["value"] == pytest.approx(best.value) and prov["hypernet_version"] == 0
    assert len(prov["hypernet"]["sha256"]) == 64 and prov["seed"] == 0 and prov["data"]["name"] == "digits"
    assert prov["warm_strength"] == session.cfg.hypernet.warm_strength == 0.5


def test_export_a_chosen_trial_and_reject_a_missing_one(finished):
    session, tmp = finished
    first = session.study.get_trials(states=(TrialState.COMPLETE,))[0]
    out = export_trial(session.storage, session.study, tmp / "exports", trial_number=first.number)
    assert out.name.endswith(f"trial{first.number}")
    with pytest.raises(ConfigError) as info:
        export_trial(session.storage, session.study, tmp / "exports", trial_number=99)
    assert info.value.field == "trial"


def test_default_choice_is_the_best_warm_started_trial():
    """Control trials only measure the warm-start gain: the export defaults to the best warm one,
    even when a control trial has a lower loss, and to the best trial when none is warm."""
    import optuna

    from nas.artifacts import select_trial
    from nas.attrs import WARM_START, WEIGHTS

    def study(*trials: tuple[float, bool]) -> optuna.Study:
        s = optuna.create_study()
        for value, warm in trials:
            s.add_trial(optuna.trial.create_trial(value=value, user_attrs={WARM_START: warm, WEIGHTS: "x"}))
        return s

    assert select_trial(study((0.5, True), (0.1, False), (0.3, True), (0.2, False))).number == 2
    assert select_trial(study((0.5, False), (0.1, False))).number == 1
