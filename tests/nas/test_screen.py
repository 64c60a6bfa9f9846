"""Hypernet-screened startup trials (nas/screen.py)."""
from __future__ import annotations

import math
from dataclasses import replace

import optuna
import pytest
from _nas_tiny import tiny_config

import nas.hypernets as hypernets_mod
from nas.trial_recipe import count_params
from nas.attrs import SCREEN_LOSS as SCORE_ATTR, STUDY_SCREENED as SCREENED_ATTR
from nas.screen import Scored, candidate_architectures, enqueue_screened, pick, score_architectures
from nas.study import open_session, run_trials
from search_spaces import ConfigError, ViTSpace


def test_candidates_are_distinct_seeded_and_within_max_params():
    space = ViTSpace()
    a = candidate_architectures(space, 20, seed=3, max_params=100_000)
    assert a == candidate_architectures(space, 20, seed=3, max_params=100_000)
    assert a != candidate_architectures(space, 20, seed=4, max_params=100_000)
    assert len(a) == len(set(a)) == 20 and all(count_params(c) <= 100_000 for c in a)
    tiny = ViTSpace(depth=(1, 1), width=(16, 16, 16), heads=(2,), patch_sizes=(4,), mlp_ratios=(2.0,))
    assert len(candidate_architectures(tiny, 5, seed=0, max_params=10**9)) == 1  # the space has one


def test_scores_are_the_predicted_val_losses_best_first(tmp_path):
    """Scored with the same evaluation the refit validation uses, sorted ascending."""
    from hypernet import LoGAH, LoGAHConfig

    cfg = tiny_config(tmp_path, "space.depth=[1,3]", "space.width=[16,48,16]")
    dataset, space = cfg.data.load(), cfg.make_space()
    hn = LoGAH(LoGAHConfig(variant="tiny", space_signature=space.signature()))
    configs = candidate_architectures(space, 5, seed=0, max_params=10**9)
    scored = score_architectures(hn, configs, dataset, batch_size=16, batches=1)
    assert len(scored) == 5 and {s.config for s in scored} == set(configs)
    assert [s.loss for s in scored] == sorted(s.loss for s in scored)
    for s in scored:
        expected = hypernets_mod.predicted_val_loss(hn, s.config, dataset, init_seed=0, batch_size=16, batches=1)
        assert math.isclose(s.loss, expected, rel_tol=1e-6)


def _fake_scores(monkeypatch):
    """Score = width + depth / 10 (smaller is better): which architectures win is then known."""
    monkeypatch.setattr(hypernets_mod, "predicted_val_loss", lambda hn, config, *a, **k: config.width + config.depth / 10)


def _screened_session(tmp_path, monkeypatch, *extra):
    """A tiny study whose version 0 counts as pretrained (the screening gate) with fake scores."""
    _fake_scores(monkeypatch)
    real = hypernets_mod.initial_hypernet
    monkeypatch.setattr(hypernets_mod, "initial_hypernet",
                        lambda hcfg, space, *rest, **kw: replace(real(hcfg, space, *rest, **kw), pretrained=True))
    cfg = tiny_config(tmp_path, "space.depth=[1,3]", "space.width=[16,64,16]", "study.n_startup_trials=3",
                      "n_trials=5", "study.control_fraction=0.0", *extra)
    return cfg, open_session(cfg, create=True)


def test_a_new_warm_study_starts_with_the_best_scored_architectures(tmp_path, monkeypatch):
    cfg, session = _screened_session(tmp_path, monkeypatch, "hypernet.screen_candidates=12")
    study = session.study
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    candidates = candidate_architectures(session.space, 12, seed=cfg.seed, max_params=cfg.study.max_params)
    best = sorted(candidates, key=lambda c: c.width + c.depth / 10)[:3]
    scores = [c.width + c.depth / 10 for c in best]
    assert [t.user_attrs[SCORE_ATTR] for t in waiting] == scores
    info = study.user_attrs[SCREENED_ATTR]
    assert info["candidates"] == 12 and info["enqueued"] == 3 and info["losses"] == scores
    run_trials(session)
    trials = sorted(study.trials, key=lambda t: t.number)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    for t, config, score in zip(trials[:3], best, scores):  # the enqueued architectures ran first, in score order
        assert t.user_attrs["config"] == config.to_dict() and t.user_attrs[SCORE_ATTR] == score
        assert "lr" in t.params and t.user_attrs["warm_start"]  # hyperparameters still come from the sampler
    assert all(SCORE_ATTR not in t.user_attrs for t in trials[3:])
    # Opening the study again (resume, another worker) does not screen again.
    again = open_session(cfg, create=True)
    assert len(again.study.trials) == 5


@pytest.mark.parametrize("override", ["hypernet.screen_candidates=0", "study.control_fraction=1.0",
                                      "study.n_startup_trials=0"])
def test_no_screening_when_off_for_baselines_or_without_startup_trials(tmp_path, monkeypatch, override):
    _, session = _screened_session(tmp_path, monkeypatch, override)
    assert not session.study.trials and SCREENED_ATTR not in session.study.user_attrs


def test_no_screening_with_an_untrained_hypernet_or_a_study_that_has_trials(tmp_path, monkeypatch):
    _fake_scores(monkeypatch)
    cfg = tiny_config(tmp_path, "study.n_startup_trials=2", "study.control_fraction=0.0")  # checkpoint=none
    assert not open_session(cfg, create=True).study.trials
    (tmp_path / "b").mkdir()
    cfg, session = _screened_session(tmp_path / "b", monkeypatch, "hypernet.screen_candidates=0")
    session.study.enqueue_trial({"depth": 1})
    on = replace(cfg, hypernet=replace(cfg.hypernet, screen_candidates=16))
    assert enqueue_screened(session.study, None, session.space, session.dataset, on) == []
    assert SCREENED_ATTR not in session.study.user_attrs and len(session.study.trials) == 1


def test_best_per_size_takes_the_best_of_each_parameter_count_stratum():
    space = ViTSpace()
    configs = sorted(candidate_architectures(space, 12, seed=1, max_params=10**9), key=count_params)
    # scores favour the biggest model, as predicted loss tends to: "best" takes the 3 biggest
    scored = sorted((Scored(c, -count_params(c) + (i % 4) * 0.5) for i, c in enumerate(configs)), key=lambda s: s.loss)
    assert [s.config for s in pick(scored, 3)] == [s.config for s in scored[:3]] == [s.config for s in pick(scored, 3, "best")]
    spread = pick(scored, 3, "best_per_size")
    strata = [configs[0:4], configs[4:8], configs[8:12]]
    expected = [min((s for s in scored if s.config in stratum), key=lambda s: s.loss) for stratum in strata]
    assert spread == sorted(expected, key=lambda s: s.loss) and len({s.config for s in spread}) == 3
    assert pick(scored[:2], 3, "best_per_size") == scored[:2]  # fewer candidates than startup trials: all of them


def test_a_study_screened_per_size_enqueues_one_architecture_per_stratum(tmp_path, monkeypatch):
    from nas.screen import describe_screening

    cfg, session = _screened_session(tmp_path, monkeypatch, "hypernet.screen_candidates=12",
                                     "hypernet.screen_pick=best_per_size")
    candidates = sorted(candidate_architectures(session.space, 12, seed=cfg.seed, max_params=cfg.study.max_params),
                        key=count_params)
    score = lambda c: c.width + c.depth / 10  # noqa: E731 (as _fake_scores)
    expected = sorted((min(candidates[a:a + 4], key=score) for a in (0, 4, 8)), key=score)
    waiting = session.study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [t.user_attrs[SCORE_ATTR] for t in waiting] == [score(c) for c in expected]
    info = session.study.user_attrs[SCREENED_ATTR]
    assert info["pick"] == "best_per_size" and "the best of each of 3 size strata of 12" in describe_screening(
        session.study.user_attrs)


def test_screen_candidates_is_validated():
    from nas.config import HypernetConfig

    for bad in (-1, 2.5, True, 10**6):
        with pytest.raises(ConfigError) as info:
            HypernetConfig(screen_candidates=bad)
        assert info.value.field == "hypernet.screen_candidates"
    with pytest.raises(ConfigError, match=r"hypernet\.screen_pick='cheapest' is invalid: allowed one of \['best', 'best_per_size'\]"):
        HypernetConfig(screen_pick="cheapest")


def test_describe_screening_says_what_was_enqueued():
    from nas.screen import describe_screening

    line = describe_screening({SCREENED_ATTR: {"candidates": 16, "enqueued": 4, "seconds": 2.5,
                                               "losses": [0.21, 0.25, 0.3, 0.33]}})
    assert "best 4 of 16" in line and "0.210-0.330" in line and "2.5 s" in line
    assert describe_screening({}) is None and describe_screening({SCREENED_ATTR: {"enqueued": 0}}) is None
