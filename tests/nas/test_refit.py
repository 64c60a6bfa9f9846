"""Refit: version 1 from trial results, promotion only when validation improves, lease, sampling."""
from __future__ import annotations

import random

import pytest
import torch
from _nas_tiny import tiny_config

from nas import refit as refit_mod
from nas.hypernets import load_version
from nas.lease import try_acquire
from nas.refit import (RefitCallback, config_key, validation_architectures, lease_name, make_distill_loss, make_sample_arch,
                       refit, refit_due, refit_share)
from nas.study import open_session, run_trials
from nas.versions import latest_promoted, list_versions
from search_spaces import ViTConfig


@pytest.fixture
def session(tmp_path):
    s = open_session(tiny_config(tmp_path, "n_trials=3", "study.control_fraction=0.0"), create=True)
    run_trials(s)
    return s


def _fake_validation(monkeypatch, values):
    calls = iter(values)
    monkeypatch.setattr(refit_mod, "validation_loss", lambda *a, **k: next(calls))


def test_refit_that_improves_validation_is_promoted(session, monkeypatch):
    _fake_validation(monkeypatch, [2.0, 1.5])  # parent, new
    v = refit(session)
    assert (v.version, v.promoted, v.val_loss, v.parent_val_loss, v.trials_used) == (1, True, 1.5, 2.0, 3)
    assert latest_promoted(session.engine, session.cfg.study_name).version == 1
    hn = load_version(v, session.artifact_store)  # the artifact is a valid, checksummed checkpoint
    assert hn.config.space_signature == session.space.signature()


def test_refit_that_worsens_validation_is_kept_but_not_promoted(session, monkeypatch):
    _fake_validation(monkeypatch, [2.0, 2.5])
    v = refit(session)
    assert v.version == 1 and not v.promoted
    assert [x.version for x in list_versions(session.engine, session.cfg.study_name)] == [0, 1]
    assert latest_promoted(session.engine, session.cfg.study_name).version == 0  # workers keep using v0


def test_refit_with_real_validation_records_parent_comparison(session):
    v = refit(session)
    assert v.version == 1 and v.promoted == (v.val_loss < v.parent_val_loss) and v.seconds > 0


def test_refit_share_caps_refits_to_a_share_of_the_study_compute(session):
    from optuna.trial import TrialState

    from nas.versions import record_version

    engine, study = session.engine, session.study
    trial_s = sum((t.datetime_complete - t.datetime_start).total_seconds()
                  for t in study.get_trials(states=(TrialState.COMPLETE,)))
    assert trial_s > 0 and refit_share(engine, study) == 0.0  # no refit yet: the first is never capped
    assert refit_due(engine, study, 1, max_share=0.01)
    v0 = latest_promoted(engine, session.cfg.study_name)
    record_version(engine, session.cfg.study_name, artifact_id=v0.artifact_id, sha256=v0.sha256, promoted=True,
                   trials_used=1, seconds=3 * trial_s)  # one refit that took 3x all trials together
    assert refit_share(engine, study) == pytest.approx(0.75)
    assert refit_due(engine, study, 1) and refit_due(engine, study, 1, max_share=1.0)  # uncapped: due (3 > 2 covered)
    assert refit_due(engine, study, 1, max_share=0.8) and not refit_due(engine, study, 1, max_share=0.7)
    assert not refit_due(engine, study, 2, max_share=1.0)  # the count rule still holds: 3 < 2 * 2


def test_callback_refits_when_due_only_with_the_lease(session, monkeypatch):
    from dataclasses import replace

    cfg = replace(session.cfg, hypernet=replace(session.cfg.hypernet, refit_every=3))
    trial = session.study.trials[-1]
    assert refit_due(session.engine, session.study, 3) and not refit_due(session.engine, session.study, 4)
    callback = RefitCallback(replace(session, cfg=cfg))
    assert try_acquire(session.engine, lease_name(cfg.study_name), "someone-else", ttl_s=60)
    callback(session.study, trial)
    assert list_versions(session.engine, cfg.study_name)[-1].version == 0  # lease held elsewhere: skipped
    from nas.versions import leases

    with session.engine.begin() as conn:
        conn.execute(leases.delete())
    _fake_validation(monkeypatch, [2.0, 1.0])
    callback(session.study, trial)
    assert callback.last is not None and callback.last.version == 1
    assert not refit_due(session.engine, session.study, 3)  # 3 trials are covered by one refit
    callback(session.study, trial)  # not due: nothing new
    assert len(list_versions(session.engine, cfg.study_name)) == 2


def test_sample_arch_replays_good_trials_and_never_the_heldout_set(session):
    space = session.space
    heldout = validation_architectures(space, [], 2, 0)
    fixed = {config_key(c) for c in heldout}
    candidates = [ViTConfig(depth=d, width=w, heads=2, patch_size=4, mlp_ratio=2.0) for d in (1, 2) for w in (16, 32)]
    good = [next(c for c in candidates if config_key(c) not in fixed)]
    rng = random.Random(0)
    assert all(make_sample_arch(space, good, 1.0, fixed)(rng) == good[0] for _ in range(10))
    drawn = [make_sample_arch(space, good, 0.0, fixed)(rng) for _ in range(30)]
    assert all(config_key(c) not in fixed for c in drawn)
    assert validation_architectures(space, [], 2, 0) == heldout  # fixed seed: the same set every refit
    # the replay branch obeys the exclusion too: a held-out architecture a trial used is never replayed
    replay = make_sample_arch(space, [heldout[0], good[0]], 1.0, fixed)
    assert all(replay(rng) == good[0] for _ in range(30))


def test_refit_never_trains_on_its_validation_architectures_or_examples(session, monkeypatch):
    """Validation = a fixed sample + trials other than the distillation targets; the refit's
    meta-training draws none of them, and it meta-trains on the train split minus the slice that
    both parent and child are judged on (examples apart from the trials' val)."""
    import hypernet

    seen: dict = {}
    real_meta_train = hypernet.meta_train

    def spy(hn, space, data, cfg, *, sample_arch, extra_loss, **kw):
        rng = random.Random(0)
        seen["drawn"] = {config_key(sample_arch(rng)) for _ in range(200)}
        seen["train"] = data.example_digests("train")
        return real_meta_train(hn, space, data, cfg, sample_arch=sample_arch, extra_loss=extra_loss, **kw)

    judged = []
    monkeypatch.setattr(hypernet, "meta_train", spy)
    monkeypatch.setattr(refit_mod, "validation_loss",
                        lambda hn, configs, data, **kw: judged.append(({config_key(c) for c in configs},
                                                                       data.example_digests("val"))) or 1.0)
    refit(session)
    (archs, examples), (archs_again, examples_again) = judged
    assert archs == archs_again and examples == examples_again  # parent and child on the same set
    assert not archs & seen["drawn"]
    assert examples and not examples & seen["train"]
    assert not examples & session.dataset.example_digests("val")  # not the trials' val either


def test_distill_loss_pulls_matching_configs_only():
    c = ViTConfig(depth=1, width=16, heads=2, patch_size=4, mlp_ratio=2.0)
    other = ViTConfig(depth=1, width=32, heads=2, patch_size=4, mlp_ratio=2.0)
    target = {"head.weight": torch.ones(10, 16)}
    loss_fn = make_distill_loss({config_key(c): (target, 0.5)}, weight=2.0)
    pred = {"head.weight": torch.zeros(10, 16, requires_grad=True)}
    loss = loss_fn(c, pred)
    assert loss.item() == pytest.approx(2.0 * 0.5 * 1.0)
    loss.backward()
    assert pred["head.weight"].grad.abs().sum() > 0
    assert loss_fn(other, pred).item() == 0.0


def test_anchored_refit_distils_warm_trials_onto_the_anchored_init(tmp_path, monkeypatch):
    """Control trials started from their own random init, not from the anchored W0 the
    correction is added to: their trained weights are no distillation target, and no target's
    W0 is replaced by a trial's random init."""
    s = open_session(tiny_config(tmp_path, "n_trials=6", "study.control_fraction=0.5",
                                 "hypernet.distill_trials=6"), create=True)
    run_trials(s)
    trials = refit_mod.completed_trials(s.study)
    assert {t.user_attrs["warm_start"] for t in trials} == {True, False}
    loaded: list[int] = []
    real_load = refit_mod.load_trial_weights
    monkeypatch.setattr(refit_mod, "load_trial_weights",
                        lambda t, store: loaded.append(t.number) or real_load(t, store))

    def no_trial_init(*args):
        raise AssertionError("an anchored refit must not use a trial's random init as W0")

    monkeypatch.setattr(refit_mod, "trial_init", no_trial_init)
    v = refit(s)
    warm = {t.number for t in trials if t.user_attrs["warm_start"]}
    assert v.version == 1 and loaded and set(loaded) <= warm


def test_promotion_is_decided_after_fine_tuning_on_examples_apart_from_the_judged_ones(tmp_path, monkeypatch):
    """hypernet.promote_steps > 0: parent and child are judged by the val loss of warm starts (at the
    study's strength) after that many AdamW steps, trained on the train split minus the judged slice;
    the step-0 losses are recorded beside it and the note says why it was (not) promoted."""
    s = open_session(tiny_config(tmp_path, "n_trials=3", "study.control_fraction=0.0", "hypernet.promote_steps=3"),
                     create=True)
    run_trials(s)
    calls = []
    real = refit_mod.validation_loss

    def spy(hn, configs, data, **kw):
        calls.append((kw.get("steps", 0), kw.get("strength", 1.0), data.example_digests("train"),
                      data.example_digests("val")))
        return real(hn, configs, data, **kw)

    monkeypatch.setattr(refit_mod, "validation_loss", spy)
    v = refit(s)
    assert [(steps, strength) for steps, strength, _, _ in calls] == [(3, 0.5), (0, 0.5), (3, 0.5), (0, 0.5)]
    for _, _, train, val in calls:
        assert train and val and not train & val  # fine-tuned on examples apart from the judged slice
    assert v.promoted == (v.val_loss < v.parent_val_loss)
    assert "after 3 fine-tuning steps at strength 0.5" in v.note and "(step 0 at strength 0.5: " in v.note
    assert ("not promoted: " in v.note) != v.promoted


def test_fine_tuned_validation_loss_trains_the_warm_start(session):
    from nas.hypernets import load_version

    hn = load_version(latest_promoted(session.engine, session.cfg.study_name), session.artifact_store)
    configs = validation_architectures(session.space, [], 2, 0)
    _, data = session.dataset.split_off_train(0.1, 0)
    kw = {"batch_size": 16, "batches": 1}
    before = refit_mod.validation_loss(hn, configs, data, **kw, steps=0)
    after = refit_mod.validation_loss(hn, configs, data, **kw, steps=30, lr=3e-3, strength=0.5)
    assert after < before  # 30 steps from a random-init hypernet's prediction (chance: ~2.3)


@pytest.mark.parametrize("at_warm", [True, False])
def test_refit_unroll_and_warm_strength_reach_the_meta_loss(tmp_path, monkeypatch, at_warm):
    """hypernet.refit_unroll_steps / refit_at_warm_strength: the refit's meta-training scores each
    prediction after that many AdamW steps at the study's lr, at the study's warm strength (or, off,
    at full strength)."""
    import math

    import hypernet

    s = open_session(tiny_config(tmp_path, "n_trials=2", "study.control_fraction=0.0", "hypernet.refit_steps=2",
                                 "hypernet.refit_unroll_steps=2", f"hypernet.refit_at_warm_strength={at_warm}"),
                     create=True)
    run_trials(s)
    seen = []
    real = hypernet.meta_train

    def spy(hn, space, data, cfg, **kw):
        seen.append(cfg)
        return real(hn, space, data, cfg, **kw)

    monkeypatch.setattr(hypernet, "meta_train", spy)
    refit(s)
    (cfg,) = seen
    strength = 0.5 if at_warm else 1.0
    assert cfg.unroll_steps == 2 and cfg.strength == strength and s.cfg.hypernet.warm_strength == 0.5
    assert f"step-0 val loss at strength {strength:g} " in list_versions(s.engine, s.cfg.study_name)[-1].note
    assert cfg.unroll_lr == pytest.approx(math.sqrt(s.cfg.study.lr[0] * s.cfg.study.lr[1]))


@pytest.mark.parametrize("override, field", [("hypernet.refit_unroll_steps=-1", "hypernet.refit_unroll_steps"),
                                             ("hypernet.refit_at_warm_strength=3", "hypernet.refit_at_warm_strength")])
def test_bad_refit_objective_settings_name_the_field(tmp_path, override, field):
    from search_spaces import ConfigError

    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        tiny_config(tmp_path, override)


def test_a_parent_is_judged_from_the_scores_its_checkpoint_carries(tmp_path, monkeypatch):
    """A refit's own validation losses are saved in its checkpoint; when it is the parent of the next
    refit on the same validation set, none of its runs is repeated and its score is the one recorded."""
    import nas.train_loop

    s = open_session(tiny_config(tmp_path, "n_trials=3", "study.control_fraction=0.0", "hypernet.promote_steps=2"),
                     create=True)
    run_trials(s)
    first = refit(s)
    hn, meta = load_version(first, s.artifact_store, with_meta=True)
    scores = meta["validation_scores"]
    assert scores and all(isinstance(v, float) for v in scores.values())
    runs = {"step0": 0, "tuned": 0}
    real_predicted, real_train = refit_mod.predicted_val_loss, nas.train_loop.train
    monkeypatch.setattr(refit_mod, "predicted_val_loss",
                        lambda *a, **k: runs.__setitem__("step0", runs["step0"] + 1) or real_predicted(*a, **k))
    monkeypatch.setattr(nas.train_loop, "train",
                        lambda *a, **k: runs.__setitem__("tuned", runs["tuned"] + 1) or real_train(*a, **k))
    monkeypatch.setattr(refit_mod, "latest_promoted", lambda engine, name: first)  # whether or not it was promoted
    second = refit(s)
    # the child's fine-tuning runs only; their step-0 evals are the step-0 scores (same start, same batches)
    assert (runs["step0"], runs["tuned"]) == (0, len(scores) // 2)
    assert second.parent_val_loss == pytest.approx(first.val_loss)
    _, meta2 = load_version(second, s.artifact_store, with_meta=True)
    assert set(meta2["validation_scores"]) == set(scores)  # same runs, judged for the child


def test_a_fine_tuning_run_s_step_0_eval_is_the_step_0_score(session):
    from nas.hypernets import predicted_val_loss

    hn = load_version(latest_promoted(session.engine, session.cfg.study_name), session.artifact_store)
    configs = validation_architectures(session.space, [], 2, 0)
    kw = {"batch_size": 16, "batches": 2, "strength": 0.5}
    scores: dict[str, float] = {}
    refit_mod.validation_loss(hn, configs, session.dataset, **kw, steps=2, scores=scores)
    known = dict(scores)
    step0 = refit_mod.validation_loss(hn, configs, session.dataset, **kw, scores=scores)
    assert scores == known and len(scores) == 4  # nothing new was computed
    direct = [predicted_val_loss(hn, c, session.dataset, init_seed=refit_mod.VALIDATION_INIT_SEED + i, batch_size=16,
                                 batches=2, strength=0.5) for i, c in enumerate(configs)]
    assert step0 == pytest.approx(sum(direct) / 2, rel=1e-5)
