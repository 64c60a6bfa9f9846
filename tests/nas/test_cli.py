"""`logah-nas`: one-line errors with exit code 2, and an end-to-end search with 2 worker processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _nas_tiny import tiny_overrides

from nas.cli import main, trials_done_line


@pytest.mark.parametrize("argv, needle", [
    (["search", "bogus_key=1"], "bogus_key='1' is invalid: allowed a known key"),
    (["search", "study.sampler=cmaes"], "study.sampler='cmaes' is invalid: allowed one of ['tpe', 'random']"),
    (["search", "space=resnet"], "space='resnet' is invalid: allowed one of ['gpt2', 'vit']"),
    (["search", "n_trials=-3"], "n_trials=-3 is invalid"),
    (["search", "space=gpt2"], "data='digits' is invalid: allowed a text dataset for space=gpt2"),
    (["search", "n_trials"], "an override of the form key=value"),
    (["frobnicate"], "unknown command 'frobnicate'"),
    (["worker", "space=gpt2"], "space='gpt2' is invalid"),
    (["pretrain", "pretrain.shallow_share=1.5"], "pretrain.shallow_share=1.5 is invalid: allowed a number in [0.0, 1.0]"),
])
def test_bad_input_is_one_line_and_exit_code_2(argv, needle, capsys, monkeypatch):
    monkeypatch.delenv("LOGAH_DEBUG", raising=False)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_help_lists_commands_and_groups(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "search" in out and "worker" in out and "vit|gpt2" in out.replace("gpt2|vit", "vit|gpt2")


def test_missing_dataset_file_is_a_user_error(tmp_path, capsys):
    code = main(["search", "data=cifar10", f"data.options.path={tmp_path}/nope", f"storage=sqlite:///{tmp_path}/s.db",
                 f"artifacts_dir={tmp_path}/artifacts"])
    assert code == 2 and "cifar10" in capsys.readouterr().err


def test_export_of_unknown_study_names_existing_ones(tmp_path, capsys):
    assert main(["export", "study_name=nope", f"storage=sqlite:///{tmp_path}/x.db"]) == 2
    assert "study_name='nope'" in capsys.readouterr().err


@pytest.mark.slow
def test_search_with_two_workers_end_to_end_then_export(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("LOGAH_DEBUG", None)
    args = [*tiny_overrides(tmp_path), "n_trials=4", "workers=2", "study.control_fraction=0.25",
            "hypernet.refit_every=2", "hypernet.refit_in=worker"]
    run = subprocess.run([sys.executable, "-m", "nas", "search", *args], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=150)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "best trial #" in run.stdout and "exported to" in run.stdout
    export = Path(run.stdout.split("exported to ")[1].split()[0])
    export = export if export.is_absolute() else tmp_path / export
    prov = json.loads((export / "provenance.json").read_text())
    assert prov["study"] == "vit-digits" and prov["storage"].startswith("sqlite:///")

    import optuna
    from optuna.trial import TrialState

    from nas.versions import list_versions

    study = optuna.load_study(study_name="vit-digits", storage=f"sqlite:///{tmp_path}/study.db")
    counted = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert 4 <= len(counted) <= 5  # MaxTrialsCallback: each worker may finish its running trial
    assert trials_done_line(len(counted), 4) in run.stdout  # the summary says so when one did
    assert len(list_versions(f"sqlite:///{tmp_path}/study.db", "vit-digits")) >= 2  # a refit happened
    assert len(list((tmp_path / "logs").glob("vit-digits-worker*.log"))) == 2

    again = subprocess.run([sys.executable, "-m", "nas", "export", *args[:-5], "trial=" + str(prov["trial"]),
                            f"export_dir={tmp_path}/again"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert Path(again.stdout.strip()) == tmp_path / "again" / f"vit-digits-trial{prov['trial']}"
    assert (tmp_path / "again" / f"vit-digits-trial{prov['trial']}" / "model.safetensors").exists()


def test_the_summary_counts_the_budget_and_says_what_workers_finished_beyond_it():
    assert trials_done_line(3, 4) == "trials done: 3/4 (COMPLETE + PRUNED)"
    assert trials_done_line(4, 4) == "trials done: 4/4 (COMPLETE + PRUNED)"
    assert trials_done_line(5, 4) == ("trials done: 4/4 (COMPLETE + PRUNED; 1 more that workers had begun as the "
                                      "budget filled)")


def test_dashboard_launches_the_app_on_localhost_with_the_storage(tmp_path, monkeypatch, capsys):
    calls = {}

    class _Done:
        def wait(self):
            return 0

    def fake_launch(storage_url, port=8501, address="127.0.0.1", artifacts=None, **kw):
        calls.update(storage=storage_url, port=port, address=address, artifacts=artifacts)
        return _Done()

    monkeypatch.setattr("nas.dashboard.launch", fake_launch)
    url = "postgresql+psycopg://u:pw@db/x"
    assert main(["dashboard", f"storage={url}", "port=8642", f"artifacts_dir={tmp_path}/a"]) == 0
    assert calls == {"storage": url, "port": 8642, "address": "127.0.0.1", "artifacts": f"{tmp_path}/a"}
    assert "pw" not in capsys.readouterr().out


def test_worker_accepts_only_machine_local_overrides():
    from nas.cli import _merge, _worker_overrides

    got = _worker_overrides(["study_name=s", "device=cpu", "data.options.seed=3", "storage=sqlite:///x.db"])
    assert got == {"study_name": "s", "device": "cpu", "data": {"options": {"seed": 3}}, "storage": "sqlite:///x.db"}
    assert _merge({"data": {"name": "digits", "options": {"seed": 0, "val_fraction": 0.2}}}, got)["data"] == {
        "name": "digits", "options": {"seed": 3, "val_fraction": 0.2}}
    for bad in (["study.steps=3"], ["data=cifar10"], ["data.name=x"]):
        with pytest.raises(Exception) as info:
            _worker_overrides(bad)
        assert "worker" in str(info.value)


def test_in_memory_sqlite_is_rejected(capsys):
    assert main(["search", "storage=sqlite://"]) == 2
    assert "in-memory SQLite" in capsys.readouterr().err


def test_pretrain_passes_space_data_and_options(tmp_path, monkeypatch, capsys):
    seen = {}

    def fake_pretrain(**kw):
        seen.update(kw)
        return tmp_path / "out.safetensors"

    monkeypatch.setattr("nas.pretrain.pretrain", fake_pretrain)
    assert main(["pretrain", "space=gpt2", "data=pytext", "hypernet=small", "pretrain.steps=7", "seed=3",
                 "pretrain.unroll_steps=4", "pretrain.unroll_lr=3e-4", "pretrain.input_noise=0.3", "pretrain.shallow_share=0.25",
                 f"pretrain.out={tmp_path}/out.safetensors"]) == 0
    assert (seen["space"], seen["data"], seen["variant"], seen["steps"], seen["seed"]) == ("gpt2", "pytext", "small", 7, 3)
    assert (seen["unroll_steps"], seen["unroll_lr"], seen["input_noise"], seen["shallow_share"]) == (4, 3e-4, 0.3, 0.25)
    assert seen["space_options"]["depth"] == (1, 4) and seen["data_options"]["context"] == 64
    assert capsys.readouterr().out.strip() == f"{tmp_path}/out.safetensors"


@pytest.mark.slow
def test_search_runs_a_refitter_beside_its_workers_and_a_refitter_by_hand_catches_up(tmp_path):
    """refit_in=refitter (the default): `search` starts `logah-nas refitter` (its own log) and stops
    it with the workers; refits the study still owes are made by a refitter started by hand, once
    each, and it exits when the study is finished. A study without refits refuses a refitter."""
    import optuna
    from optuna.trial import TrialState

    from nas.versions import list_versions

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("LOGAH_DEBUG", None)
    args = [*tiny_overrides(tmp_path), "n_trials=4", "workers=2", "hypernet.refit_every=2"]
    run = subprocess.run([sys.executable, "-m", "nas", "search", *args], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=150)
    assert run.returncode == 0, run.stdout + run.stderr
    log = tmp_path / "logs" / "vit-digits-refitter.log"
    assert log.exists() and "Traceback" not in log.read_text(), log.read_text()[-3000:]
    by_hand = subprocess.run([sys.executable, "-m", "nas", "refitter", f"storage=sqlite:///{tmp_path}/study.db",
                              f"artifacts_dir={tmp_path}/artifacts"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=150)
    assert by_hand.returncode == 0 and "refitter: " in by_hand.stdout, by_hand.stdout + by_hand.stderr
    storage = f"sqlite:///{tmp_path}/study.db"
    completed = optuna.load_study(study_name="vit-digits", storage=storage).get_trials(states=(TrialState.COMPLETE,))
    versions = list_versions(storage, "vit-digits")
    assert [v.version for v in versions] == list(range(len(completed) // 2 + 1))

    none = subprocess.run([sys.executable, "-m", "nas", "search", *tiny_overrides(tmp_path), "study_name=plain",
                           "n_trials=1", "workers=1"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=150)
    assert none.returncode == 0, none.stderr
    refused = subprocess.run([sys.executable, "-m", "nas", "refitter", f"storage={storage}", "study_name=plain"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=150)
    assert refused.returncode == 2 and "hypernet.refit_every=0 is invalid" in refused.stderr, refused.stderr


def test_search_says_when_the_refitter_has_no_core_of_its_own():
    from nas.cli import _shared_cores_note

    note = _shared_cores_note(workers=2, cores=2)
    assert note is not None and "2 workers and the refitter share 2 cores" in note and "workers=1" in note
    assert _shared_cores_note(workers=3, cores=4) is None  # a core left for the refitter
    assert _shared_cores_note(workers=1, cores=1) is None  # nothing to advise on one core
