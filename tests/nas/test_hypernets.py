"""Version 0 across studies: one stored copy per checkpoint content, identity-scoped versions."""
from __future__ import annotations

import optuna
from _nas_tiny import tiny_config

from nas.hypernets import HypernetCache, load_version
from nas.study import open_session
from nas.versions import list_versions


def _checkpoint(tmp_path):
    """A checkpoint given by path (no data fingerprint: accepted for any data of its space)."""
    from hypernet import LoGAH, LoGAHConfig, save_checkpoint
    from search_spaces import ViTSpace

    path = tmp_path / "given.safetensors"
    save_checkpoint(LoGAH(LoGAHConfig(variant="tiny", space_signature=ViTSpace().signature())), path, {})
    return path


def test_two_studies_uploading_the_shipped_checkpoint_store_one_copy(tmp_path):
    from hypernet import load_checkpoint, pretrained_path
    from nas.hypernets import upload_checkpoint
    from nas.storage import make_artifact_store

    store = make_artifact_store(tmp_path / "artifacts")
    hn, _ = load_checkpoint(pretrained_path({"space": "vit", "image_size": 8, "channels": 1, "num_classes": 10}))
    uploaded = []
    for name in ("a", "b"):
        study = optuna.create_study(study_name=name, storage=f"sqlite:///{tmp_path}/s.db")
        uploaded.append(upload_checkpoint(hn, study, store, {"version": 0}))
        assert [m.artifact_id for m in optuna.artifacts.get_all_artifact_meta(study)] == [uploaded[-1][0]]
    assert uploaded[0] == uploaded[1]
    files = [p for p in (tmp_path / "artifacts").rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].stat().st_size > 1_000_000  # the ~7 MB checkpoint, once


def test_two_studies_from_one_checkpoint_share_version_0s_artifact(tmp_path):
    given = _checkpoint(tmp_path)
    sessions = [open_session(tiny_config(tmp_path, f"study_name={name}", f"hypernet.checkpoint={given}"), create=True)
                for name in ("a", "b")]
    files = [p for p in (tmp_path / "artifacts").rglob("*") if p.is_file()]
    assert len(files) == 1
    (va,), (vb,) = (list_versions(s.storage.engine, s.cfg.study_name) for s in sessions)
    assert va.artifact_id == vb.artifact_id and va.sha256 == vb.sha256 and "given.safetensors" in va.note
    for s, v in zip(sessions, (va, vb)):
        assert load_version(v, s.storage.artifacts) is not None  # checksum-verified
        listed = optuna.artifacts.get_all_artifact_meta(s.study)  # Optuna still lists it for each study
        assert [m.artifact_id for m in listed] == [v.artifact_id] and listed[0].filename.endswith(".safetensors")


def test_a_recreated_study_gets_its_own_version_0(tmp_path):
    """`optuna.delete_study` + a new study of the same name: the old versions never reach it."""
    first = open_session(tiny_config(tmp_path), create=True)
    (old,) = list_versions(first.storage.engine, first.cfg.study_name)
    optuna.delete_study(study_name=first.cfg.study_name, storage=first.storage.optuna)
    second = open_session(tiny_config(tmp_path, "seed=1"), create=True)  # another seed: another random hypernet
    (new,) = list_versions(second.storage.engine, second.cfg.study_name)
    assert new.artifact_id != old.artifact_id and new.version == 0
    assert new.study_uid == second.study.user_attrs["study_uid"] != old.study_uid
    version, _ = HypernetCache(second.storage, second.cfg.study_name).latest()
    assert version.artifact_id == new.artifact_id


def test_a_random_version_0_is_drawn_from_the_study_seed_and_leaves_the_global_rng_alone():
    """A study rerun with its seed starts from the same untrained hypernet, so its refits repeat."""
    import torch

    from nas.config import compose
    from nas.hypernets import initial_hypernet

    cfg = compose(["space=vit", "data=digits", "hypernet.checkpoint=none"])
    space = cfg.make_space(**cfg.data.load().space_options())
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first, again, other = (initial_hypernet(cfg.hypernet, space, seed=s).hn.state_dict() for s in (7, 7, 8))
    assert torch.rand(3).equal(expected_next)  # the caller's RNG stream is where it was
    assert first.keys() == again.keys() and all(first[k].equal(again[k]) for k in first)
    assert any(not first[k].equal(other[k]) for k in first if first[k].is_floating_point())


def test_a_study_rerun_with_its_seed_records_the_same_refits(tmp_path):
    """Two identical searches (version 0 untrained, refits in the worker) record byte-identical versions."""
    from nas.study import run_trials

    shas = []
    for run in ("a", "b"):
        cfg = tiny_config(tmp_path / run, "hypernet.refit_every=2", "hypernet.refit_in=worker", "n_trials=4")
        session = open_session(cfg, create=True)
        run_trials(session)
        shas.append([(v.version, v.sha256, v.val_loss) for v in list_versions(session.storage.engine, cfg.study_name)])
    assert len(shas[0]) >= 2 and shas[0] == shas[1]
