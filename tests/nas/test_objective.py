"""The trial function on a tiny in-process study: every user attr, controls, pruning, failures."""
from __future__ import annotations

import math

import optuna
import pytest
import torch
from _nas_tiny import tiny_config, tiny_gpt2_config
from optuna.trial import TrialState

from nas.trial_recipe import count_params, is_control
from nas.refit import load_trial_weights
from nas.study import open_session, run_trials
from nas.train_loop import TrainResult
from search_spaces import ViTConfig, build_model, config_from_dict

ATTRS_ALWAYS = {"warm_start", "hypernet_version", "predict_seconds", "n_params", "config", "train_seconds"}
ATTRS_COMPLETE = ATTRS_ALWAYS | {"loss_step0", "weights_artifact_id", "val_accuracy"}


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("objective")
    session = open_session(tiny_config(tmp, "n_trials=4", "study.control_fraction=0.5"), create=True)
    guard = run_trials(session)
    assert not guard.tripped, guard.last_reason
    return session


def test_is_control_is_deterministic_and_stratified():
    flags = [is_control(n, 0.25, seed=3) for n in range(40)]
    assert flags == [is_control(n, 0.25, seed=3) for n in range(40)]
    assert sum(flags) == 10 and all(sum(flags[i:i + 4]) == 1 for i in range(0, 40, 4))
    assert not any(is_control(n, 0.0, 0) for n in range(10)) and all(is_control(n, 1.0, 0) for n in range(10))


def test_count_params_matches_a_built_model():
    c = ViTConfig(depth=2, width=32, heads=2)
    assert count_params(c) == build_model(c).num_params()


def test_every_completed_trial_records_the_documented_attrs(tiny_study):
    trials = tiny_study.study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 4
    for t in trials:
        a = t.user_attrs
        assert ATTRS_COMPLETE <= set(a), set(a) ^ ATTRS_COMPLETE
        assert isinstance(a["warm_start"], bool) and a["n_params"] == count_params(config_from_dict(a["config"]))
        assert a["loss_step0"] == pytest.approx(t.intermediate_values[0])
        assert sorted(t.intermediate_values) == [0, 2, 4]
        assert t.value == pytest.approx(t.intermediate_values[4])
        assert 0.0 <= a["val_accuracy"] <= 1.0 and a["train_seconds"] > 0
        assert {"lr", "weight_decay", "batch_size", "depth", "width"} <= set(t.params)
        if a["warm_start"]:
            assert a["hypernet_version"] == 0 and a["predict_seconds"] > 0
        else:
            assert a["hypernet_version"] is None and a["predict_seconds"] == 0.0
    flags = [t.user_attrs["warm_start"] for t in sorted(trials, key=lambda t: t.number)]
    assert flags == [not is_control(n, 0.5, 0) for n in range(4)] and flags.count(False) == 2


def test_weights_artifact_holds_the_trained_parameters(tiny_study):
    t = tiny_study.study.get_trials(states=(TrialState.COMPLETE,))[0]
    tensors = load_trial_weights(t, tiny_study.artifact_store)
    model = build_model(config_from_dict(t.user_attrs["config"]))
    assert set(tensors) == set(dict(model.named_parameters()))
    assert all(torch.isfinite(v).all() for v in tensors.values())


def test_study_attrs_are_recorded_with_secrets_masked(tiny_study):
    attrs = tiny_study.study.user_attrs
    assert attrs["space"] == "vit" and attrs["data"] == "digits" and attrs["metric"] == "val_loss"
    assert attrs["config"]["study"]["steps"] == 4 and "logah_nas_version" in attrs


def test_too_large_config_is_pruned_with_reason_before_building(tmp_path):
    session = open_session(tiny_config(tmp_path, "n_trials=1", "study.max_params=10"), create=True)
    run_trials(session)
    (t,) = session.study.trials
    assert t.state == TrialState.PRUNED and "exceeds study.max_params=10" in t.user_attrs["fail_reason"]
    assert t.user_attrs["n_params"] > 10 and "weights_artifact_id" not in t.user_attrs


class _AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return True


def test_pruned_trial_has_fail_reason_and_step0_report(tmp_path):
    session = open_session(tiny_config(tmp_path, "n_trials=1"), create=True)
    session.study.pruner = _AlwaysPrune()
    run_trials(session)
    (t,) = session.study.trials
    assert t.state == TrialState.PRUNED and "pruned by the" in t.user_attrs["fail_reason"]
    assert list(t.intermediate_values) == [0] and "loss_step0" in t.user_attrs


def test_diverged_training_fails_the_trial_with_reason(tmp_path, monkeypatch):
    def diverging(model, dataset, cfg, report=None):
        report(0, {"val_loss": 2.3})
        return TrainResult(status="diverged", reason="non-finite loss at step 3", loss_step0=2.3, val_loss=math.nan)

    monkeypatch.setattr("nas.objective.train", diverging)
    session = open_session(tiny_config(tmp_path, "n_trials=1", "study.max_consecutive_failures=2"), create=True)
    guard = run_trials(session)
    trials = session.study.trials
    assert guard.tripped and len(trials) == 2  # stops after 2 failures in a row instead of looping forever
    assert all(t.state == TrialState.FAIL for t in trials)
    assert trials[0].user_attrs["fail_reason"] == "diverged: non-finite loss at step 3"


def test_gpt2_trial_records_perplexity(tmp_path):
    cfg = tiny_gpt2_config(tmp_path, "n_trials=1", "study.control_fraction=0.0")
    session = open_session(cfg, create=True)
    run_trials(session)
    (t,) = session.study.trials
    assert t.state == TrialState.COMPLETE, t.user_attrs.get("fail_reason")
    assert t.user_attrs["val_perplexity"] == pytest.approx(math.exp(t.value), rel=1e-6)
    assert "val_accuracy" not in t.user_attrs and t.user_attrs["hypernet_version"] == 0
    assert t.user_attrs["config"]["space"] == "gpt2"


def test_refit_rebuilds_the_exact_init_a_control_trial_started_from(tiny_study):
    """The refit's distillation uses `trial_init` as W0: it must be the trial's real starting point."""
    from nas.data import load_dataset
    from nas.trial_recipe import trial_init
    from nas.train_loop import evaluate

    cfg = tiny_study.cfg
    control = next(t for t in tiny_study.study.get_trials(states=(TrialState.COMPLETE,))
                   if not t.user_attrs["warm_start"])
    config = config_from_dict(control.user_attrs["config"])
    model = build_model(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(trial_init(cfg.seed, control.number, config)[name])
    dataset = load_dataset(cfg.data.name, **cfg.data.options)
    loss = evaluate(model, dataset, batch_size=max(cfg.study.batch_sizes), batches=cfg.study.eval_batches)["val_loss"]
    assert loss == pytest.approx(control.user_attrs["loss_step0"], rel=1e-5)


def test_warm_trials_start_from_the_configured_warm_strength(tmp_path):
    """hypernet.warm_strength reaches `LoGAH.apply`: the trial's step-0 loss is that of the blended
    start, not of the full prediction (the shipped checkpoint: an untrained one predicts the init)."""
    from nas.data import load_dataset
    from nas.hypernets import HypernetCache
    from nas.trial_recipe import trial_seed
    from nas.train_loop import evaluate

    session = open_session(tiny_config(tmp_path, "n_trials=1", "study.control_fraction=0.0",
                                       "hypernet.warm_strength=0.5", "hypernet.checkpoint=auto"), create=True)
    assert not run_trials(session).tripped
    (trial,) = session.study.get_trials(states=(TrialState.COMPLETE,))
    assert trial.user_attrs["warm_start"]
    cfg, config = session.cfg, config_from_dict(trial.user_attrs["config"])
    _, hn = HypernetCache(session.storage, cfg.study_name).latest()
    dataset = load_dataset(cfg.data.name, **cfg.data.options)

    def step0(strength):
        model = hn.apply(build_model(config, seed=trial_seed(cfg.seed, trial.number)), strength=strength)
        return evaluate(model, dataset, batch_size=max(cfg.study.batch_sizes), batches=cfg.study.eval_batches)["val_loss"]

    assert trial.user_attrs["warm_strength"] == 0.5
    safety = trial.user_attrs["safety"]  # a trained hypernet's prediction beats its init: the safety net keeps it
    assert safety["outcome"] == "kept" and safety["predicted_loss"] < safety["init_loss"]
    assert trial.user_attrs["loss_step0"] == pytest.approx(step0(0.5), rel=1e-5)
    assert trial.user_attrs["loss_step0"] != pytest.approx(step0(1.0), rel=1e-3)


def test_trials_with_different_batch_sizes_are_scored_on_the_same_val_batches(tmp_path, monkeypatch):
    import nas.objective as objective_mod

    seen, real = [], objective_mod.train

    def spy(model, dataset, cfg, **kw):
        seen.append((cfg.batch_size, cfg.eval_batch_size))
        return real(model, dataset, cfg, **kw)

    monkeypatch.setattr(objective_mod, "train", spy)
    session = open_session(tiny_config(tmp_path, "n_trials=6", "study.batch_sizes=[8,16]"), create=True)
    run_trials(session)
    assert {b for b, _ in seen} == {8, 16} and {e for _, e in seen} == {16}


def test_a_worker_whose_guard_trips_exits_with_the_code_its_supervisor_does_not_restart(tmp_path, monkeypatch, capsys):
    """The supervisor tells a tripped failure guard by the worker's exit code, not by its log's text."""
    from nas.cli import main
    from nas.workers import EXIT_GUARD, _hopeless

    def diverging(model, dataset, cfg, report=None):
        report(0, {"val_loss": 2.3})
        return TrainResult(status="diverged", reason="non-finite loss at step 3", loss_step0=2.3, val_loss=math.nan)

    monkeypatch.setattr("nas.objective.train", diverging)
    cfg = tiny_config(tmp_path, "n_trials=3", "study.max_consecutive_failures=2")
    open_session(cfg, create=True)
    code = main(["worker", f"storage={cfg.storage}", f"study_name={cfg.study_name}"])
    assert code == EXIT_GUARD and "2 trials failed in a row" in capsys.readouterr().err
    assert _hopeless(EXIT_GUARD) == "too many trials failed in a row"
    assert _hopeless(2) and _hopeless(1) is None and _hopeless(-9) is None  # a crash or a kill is restarted
