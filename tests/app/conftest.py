import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _studies  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """A storage like a real run's: 'vit-digits' (40 trials, weights for the best, 4 hypernet
    versions) and 'legacy' (no logah-nas attrs). Tests must not modify it."""
    folder = tmp_path_factory.mktemp("demo")
    url, artifacts = _studies.demo_storage(folder, n_trials=40)
    return {"url": url, "artifacts": artifacts, "db": folder / "study.db"}


@pytest.fixture(scope="session")
def edge(tmp_path_factory):
    """Studies at the edges: 'fresh' (no trials) and 'unfinished' (running + failed, none complete)."""
    from nas.storage import make_storage

    folder = tmp_path_factory.mktemp("edge")
    url = f"sqlite:///{folder / 'edge.db'}"
    storage = make_storage(url, heartbeat_interval=None)
    optuna.create_study(storage=storage, study_name="fresh")
    study = optuna.create_study(storage=storage, study_name="unfinished")
    study.set_user_attr("space", "vit")
    states = (TrialState.RUNNING, TrialState.FAIL, TrialState.RUNNING)
    for t, state in zip(_studies.synthetic_trials(3, seed=3), states):
        study.add_trial(optuna.trial.create_trial(
            state=state, params=t.params, distributions=t.distributions, user_attrs=t.user_attrs,
            intermediate_values={s: v for s, v in t.intermediate_values.items() if s <= 40}))
    storage.engine.dispose()
    return {"url": url, "db": folder / "edge.db"}


@pytest.fixture
def app_env(monkeypatch):
    """Point the app at a storage through the environment (AppTest has no command line)."""
    from nas.storage import ARTIFACTS_ENV, STORAGE_ENV

    def point(url: str | None, artifacts: str | None = None) -> None:
        if url is None:
            monkeypatch.delenv(STORAGE_ENV, raising=False)
        else:
            monkeypatch.setenv(STORAGE_ENV, url)
        if artifacts is not None:
            monkeypatch.setenv(ARTIFACTS_ENV, artifacts)
    monkeypatch.setattr(sys, "argv", ["main.py"])
    return point
