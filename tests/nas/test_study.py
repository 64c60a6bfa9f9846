"""Study creation, joining from stored config, samplers/pruners, the failure guard."""
from __future__ import annotations

import os
import uuid

import optuna
import pytest
from _nas_tiny import tiny_config

from nas.pruning import SameInitPruner
from nas.study import create_study, make_pruner, make_sampler, open_session, stored_config
from nas.versions import list_versions
from search_spaces import ConfigError


def test_create_study_records_attrs_and_version_0_once(tmp_path):
    cfg = tiny_config(tmp_path, "storage=sqlite:///" + str(tmp_path) + "/s.db")
    s1 = open_session(cfg, create=True)
    s2 = open_session(cfg, create=True)  # load_if_exists: same study, no second version 0
    assert s1.study.study_name == s2.study.study_name == "vit-digits"
    (v0,) = list_versions(cfg.storage, cfg.study_name)
    assert v0.version == 0 and v0.promoted and "random init" in v0.note
    assert s1.study.user_attrs["config"]["hypernet"]["checkpoint"] == "none"


def test_reusing_a_study_name_for_other_data_is_refused(tmp_path):
    cfg = tiny_config(tmp_path)
    create_study(cfg)
    other = tiny_config(tmp_path, "study_name=vit-digits", "data=cifar10")
    with pytest.raises(ConfigError) as info:
        create_study(other)
    assert info.value.field == "study_name" and "data=digits" in str(info.value)


def test_worker_config_comes_from_the_study_with_local_overrides(tmp_path):
    cfg = tiny_config(tmp_path, "storage=sqlite:///" + str(tmp_path) + "/s.db", "study.steps=7")
    create_study(cfg)
    joined = stored_config(cfg.storage, cfg.study_name, {"device": "cpu", "n_trials": 99})
    assert joined.study.steps == 7 and joined.n_trials == 99 and joined.space == cfg.space
    assert joined.storage == cfg.storage
    with pytest.raises(ConfigError) as info:
        stored_config(cfg.storage, "no-such-study")
    assert "vit-digits" in str(info.value)


def test_password_is_masked_in_stored_config(tmp_path):
    from nas.study import study_attrs

    cfg = tiny_config(tmp_path)
    from dataclasses import replace

    attrs = study_attrs(replace(cfg, storage="postgresql+psycopg://u:hunter2@db/x"))
    assert "hunter2" not in str(attrs) and "storage" not in attrs["config"]  # run-local: never stored


def test_study_config_attr_is_compact_and_rebuilds_the_full_config(tmp_path):
    """Only what defines the study is stored (no pretrain block, no run-local keys, no defaults);
    a joining worker rebuilds the same config, and a full config (older studies) still reads."""
    from nas.study import compact_config, expand_config

    cfg = tiny_config(tmp_path, "storage=sqlite:///" + str(tmp_path) + "/s.db", "pretrain.steps=7", "port=9000")
    stored = compact_config(cfg)
    assert set(stored) == {"space", "data", "seed", "hypernet", "study", "n_trials", "artifacts_dir"}
    assert stored["study"]["steps"] == 4 and "sampler" not in stored["hypernet"]
    assert stored["hypernet"] == {k: v for k, v in stored["hypernet"].items() if k != "variant"}  # tiny = default
    rebuilt = expand_config(stored, cfg.study_name, cfg.storage)
    from dataclasses import replace

    assert rebuilt == replace(cfg, pretrain=rebuilt.pretrain, port=rebuilt.port, export_dir=rebuilt.export_dir,
                              device=rebuilt.device, workers=rebuilt.workers)
    assert expand_config(cfg.to_dict(), cfg.study_name, cfg.storage) == cfg
    create_study(cfg)
    create_study(tiny_config(tmp_path, "storage=sqlite:///" + str(tmp_path) + "/s.db", "n_trials=3"))  # local key
    with pytest.raises(ConfigError, match="study.steps"):
        create_study(tiny_config(tmp_path, "storage=sqlite:///" + str(tmp_path) + "/s.db", "study.steps=5"))


def test_optuna_studies_rows_stay_narrow(tmp_path):
    """The real `optuna studies` CLI prints every study attr on one row (was ~2,000 characters)."""
    import subprocess
    import sys
    from pathlib import Path

    from nas.config import compose

    cfg = compose([f"storage=sqlite:///{tmp_path}/s.db", "space=gpt2", "data=pytext"])  # the shipped defaults
    create_study(cfg)
    optuna_cli = Path(sys.executable).with_name("optuna")
    out = subprocess.run([str(optuna_cli), "studies", "--storage", cfg.storage], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    width = max(len(line) for line in out.splitlines())
    print(f"optuna studies row width: {width}")
    assert width < 700, out  # measured: 1688 / 1761 (vit-digits / gpt2-pytext) with the full config, 579 / 646 now


def test_samplers_and_pruners_follow_the_config(tmp_path):
    tpe = make_sampler(tiny_config(tmp_path, "study.sampler=tpe"), worker_index=1)
    assert isinstance(tpe, optuna.samplers.TPESampler)
    assert isinstance(make_sampler(tiny_config(tmp_path)), optuna.samplers.RandomSampler)
    median = make_pruner(tiny_config(tmp_path, "study.pruner=median"))
    assert isinstance(median, SameInitPruner) and isinstance(median.base, optuna.pruners.MedianPruner)
    hyperband = make_pruner(tiny_config(tmp_path, "study.pruner=hyperband"))
    assert isinstance(hyperband, SameInitPruner) and isinstance(hyperband.base, optuna.pruners.HyperbandPruner)
    assert isinstance(make_pruner(tiny_config(tmp_path)), optuna.pruners.NopPruner)


@pytest.mark.postgres
@pytest.mark.skipif(not os.environ.get("LOGAH_TEST_POSTGRES_URL"), reason="LOGAH_TEST_POSTGRES_URL is not set")
def test_tiny_study_with_refit_on_postgres(tmp_path, monkeypatch):
    from nas import refit as refit_mod
    from nas.study import run_trials

    name = f"pg-{uuid.uuid4().hex[:8]}"
    cfg = tiny_config(tmp_path, f"storage={os.environ['LOGAH_TEST_POSTGRES_URL']}", f"study_name={name}",
                      "n_trials=2", "hypernet.refit_every=2", "hypernet.refit_in=worker")
    session = open_session(cfg, create=True)
    calls = iter([2.0, 1.0])
    monkeypatch.setattr(refit_mod, "validation_loss", lambda *a, **k: next(calls))
    run_trials(session)
    versions = list_versions(cfg.storage, name)
    assert [v.version for v in versions] == [0, 1] and versions[1].promoted
    assert session.study.user_attrs["space"] == "vit"


def test_resuming_with_changed_study_settings_is_refused_but_local_keys_may_change(tmp_path):
    create_study(tiny_config(tmp_path))
    create_study(tiny_config(tmp_path, "n_trials=9", "device=auto", "workers=3"))  # run-local: fine
    with pytest.raises(ConfigError) as info:
        create_study(tiny_config(tmp_path, "study.steps=9", "hypernet.refit_every=5"))
    assert "['hypernet.refit_every', 'study.steps']" in str(info.value)
