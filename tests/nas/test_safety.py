"""The safety net of warm trials (nas/safety.py): what it compares against, when it keeps, blends
or replaces a prediction, the trial attr, the config key and the summary line."""
from __future__ import annotations

import pytest
import torch
from _nas_tiny import tiny_config
from optuna.trial import TrialState

from nas.safety import FLOOR, blend_strengths, describe_safety, guard, init_model, outcome_of
from search_spaces import ConfigError, ViTConfig, build_model

CONFIG = ViTConfig(image_size=8, channels=1, num_classes=10, patch_size=4, depth=2, width=32, heads=2, mlp_ratio=2.0)
SEED = 7


def _bad_hypernet(**overrides):
    """A fresh LoGAH whose corrections are scaled far up: its prediction is worse than its init."""
    from hypernet import LoGAH, LoGAHConfig
    from search_spaces import ViTSpace

    torch.manual_seed(0)
    hn = LoGAH(LoGAHConfig(variant="tiny", space_signature=ViTSpace().signature(), **overrides))
    if hn.config.residual:  # a pure low-rank decoder has no gains (and no init to stay near)
        hn.decoder.gain.data.fill_(5.0)
    return hn.eval()


def _params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def _distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return float(sum((a[k] - b[k]).pow(2).sum() for k in a).sqrt())


def _strength_score(hn, f):
    """score(model) = f(t), t = how far the model is from the init toward the full prediction: blends
    are init + t (prediction - init), so t is exactly the strength of the blend the model holds."""
    init = _params(init_model(hn, CONFIG, SEED))
    full = _params(hn.apply(build_model(CONFIG, seed=SEED), strength=1.0))
    calls = []

    def score(model) -> float:
        t = _distance(_params(model), init) / _distance(full, init)
        calls.append(t)
        return f(t)

    return score, calls


def test_the_init_compared_against_is_the_strength_zero_limit_of_apply():
    """Anchored hypernets: the anchored W0 + standard vectors (not the control's own random draw);
    fresh-W0 hypernets: the trial's seeded model as built (= the control's `random` start)."""
    anchored = _bad_hypernet()
    init = _params(init_model(anchored, CONFIG, SEED))
    tiny = _params(anchored.apply(build_model(CONFIG, seed=SEED), strength=1e-7))
    assert all(torch.allclose(init[k], tiny[k], atol=1e-5) for k in init)
    assert _distance(init, _params(build_model(CONFIG, seed=SEED))) > 1.0  # not the control's model
    fresh = _bad_hypernet(anchor_seed=None)
    assert _distance(_params(init_model(fresh, CONFIG, SEED)), _params(build_model(CONFIG, seed=SEED))) == 0.0


def test_blend_strengths_halve_down_to_the_floor():
    assert blend_strengths(0.5) == [0.25, 0.125, 0.0625] and blend_strengths(1.0)[0] == 0.5
    assert blend_strengths(FLOOR) == [] and min(blend_strengths(0.9)) >= FLOOR


def test_a_better_prediction_is_kept_and_the_init_scored_once():
    hn = _bad_hypernet()
    model = hn.apply(build_model(CONFIG, seed=SEED), strength=0.5)
    before = _params(model)
    score, calls = _strength_score(hn, lambda t: 1.0 - t)
    record = guard(model, hn, 0.5, init_seed=SEED, score=score)
    assert record["outcome"] == "kept" and record["strength"] == 0.5
    assert record["predicted_loss"] == pytest.approx(0.5) and record["init_loss"] == pytest.approx(1.0)
    assert len(calls) == 2 and _distance(_params(model), before) == 0.0


def test_a_worse_prediction_is_blended_to_the_first_strength_that_beats_the_init():
    hn = _bad_hypernet()
    model = hn.apply(build_model(CONFIG, seed=SEED), strength=0.5)
    score, calls = _strength_score(hn, lambda t: (t - 0.1) ** 2)  # best near t = 0.1: 0.5, 0.25 lose, 0.125 wins
    record = guard(model, hn, 0.5, init_seed=SEED, score=score)
    assert record["outcome"] == "blended" and record["strength"] == 0.125
    assert record["loss"] < record["init_loss"] < record["predicted_loss"]
    assert calls == pytest.approx([0.0, 0.5, 0.25, 0.125], abs=1e-4)  # init once, then the blends in order
    expected = _params(hn.apply(build_model(CONFIG, seed=SEED), strength=0.125))
    assert all(torch.allclose(p, expected[k], atol=1e-6) for k, p in _params(model).items())


def test_a_prediction_worse_at_every_strength_is_replaced_by_the_init():
    hn = _bad_hypernet()
    model = hn.apply(build_model(CONFIG, seed=SEED), strength=0.5)
    score, calls = _strength_score(hn, lambda t: t)
    record = guard(model, hn, 0.5, init_seed=SEED, score=score)
    assert record["outcome"] == "replaced" and record["strength"] == 0.0 and record["loss"] == record["init_loss"]
    assert len(calls) == 2 + len(blend_strengths(0.5))
    assert _distance(_params(model), _params(init_model(hn, CONFIG, SEED))) == 0.0


def test_a_pure_low_rank_hypernet_is_kept_or_replaced_never_blended():
    hn = _bad_hypernet(residual=False)
    model = hn.apply(build_model(CONFIG, seed=SEED))
    built = _params(build_model(CONFIG, seed=SEED))
    calls = []
    record = guard(model, hn, 1.0, init_seed=SEED, score=lambda m: calls.append(1) or _distance(_params(m), built))
    assert record["outcome"] == "replaced" and len(calls) == 2  # the init (the built model) and the prediction
    assert _distance(_params(model), built) == 0.0


@pytest.mark.parametrize("value", [-1, 1001, 1.5, True, "2", None])
def test_bad_safety_batches_raise_a_config_error_naming_the_field(value):
    from nas.config.schema import StudyConfig

    with pytest.raises(ConfigError) as info:
        StudyConfig(safety_batches=value)
    assert info.value.field == "study.safety_batches" and "1000" in str(info.value)
    assert StudyConfig().safety_batches == 2 and StudyConfig(safety_batches=0).safety_batches == 0


def test_outcomes_are_counted_in_one_line():
    trials = [{"safety": {"outcome": o}} for o in ("kept", "blended", "replaced", "kept", "blended")]
    trials += [{}, {"safety": "junk"}]  # controls, the net off, foreign values: not counted
    assert [outcome_of(a) for a in trials[-2:]] == [None, None]
    assert describe_safety(outcome_of(a) for a in trials) == "safety net: 2 blended, 1 replaced of 5 warm trials"
    assert describe_safety([None, None]) is None


def _bad_checkpoint(tmp_path):
    from hypernet import save_checkpoint

    path = tmp_path / "bad.safetensors"
    save_checkpoint(_bad_hypernet(), path, {})
    return path


@pytest.mark.parametrize("batches", [1, 0])
def test_search_with_a_bad_hypernet_trains_from_what_the_safety_net_chose(tmp_path, capsys, batches):
    """End to end through `logah-nas search`: the attr says what happened, the trial's step-0 loss is
    the chosen start's (same val batch), and the summary counts it; with study.safety_batches=0 no
    check runs and nothing is counted."""
    import optuna
    from _nas_tiny import tiny_overrides

    from nas.cli import main

    args = [*tiny_overrides(tmp_path), "n_trials=3", "workers=1", "study.control_fraction=0.34",
            f"hypernet.checkpoint={_bad_checkpoint(tmp_path)}", f"study.safety_batches={batches}"]
    assert main(["search", *args]) == 0
    out = capsys.readouterr().out
    study = optuna.load_study(study_name="vit-digits", storage=f"sqlite:///{tmp_path}/study.db")
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    warm = [t for t in trials if t.user_attrs["warm_start"]]
    assert warm and any(not t.user_attrs["warm_start"] for t in trials)
    assert all("safety" not in t.user_attrs for t in trials if not t.user_attrs["warm_start"])
    if batches == 0:
        assert all("safety" not in t.user_attrs for t in warm) and "safety net" not in out
        return
    for t in warm:
        record = t.user_attrs["safety"]
        assert record["outcome"] in ("blended", "replaced"), record
        assert record["predicted_loss"] > record["init_loss"] >= record["loss"]
        assert t.user_attrs["loss_step0"] == pytest.approx(record["loss"], rel=1e-5)
    assert describe_safety(outcome_of(t.user_attrs) for t in trials) in out
    assert f"replaced of {len(warm)} warm trials" in out


def test_a_study_whose_hypernet_predicts_the_init_keeps_it(tmp_path):
    """An untrained hypernet predicts exactly the init: a tie, so the prediction is kept."""
    from nas.study import open_session, run_trials

    session = open_session(tiny_config(tmp_path, "n_trials=2", "study.control_fraction=0.0"), create=True)
    run_trials(session)
    records = [t.user_attrs["safety"] for t in session.study.get_trials(states=(TrialState.COMPLETE,))]
    assert len(records) == 2 and all(r["outcome"] == "kept" and r["strength"] == 0.5 for r in records)
    assert all(r["predicted_loss"] == r["init_loss"] for r in records)
