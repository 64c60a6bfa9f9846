"""The safety net in the dashboard: the trial table's `safety` column and the count under the gain summary."""
import optuna
import pytest
from streamlit.testing.v1 import AppTest

import _studies
from _apptest import MAIN
from app import frames

OUTCOMES = ["blended", "replaced", "kept", "blended"]  # dealt over the warm trials, in order


@pytest.fixture(scope="module")
def safety_study(tmp_path_factory):
    """A study whose warm trials carry the `safety` attr the objective writes (controls do not)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('safety') / 'study.db'}"
    study = optuna.create_study(storage=url, study_name="vit-safety", direction="minimize")
    study.set_user_attr("space", "vit")
    warm_seen = 0
    for t in _studies.synthetic_trials(16, seed=5):
        attrs = dict(t.user_attrs)
        if attrs["warm_start"]:
            outcome = OUTCOMES[warm_seen % len(OUTCOMES)]
            attrs["safety"] = {"outcome": outcome, "init_loss": 2.3, "predicted_loss": 2.5, "loss": 2.2,
                               "strength": {"kept": 0.5, "blended": 0.125, "replaced": 0.0}[outcome]}
            warm_seen += 1
        study.add_trial(optuna.trial.create_trial(
            state=t.state, value=t.value, params=t.params, distributions=t.distributions, user_attrs=attrs,
            intermediate_values=t.intermediate_values))
    frame = frames.trials_frame(study.get_trials())
    return {"url": url, "warm": warm_seen, "frame": frame}


def _expected(warm: int) -> str:
    outcomes = [OUTCOMES[i % len(OUTCOMES)] for i in range(warm)]
    return (f"Safety net: {outcomes.count('blended')} blended, {outcomes.count('replaced')} replaced of "
            f"{warm} warm trials")


def test_the_trial_frame_has_the_outcome_of_warm_trials_only(safety_study):
    df = safety_study["frame"]
    assert "safety" in frames.TRIAL_COLUMNS
    warm = df["init"] == "warm"
    assert list(df.loc[warm, "safety"]) == [OUTCOMES[i % len(OUTCOMES)] for i in range(warm.sum())]
    assert df.loc[~warm, "safety"].isna().all()


def _run(tab: str) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=90)
    at.switch_page("views/study.py")
    at.query_params["study"] = "vit-safety"
    at.session_state["tab"] = tab
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_the_gain_summary_counts_what_the_safety_net_did(safety_study, app_env):
    app_env(safety_study["url"])
    assert safety_study["warm"] >= 4
    captions = "\n".join(str(c.value) for c in _run("Warm start vs random").caption)
    assert _expected(safety_study["warm"]) in captions


def test_the_trial_table_shows_the_safety_column(safety_study, app_env):
    app_env(safety_study["url"])
    table = _run("Trials").dataframe[0].value
    assert set(table["safety"].dropna()) == {"kept", "blended", "replaced"}
