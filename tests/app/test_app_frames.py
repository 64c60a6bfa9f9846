"""app.frames: trials, curves and studies as DataFrames; filters, pages, one trial's detail."""
import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

import _studies
from app import analysis, frames
from app.reader import Reader


def test_trials_and_curves_frames_for_5000_trials():
    trials = _studies.numbered_trials(5000, seed=1)
    df = frames.trials_frame(trials)
    assert len(df) == 5000 and df["number"].is_monotonic_increasing
    assert list(df.columns[:len(frames.TRIAL_COLUMNS)]) == frames.TRIAL_COLUMNS
    assert {c for c in df.columns if c.startswith("param_")} == {f"param_{k}" for k in trials[0].params}
    assert set(df["init"]) == {"warm", "random"} and set(df["state"]) == {"COMPLETE", "PRUNED", "FAIL"}
    assert df.loc[df["state"] == "COMPLETE", "value"].notna().all()
    assert df.loc[df["state"] != "COMPLETE", "value"].isna().all()
    assert df.loc[df["state"] != "COMPLETE", "fail_reason"].notna().all()
    curves = frames.curves_frame(trials)
    assert len(curves) == sum(len(t.intermediate_values) for t in trials)
    assert curves.groupby("number")["step"].min().eq(0).all()
    first = trials[0]
    got = curves[curves["number"] == 0].set_index("step")["value"].to_dict()
    assert got == pytest.approx(first.intermediate_values)


def test_frames_of_trials_without_our_attrs(demo):
    reader = Reader(demo["url"])
    df = frames.trials_frame(reader.trials("legacy"))
    assert (df["init"] == "unknown").all() and df["loss_step0"].isna().all() and not df["has_weights"].any()
    assert df["screen_loss"].isna().all()
    assert frames.curves_frame(reader.trials("legacy")).empty
    assert frames.trials_frame([]).empty and list(frames.trials_frame([]).columns) == frames.TRIAL_COLUMNS


def test_trials_key_changes_only_when_trials_change(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    writer = optuna.create_study(storage=url, study_name="s")
    writer.add_trials(_studies.synthetic_trials(5))
    reader = Reader(url)
    key = frames.trials_key(reader.trials("s"))
    assert frames.trials_key(reader.trials("s")) == key
    running = writer.ask()
    key2 = frames.trials_key(reader.trials("s"))
    assert key2 != key
    running.report(1.0, 0)
    key3 = frames.trials_key(reader.trials("s"))
    assert key3 != key2
    writer.tell(running, 0.5)
    assert frames.trials_key(reader.trials("s")) != key3
    assert len(reader.trials("s")) == 6


def test_cached_frames_recomputed_only_when_trials_change(tmp_path, monkeypatch):
    from app import state

    url = f"sqlite:///{tmp_path / 'c.db'}"
    writer = optuna.create_study(storage=url, study_name="c")
    writer.add_trials(_studies.synthetic_trials(8))
    calls = []
    real = frames.trials_frame
    monkeypatch.setattr(frames, "trials_frame", lambda trials: calls.append(len(trials)) or real(trials))
    reader = state._reader(url)
    first, _ = state.frames(url, "c", state.trials_key(reader, "c"))
    again, _ = state.frames(url, "c", state.trials_key(reader, "c"))
    assert calls == [8] and first.equals(again)
    writer.add_trials(_studies.synthetic_trials(1, seed=9))
    updated, _ = state.frames(url, "c", state.trials_key(reader, "c"))
    assert calls == [8, 9] and len(updated) == 9


def test_filter_and_page():
    df = frames.trials_frame(_studies.numbered_trials(120, seed=2))
    warm_complete = frames.filter_trials(df, states=["COMPLETE"], inits=["warm"])
    assert len(warm_complete) and set(warm_complete["state"]) == {"COMPLETE"} and set(warm_complete["init"]) == {"warm"}
    lo, hi = df["value"].quantile([0.25, 0.75])
    ranged = frames.filter_trials(df, value_range=(lo, hi))
    assert ranged["value"].between(lo, hi).all() and len(ranged) < df["value"].notna().sum()
    assert len(frames.filter_trials(df)) == 120 and frames.filter_trials(df, states=[]).empty
    rows, pages = frames.page(df, 3, 50)
    assert pages == 3 and list(rows["number"]) == list(range(100, 120))
    assert list(frames.page(df, 99, 50)[0]["number"]) == list(range(100, 120))  # clamped to the last page
    assert list(frames.page(df, 0, 50)[0]["number"]) == list(range(50))
    empty, pages = frames.page(df.iloc[:0], 1, 25)
    assert empty.empty and pages == 1
    with pytest.raises(ValueError, match="page size"):
        frames.page(df, 1, 0)


def test_trial_detail_and_artifacts(demo):
    reader = Reader(demo["url"])
    best = analysis.best_trial(reader.study("vit-digits"))
    detail = frames.trial_detail(best)
    assert detail["weights_artifact_id"] and detail["config"]["space"] == "vit" and detail["n_params"] > 0
    assert "config" not in detail["user_attrs"] and detail["init"] in ("warm", "random")
    arts = frames.artifacts(best)
    assert list(arts["artifact_id"]) == [detail["weights_artifact_id"]]
    assert arts["filename"].iloc[0] == "weights.safetensors"
    failed = next(t for t in reader.trials("vit-digits") if t.state is TrialState.FAIL)
    assert frames.trial_detail(failed)["fail_reason"] and frames.artifacts(failed).empty
    warm = analysis.best_trial(reader.study("vit-digits"), warm_only=True)
    assert warm.user_attrs["warm_start"] is True


def test_screened_trials_show_their_screening_score():
    from optuna.distributions import IntDistribution
    from optuna.trial import create_trial

    screened = create_trial(value=0.3, params={"depth": 2}, distributions={"depth": IntDistribution(1, 6)},
                            user_attrs={"warm_start": True, "screen_loss": 0.25})
    plain = create_trial(value=0.4, params={"depth": 3}, distributions={"depth": IntDistribution(1, 6)},
                         user_attrs={"warm_start": True})
    plain.number, screened.number = 1, 0
    df = frames.trials_frame([screened, plain])
    assert df["screen_loss"].iloc[0] == pytest.approx(0.25) and pd.isna(df["screen_loss"].iloc[1])
