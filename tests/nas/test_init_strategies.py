"""Init strategies behind one contract: selectable for a study's trials and for its controls."""
from __future__ import annotations

from _nas_tiny import tiny_config
from optuna.trial import TrialState

from nas import attrs
from nas.config.schema import INIT_STRATEGIES
from nas.init_strategies import _CLASSES, distance
from nas.study import open_session, run_trials
from search_spaces import ViTConfig


def test_every_config_choice_has_a_strategy():
    assert set(_CLASSES) == set(INIT_STRATEGIES)
    assert {name for name, cls in _CLASSES.items() if cls.uses_hypernet} == {"hypernet"}


def test_a_whole_study_can_run_a_baseline_and_controls_inherit_from_completed_trials(tmp_path):
    cfg = tiny_config(tmp_path, "n_trials=4", "study.init=mimetic", "study.control_init=inherit",
                      "study.control_fraction=0.5", "study.pruner=none")
    session = open_session(cfg, create=True)
    assert not run_trials(session).tripped
    trials = sorted(session.study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.number)
    inits = [t.user_attrs[attrs.INIT] for t in trials]
    assert set(inits) == {"mimetic", "inherit"} and not any(t.user_attrs[attrs.WARM_START] for t in trials)
    assert all(t.user_attrs[attrs.HYPERNET_VERSION] is None for t in trials)
    inheriting = [t for t in trials if t.user_attrs[attrs.INIT] == "inherit"]
    donors = {t.number for t in trials}
    for t in inheriting:  # the first control of a study may have no completed trial to inherit from
        source = t.user_attrs[attrs.INIT_SOURCE]
        assert source is None or (source in donors and source < t.number)
    assert any(t.user_attrs[attrs.INIT_SOURCE] is not None for t in inheriting)


def test_distance_prefers_the_closest_shape():
    a = ViTConfig(depth=2, width=64, heads=4, patch_size=2)
    near = ViTConfig(depth=2, width=48, heads=4, patch_size=2)
    far = ViTConfig(depth=6, width=128, heads=4, patch_size=4)
    assert distance(a, a) == 0 and distance(a, near) < distance(a, far)
