"""Checkpoints: one safetensors file, round trip, and a CheckpointError for every kind of bad file."""
import json
import pickle
import struct

import pytest
import torch

from hypernet import CheckpointError, LoGAH, LoGAHConfig, load_checkpoint, pretrained_path, read_header, save_checkpoint
from hypernet.checkpoint import FORMAT_NAME
from search_spaces import GPT2Space, ViTConfig, ViTSpace

SIG = ViTSpace().signature()


@pytest.fixture(scope="module")
def hn():
    torch.manual_seed(0)
    return LoGAH(LoGAHConfig(variant="tiny", hidden=32, heads=4, rank=8, space_signature=SIG))


@pytest.fixture
def saved(hn, tmp_path):
    path = tmp_path / "hn.safetensors"
    digest = save_checkpoint(hn, path, {"version": 3, "val_loss": 1.25})
    return path, digest


def test_round_trip(hn, saved):
    path, digest = saved
    assert list(path.parent.iterdir()) == [path]  # one file, no temporaries left behind
    loaded, meta = load_checkpoint(path, expected_signature=SIG)
    assert meta == {"version": 3, "val_loss": 1.25, "sha256": digest}
    assert loaded.config == hn.config
    for (k, a), (k2, b) in zip(hn.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    config = ViTConfig(depth=1)
    for k, v in hn.predict(config).items():
        torch.testing.assert_close(loaded.predict(config)[k], v)
    header = read_header(path)
    assert header["space_signature"] == SIG and header["config"]["rank"] == 8 and header["sha256"] == digest


def test_header_is_plain_json(saved):
    path, _ = saved
    blob = path.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    meta = json.loads(blob[8: 8 + n])["__metadata__"]
    assert meta["format"] == FORMAT_NAME and json.loads(meta["space_signature"]) == SIG


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.safetensors")


@pytest.mark.parametrize("keep", [0, 5, 100, -10])
def test_truncated_file(saved, keep):
    path, _ = saved
    blob = path.read_bytes()
    path.write_bytes(blob[:keep] if keep >= 0 else blob[:keep])
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_corrupt_payload_fails_checksum(saved):
    path, _ = saved
    blob = bytearray(path.read_bytes())
    blob[-3] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(path)


def test_corrupt_header(saved):
    path, _ = saved
    blob = bytearray(path.read_bytes())
    blob[9] = ord("#")
    path.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)


def test_wrong_format(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="not a logah-nas hypernet"):
        load_checkpoint(path)
    pkl = tmp_path / "model.pt"
    pkl.write_bytes(pickle.dumps({"w": 1}))
    with pytest.raises(CheckpointError):
        load_checkpoint(pkl)


def test_other_search_space(saved):
    path, _ = saved
    with pytest.raises(CheckpointError, match="search space"):
        load_checkpoint(path, expected_signature=GPT2Space().signature())


def test_pretrained_path(hn, tmp_path):
    (tmp_path / "junk.safetensors").write_bytes(b"garbage")
    save_checkpoint(hn, tmp_path / "vit.safetensors", {})
    assert pretrained_path(SIG, directory=tmp_path) == tmp_path / "vit.safetensors"
    assert pretrained_path(GPT2Space().signature(), directory=tmp_path) is None
    assert pretrained_path({"space": "nothing"}) is None  # the shipped folder, whatever it holds


def test_checkpoint_from_before_residual_prediction_loads_as_pure_low_rank(tmp_path, monkeypatch):
    """Files written before `LoGAHConfig.residual` existed hold pure low-rank hypernets (no gains):
    their config has no `residual` key, so they load with residual=False and predict as before."""
    from dataclasses import asdict

    torch.manual_seed(0)
    old = LoGAH(LoGAHConfig(variant="tiny", hidden=32, heads=4, rank=8, residual=False, space_signature=SIG))
    monkeypatch.setattr(LoGAHConfig, "to_dict", lambda self: {k: v for k, v in asdict(self).items() if k != "residual"})
    path = tmp_path / "old.safetensors"
    save_checkpoint(old, path)
    monkeypatch.undo()
    assert "residual" not in read_header(path)["config"]
    loaded, _ = load_checkpoint(path)
    assert loaded.config.residual is False and not hasattr(loaded.decoder, "gain")
    config = ViTConfig(depth=1)
    for k, v in old.predict(config).items():
        torch.testing.assert_close(loaded.predict(config)[k], v)


def test_residual_checkpoint_keeps_its_gains(tmp_path):
    torch.manual_seed(0)
    hn = LoGAH(LoGAHConfig(variant="tiny", hidden=32, heads=4, rank=8, space_signature=SIG))
    with torch.no_grad():
        hn.decoder.gain.normal_()
    save_checkpoint(hn, tmp_path / "r.safetensors")
    loaded, _ = load_checkpoint(tmp_path / "r.safetensors")
    assert loaded.config.residual is True and torch.equal(loaded.decoder.gain, hn.decoder.gain)
    # a residual state dict in a file that claims to be pure low-rank cannot be restored
    bad = LoGAH(LoGAHConfig(variant="tiny", hidden=32, heads=4, rank=8, residual=False, space_signature=SIG))
    with pytest.raises(RuntimeError):
        bad.load_state_dict(hn.state_dict(), strict=True)
