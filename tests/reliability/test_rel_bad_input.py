"""A corpus of bad input: each case must end in a clear error naming the field (or a FAIL/PRUNED
trial whose `fail_reason` says why), and must not damage a study that already exists.

The CLI cases run `nas.cli.main` in this process against the storage of a live study (the
`victim` fixture, two completed trials and hypernet v0); after every case the study's
fingerprint (trials, states, values, hypernet versions) must be unchanged: a typo never loses
or alters results. Files cases build the damaged file for real (truncated, bit-flipped, wrong
format, a pickle that would run `os.system`) and check no code ran.
"""
from __future__ import annotations

import os
import pickle
import resource
from pathlib import Path

import pytest
from _rel import STATS, TINY, create_study, overrides, sqlite_url, trials_by_state

# (id, extra overrides, text the one-line error must contain); run as `search` against the victim.
CONFIG_CASES = [
    ("unknown-key", ["bogus=1"], "bogus='1' is invalid"),
    ("unknown-nested-key", ["study.stepz=3"], "study.stepz"),
    ("wrong-type-int", ["n_trials=abc"], "n_trials='abc' is invalid: allowed an integer >= 1"),
    ("wrong-type-steps", ["study.steps=four"], "study.steps='four' is invalid"),
    ("float-steps", ["study.steps=1.5"], "study.steps=1.5 is invalid"),
    ("negative-steps", ["study.steps=-5"], "study.steps=-5 is invalid: allowed an integer >= 1"),
    ("negative-refit-steps", ["hypernet.refit_steps=-1"], "hypernet.refit_steps=-1 is invalid"),
    ("warm-strength-zero", ["hypernet.warm_strength=0"], "hypernet.warm_strength=0 is invalid: allowed a number in (0.0, 1.0]"),
    ("screen-negative", ["hypernet.screen_candidates=-4"], "hypernet.screen_candidates=-4 is invalid: allowed an integer >= 0 and <= 10000"),
    ("negative-unroll-steps", ["pretrain.unroll_steps=-1"], "pretrain.unroll_steps=-1 is invalid: allowed an integer >= 0"),
    ("negative-input-noise", ["pretrain.input_noise=-0.5"], "pretrain.input_noise=-0.5 is invalid: allowed a number in [0.0, 10.0]"),
    ("lr-above-1", ["study.lr=[0.5,2.0]"], "study.lr[1]=2.0 is invalid: allowed a number in (0.0, 1.0]"),
    ("lr-zero", ["study.lr=[0.0,0.1]"], "study.lr[0]=0.0 is invalid"),
    ("lr-nan", ["study.lr=[nan,0.1]"], "study.lr[0]=nan is invalid"),
    ("weight-decay-reversed", ["study.weight_decay=[0.5,0.1]"], "low <= high"),
    ("batch-size-zero", ["study.batch_sizes=[0]"], "study.batch_sizes=0 is invalid"),
    ("unknown-sampler", ["study.sampler=cmaes"], "study.sampler='cmaes' is invalid"),
    ("unknown-variant", ["hypernet.variant=huge"], "hypernet.variant='huge' is invalid"),
    ("unknown-device", ["device=tpu"], "device='tpu' is invalid"),
    ("zero-workers", ["workers=0"], "workers=0 is invalid"),
    ("study-name-path", ["study_name=../../etc"], "study_name='../../etc' is invalid"),
    ("heads-not-dividing-width", ["space.heads=[3]"], "space.heads=(3,) is invalid"),
    ("patch-not-dividing-image", ["space.patch_sizes=[3]"], "space.patch_sizes=(3,) is invalid"),
    ("unknown-data-option", ["data.options.colour=1"], "data.options.colour"),
    ("storage-not-a-url", ["storage=not a url"], "storage='not a url' is invalid"),
]
# Cases that replace the group choices (so the TINY ViT ranges do not apply).
GROUP_CASES = [
    ("unknown-space", ["space=resnet"], "space='resnet' is invalid: allowed one of ['gpt2', 'vit']"),
    ("unknown-data", ["data=imagenet"], "data='imagenet' is invalid"),
    ("image-data-with-gpt2", ["space=gpt2", "data=digits"], "data='digits' is invalid: allowed a text dataset"),
    ("text-data-with-vit", ["space=vit", "data=pytext"], "data='pytext' is invalid: allowed an image dataset"),
    ("cifar-path-missing", ["data=cifar10", "data.options.path=/nonexistent/cifar"], "/nonexistent/cifar"),
    ("wikitext-path-missing", ["space=gpt2", "data=wikitext103", "data.options.path=/nonexistent/wt"],
     "/nonexistent/wt"),
]
WORKER_CASES = [
    ("worker-changes-space", ["space=gpt2"], "space='gpt2' is invalid"),
    ("worker-changes-training", ["study.steps=1"], "study.steps='1' is invalid"),
    ("worker-unknown-study", ["study_name=nope"], "study_name='nope' is invalid"),
]


def _fingerprint(url: str, study_name: str):
    import optuna

    from nas.storage import make_storage
    from nas.versions import list_versions

    storage = make_storage(url, heartbeat_interval=None)
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage))
    study = optuna.load_study(study_name=study_name, storage=storage)
    trials = [(t.number, t.state.name, t.value, t.params) for t in study.get_trials(deepcopy=False)]
    return names, trials, [(v.version, v.sha256) for v in list_versions(url, study_name)]


@pytest.fixture(scope="module")
def victim(tmp_path_factory):
    """A live study with two completed trials that every bad command is aimed at."""
    from nas.study import run_trials

    tmp = tmp_path_factory.mktemp("victim")
    url = sqlite_url(tmp)
    cfg, session = create_study(tmp, url, "n_trials=2", "study.control_fraction=0.5")
    run_trials(session)
    before = _fingerprint(url, cfg.study_name)
    assert len([t for t in before[1] if t[1] == "COMPLETE"]) == 2
    STATS["trials"] += len(before[1])
    return tmp, url, cfg.study_name, before


def _cli(argv: list[str], capsys) -> tuple[int, str]:
    from nas.cli import main

    capsys.readouterr()
    code = main(argv)
    return code, capsys.readouterr().err


def _assert_one_line_error(code: int, err: str, needle: str, expected_code: int = 2) -> None:
    assert code == expected_code, err
    assert needle in err, err
    assert err.startswith("logah-nas") and err.count("\n") == 1 and "Traceback" not in err, err


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv("LOGAH_DEBUG", raising=False)


@pytest.mark.parametrize("extra, needle", [pytest.param(e, n, id=i) for i, e, n in CONFIG_CASES])
def test_bad_config_names_the_field_and_leaves_the_study_intact(victim, extra, needle, capsys):
    tmp, url, name, before = victim
    code, err = _cli(["search", *overrides(tmp, url, *extra)], capsys)
    _assert_one_line_error(code, err, needle)
    assert _fingerprint(url, name) == before
    STATS["bad_inputs"] += 1


@pytest.mark.parametrize("extra, needle", [pytest.param(e, n, id=i) for i, e, n in GROUP_CASES])
def test_bad_group_choice_names_the_field_and_leaves_the_study_intact(victim, extra, needle, capsys):
    tmp, url, name, before = victim
    code, err = _cli(["search", f"storage={url}", f"artifacts_dir={tmp}/artifacts", "device=cpu", *extra], capsys)
    _assert_one_line_error(code, err, needle)
    assert _fingerprint(url, name) == before
    STATS["bad_inputs"] += 1


@pytest.mark.parametrize("extra, needle", [pytest.param(e, n, id=i) for i, e, n in WORKER_CASES])
def test_bad_worker_override_is_refused_before_joining(victim, extra, needle, capsys, monkeypatch):
    tmp, url, name, before = victim
    monkeypatch.setenv("LOGAH_NAS_STORAGE", url)
    code, err = _cli(["worker", f"study_name={name}", *extra], capsys)
    _assert_one_line_error(code, err, needle)
    assert _fingerprint(url, name) == before
    STATS["bad_inputs"] += 1


def test_unknown_storage_dialect_is_a_config_error(tmp_path, capsys):
    code, err = _cli(["search", *overrides(tmp_path, "foodb://alice:Hunter2Secret@host/db")], capsys)
    assert "Hunter2Secret" not in err
    STATS["bad_inputs"] += 1
    _assert_one_line_error(code, err, "storage=")


def test_unreachable_database_error_is_clear_and_masks_the_password(tmp_path, capsys):
    url = "postgresql+psycopg://alice:Hunter2Secret@127.0.0.1:1/db"
    code, err = _cli(["search", *overrides(tmp_path, url)], capsys)
    _assert_one_line_error(code, err, "could not open the study storage postgresql+psycopg://alice:***@127.0.0.1:1/db",
                           expected_code=1)
    assert "Hunter2Secret" not in err and "Connection refused" in err
    STATS["bad_inputs"] += 1


# ---- damaged files ----------------------------------------------------------------------

class _Evil:
    """Unpickling this runs `touch <marker>`: proof that a loader executed file content."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A valid checkpoint for the TINY ViT space, and damaged variants of it."""
    import torch
    from safetensors.torch import save_file

    from hypernet import LoGAH, LoGAHConfig, save_checkpoint
    from nas.config import compose
    from search_spaces import get_space

    tmp = tmp_path_factory.mktemp("ckpt")
    cfg = compose(overrides(tmp, sqlite_url(tmp)))
    space = cfg.make_space(image_size=8, channels=1, num_classes=10)
    good = tmp / "good.safetensors"
    save_checkpoint(LoGAH(LoGAHConfig(variant="tiny", space_signature=space.signature())), good, {"v": 0})
    blob = good.read_bytes()
    files = {"good": good}

    def put(name: str, data: bytes) -> None:
        files[name] = tmp / f"{name}.safetensors"
        files[name].write_bytes(data)

    put("truncated", blob[: len(blob) // 2])
    put("header-only", blob[: 8 + int.from_bytes(blob[:8], "little")])
    flipped = bytearray(blob)
    flipped[-100] ^= 0xFF
    put("bit-flipped", bytes(flipped))
    put("empty", b"")
    put("pickle", pickle.dumps(_Evil(tmp / "PWNED")))
    put("torch-save", b"")
    torch.save({"x": _Evil(tmp / "PWNED")}, files["torch-save"])
    files["plain-safetensors"] = tmp / "plain.safetensors"
    save_file({"w": torch.zeros(3)}, str(files["plain-safetensors"]))
    other = get_space("gpt2", vocab_size=256)
    files["other-space"] = tmp / "gpt2.safetensors"
    save_checkpoint(LoGAH(LoGAHConfig(variant="tiny", space_signature=other.signature())), files["other-space"])
    return tmp, files, space


CHECKPOINT_CASES = [
    ("truncated", "checksum mismatch"),
    ("header-only", "checksum mismatch"),
    ("bit-flipped", "checksum mismatch"),
    ("empty", "file is truncated (0 bytes)"),
    ("pickle", "not safetensors"),
    ("torch-save", "not safetensors"),
    ("plain-safetensors", "not a logah-nas hypernet checkpoint"),
    ("other-space", "checkpoint is for search space"),
    ("missing", "checkpoint file not found"),
]


@pytest.mark.parametrize("kind, needle", CHECKPOINT_CASES, ids=[k for k, _ in CHECKPOINT_CASES])
def test_damaged_hypernet_checkpoint_is_refused_with_a_clear_error(checkpoints, kind, needle, capsys):
    from hypernet import CheckpointError, load_checkpoint

    tmp, files, space = checkpoints
    path = files.get(kind, tmp / "does-not-exist.safetensors")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, expected_signature=space.signature())
    assert needle in str(info.value) and str(path) in str(info.value)
    # the same file given to the CLI: one line, exit code 2, no study with a broken version 0
    url = sqlite_url(tmp / kind)
    code, err = _cli(["search", *overrides(tmp / kind, url, f"hypernet.checkpoint={path}")], capsys)
    _assert_one_line_error(code, err, needle)
    from nas.versions import list_versions

    assert list_versions(url, "vit-digits") == []
    if (tmp / kind / "study.db").exists():  # no half-created study either: the checkpoint is checked first
        import optuna

        assert optuna.get_all_study_names(storage=url) == []
    assert not (tmp / "PWNED").exists(), "a checkpoint loader executed pickled code"
    STATS["bad_inputs"] += 1


@pytest.mark.parametrize("content", ["malicious-pickle", "truncated-pickle", "not-a-dict"])
def test_bad_cifar_files_are_refused_without_running_code(tmp_path, content, capsys):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    marker = tmp_path / "PWNED"
    payload = {"malicious-pickle": pickle.dumps({b"data": _Evil(marker)}),
               "truncated-pickle": pickle.dumps({b"data": list(range(100))})[:40],
               "not-a-dict": pickle.dumps([1, 2, 3])}[content]
    for f in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
              "batches.meta"):
        (folder / f).write_bytes(payload)
    code, err = _cli(["search", "data=cifar10", f"data.options.path={folder}", f"storage={sqlite_url(tmp_path)}",
                      f"artifacts_dir={tmp_path}/artifacts", "device=cpu"], capsys)
    assert not marker.exists(), "the CIFAR loader executed pickled code"
    assert code != 0 and err.count("\n") == 1 and "Traceback" not in err, err
    STATS["bad_inputs"] += 1
    # what a user needs to act on: which data set and which file
    assert "cifar10" in err and "data_batch_1" in err, err


# ---- bad trials: the study keeps going ----------------------------------------------------

@pytest.mark.parametrize("safety_batches", [0, 2])
def test_nan_predictions_fail_their_trials_with_a_reason_and_the_study_goes_on(tmp_path, safety_batches):
    """A hypernet whose predictions are NaN (a refit gone wrong). Without the safety net, warm trials
    diverge at step 0 and FAIL with the reason recorded; with it (the default), they are replaced by
    their init before training and say so. Random-init controls complete; the study finishes."""
    import torch

    from hypernet import LoGAH, LoGAHConfig, save_checkpoint
    from nas.config import compose
    from nas.study import run_trials

    space = compose(overrides(tmp_path, sqlite_url(tmp_path))).make_space(image_size=8, channels=1, num_classes=10)
    hn = LoGAH(LoGAHConfig(variant="tiny", space_signature=space.signature()))
    with torch.no_grad():
        for p in hn.parameters():
            p.fill_(float("nan"))
    bad = tmp_path / "nan.safetensors"
    save_checkpoint(hn, bad, {"note": "all NaN"})
    cfg, session = create_study(tmp_path, sqlite_url(tmp_path), f"hypernet.checkpoint={bad}", "n_trials=2",
                                "study.control_fraction=0.5", "study.max_consecutive_failures=3",
                                f"study.safety_batches={safety_batches}")
    guard = run_trials(session)
    states = trials_by_state(session.study)
    STATS["trials"] += len(session.study.trials)
    STATS["bad_inputs"] += 1
    if safety_batches:
        assert not guard.tripped and not states["FAIL"] and not states["RUNNING"]
        warm = [t for t in states["COMPLETE"] if t.user_attrs["warm_start"]]
        assert warm and all(t.user_attrs["safety"]["outcome"] == "replaced" for t in warm)
        assert all(t.user_attrs["safety"]["predicted_loss"] is None for t in warm)  # NaN is stored as None
        return
    assert not guard.tripped and len(states["COMPLETE"]) == 2 and not states["RUNNING"]
    assert states["FAIL"], "warm trials from a NaN hypernet must fail"
    for t in states["FAIL"]:
        assert t.user_attrs["warm_start"] is True
        assert t.user_attrs["fail_reason"].startswith("diverged: non-finite"), t.user_attrs["fail_reason"]
        assert "weights_artifact_id" not in t.user_attrs
    assert all(t.user_attrs["warm_start"] is False for t in states["COMPLETE"])


def test_oversized_configs_are_pruned_with_a_reason_without_being_allocated(tmp_path):
    """Width 4096 ViTs (134M parameters, 540 MB) next to width-32 ones, max_params=200k: the big
    ones are PRUNED before `build_model`, so the process never grows by their size."""
    from nas.study import run_trials

    cfg, session = create_study(tmp_path, sqlite_url(tmp_path), "space.width=[32,4096,4064]", "space.depth=[1,1]",
                                "n_trials=6", "study.max_params=200000", "study.control_fraction=0.0")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    run_trials(session)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    states = trials_by_state(session.study)
    STATS["trials"] += len(session.study.trials)
    STATS["bad_inputs"] += 1
    assert states["PRUNED"] and states["COMPLETE"] and not states["FAIL"], {k: len(v) for k, v in states.items()}
    for t in states["PRUNED"]:
        assert t.user_attrs["config"]["width"] == 4096 and t.user_attrs["n_params"] > 100_000_000
        assert "exceeds study.max_params=200,000" in t.user_attrs["fail_reason"]
        assert "weights_artifact_id" not in t.user_attrs
    assert grown_mib < 400, f"peak RSS grew by {grown_mib:.0f} MiB: an oversized model was allocated"


# ---- export -------------------------------------------------------------------------------

def test_export_of_a_study_without_a_completed_trial_says_so(tmp_path, capsys):
    cfg, _ = create_study(tmp_path, sqlite_url(tmp_path))
    code, err = _cli(["export", *overrides(tmp_path, sqlite_url(tmp_path))], capsys)
    _assert_one_line_error(code, err, "has none yet")
    assert not (tmp_path / "exports").exists() or not any((tmp_path / "exports").iterdir())
    STATS["bad_inputs"] += 1


def test_export_of_unknown_or_unfinished_trials_names_the_valid_ones(victim, capsys):
    tmp, url, name, before = victim
    complete = [n for n, state, _, _ in before[1] if state == "COMPLETE"]
    for argv, needle in ((["trial=999"], f"trial=999 is invalid: allowed a completed trial of study {name!r}"),
                         (["study_name=nope"], "study_name='nope' is invalid")):
        code, err = _cli(["export", *overrides(tmp, url, *argv)], capsys)
        _assert_one_line_error(code, err, needle)
        STATS["bad_inputs"] += 1
    assert str(complete) in _cli(["export", *overrides(tmp, url, "trial=999")], capsys)[1]
    assert _fingerprint(url, name) == before


@pytest.mark.parametrize("damage", ["truncated", "wrong-tensors"])
def test_export_of_a_corrupt_trial_artifact_fails_clearly_and_writes_nothing(tmp_path, damage, capsys):
    import torch
    from safetensors.torch import save_file

    from nas.study import best_trial, run_trials

    cfg, session = create_study(tmp_path, sqlite_url(tmp_path), "n_trials=1", "study.control_fraction=1.0")
    run_trials(session)
    STATS["trials"] += len(session.study.trials)
    best = best_trial(session.study)
    artifact = tmp_path / "artifacts" / best.user_attrs["weights_artifact_id"]
    if damage == "truncated":
        artifact.write_bytes(artifact.read_bytes()[:100])
    else:
        save_file({"not_a_param": torch.zeros(2)}, str(artifact))
    code, err = _cli(["export", *overrides(tmp_path, sqlite_url(tmp_path))], capsys)
    STATS["bad_inputs"] += 1
    assert code != 0 and err.count("\n") == 1 and "Traceback" not in err, err
    exports = tmp_path / "exports"
    assert not exports.exists() or not any(exports.iterdir()), "a half export was left behind"
    assert f"trial {best.number}" in err, err  # which trial's weights are broken


def test_tiny_overrides_are_valid(tmp_path):
    """Guard for this file: the base overrides themselves compose (else every case above is moot)."""
    from nas.config import compose

    assert compose(overrides(tmp_path, sqlite_url(tmp_path))).study.steps == 4
    assert "study=quick" in TINY
