"""A hypernet moved to another space of its kind: every weight carries over, the data-bound parts it
names start at the standard init, and clearing them brings the prediction back."""
import pytest
import torch

from hypernet import LoGAH, LoGAHConfig, data_bound_parts, load_checkpoint, save_checkpoint, transfer
from hypernet.decoder import GAIN_SCALE
from search_spaces import ConfigError, GPT2Config, ViTConfig, build_model

DIGITS = {"space": "vit", "image_size": 8, "channels": 1, "num_classes": 10}
MNIST = {"space": "vit", "image_size": 28, "channels": 1, "num_classes": 10}


def _hypernet(signature) -> LoGAH:
    torch.manual_seed(0)
    hn = LoGAH(LoGAHConfig(variant="tiny", hidden=32, layers=1, heads=4, rank=8, space_signature=signature))
    with torch.no_grad():  # a non-zero correction everywhere, as a trained hypernet has
        hn.decoder.gain.copy_(torch.linspace(-0.8, 0.8, hn.decoder.gain.numel()) / GAIN_SCALE)
        hn.decoder.key_to_features.weight.normal_(std=0.05)
    return hn.eval()


def _mnist_vit() -> ViTConfig:
    return ViTConfig(image_size=28, channels=1, num_classes=10, patch_size=7, depth=2, width=32, heads=4)


def test_data_bound_parts_name_what_each_signature_change_breaks():
    assert data_bound_parts(DIGITS, MNIST) == {"pos_embed": "image_size 8 -> 28"}
    cifar = {"space": "vit", "image_size": 32, "channels": 3, "num_classes": 100}
    assert set(data_bound_parts(DIGITS, cifar)) == {"pos_embed", "patch_embed", "head"}
    assert data_bound_parts(DIGITS, DIGITS) == {}
    bytes64 = {"space": "gpt2", "vocab_size": 256, "context": 64}
    assert data_bound_parts(bytes64, {**bytes64, "vocab_size": 50257}) == {
        "wte": "vocab_size 256 -> 50257", "lm_head": "vocab_size 256 -> 50257"}
    assert data_bound_parts(bytes64, {**bytes64, "context": 128}) == {"wpe": "context 64 -> 128"}
    with pytest.raises(ConfigError) as err:
        data_bound_parts(DIGITS, bytes64)
    assert err.value.field == "space"


def test_a_transferred_hypernet_keeps_every_weight_and_leaves_the_named_parts_at_init(tmp_path):
    source = _hypernet(DIGITS)
    moved = transfer(source, MNIST, ["pos_embed", "head"])
    assert moved.config.space_signature == MNIST and moved.config.keep_init == ("head", "pos_embed")
    for (name, a), (_, b) in zip(source.state_dict().items(), moved.state_dict().items()):
        assert torch.equal(a, b), name
    config = _mnist_vit()
    with pytest.raises(ConfigError):  # the source still refuses the other space
        source.predict(config)
    got, w0 = moved.predict(config), moved.base_init(config)
    assert torch.equal(got["pos_embed"], w0["pos_embed"]) and torch.equal(got["head.weight"], w0["head.weight"])
    assert torch.equal(got["head.bias"], torch.zeros_like(got["head.bias"]))
    assert not torch.equal(got["patch_embed.weight"], w0["patch_embed.weight"])  # predicted as before
    applied = dict(moved.apply(build_model(config, seed=3)).named_parameters())
    for name, value in got.items():  # apply writes what predict returns, kept parts included
        assert torch.allclose(applied[name], value, atol=1e-6), name

    learned = transfer(moved, MNIST, ())  # what a refit does once it trained on the new data
    again = learned.predict(config)
    assert not torch.equal(again["head.weight"], w0["head.weight"])
    assert torch.equal(again["patch_embed.weight"], got["patch_embed.weight"])

    save_checkpoint(moved, tmp_path / "t.safetensors")
    loaded, _ = load_checkpoint(tmp_path / "t.safetensors")
    assert loaded.config.keep_init == ("head", "pos_embed")
    assert torch.equal(loaded.predict(config)["head.weight"], w0["head.weight"])


def test_a_byte_corpus_transfer_to_a_longer_context_resets_only_the_positions():
    bytes64 = {"space": "gpt2", "vocab_size": 256, "context": 64}
    bytes128 = {**bytes64, "context": 128}
    moved = transfer(_hypernet(bytes64), bytes128, data_bound_parts(bytes64, bytes128))
    config = GPT2Config(vocab_size=256, context=128, depth=1, width=32, heads=4)
    got, w0 = moved.predict(config), moved.base_init(config)
    assert torch.equal(got["wpe.weight"], w0["wpe.weight"])
    assert not torch.equal(got["wte.weight"], w0["wte.weight"])


def test_keep_init_is_validated():
    with pytest.raises(ConfigError) as err:
        LoGAHConfig(keep_init=("head", ""))
    assert err.value.field == "keep_init"
    with pytest.raises(ConfigError) as err:
        LoGAHConfig(keep_init=("head",), residual=False)
    assert err.value.field == "keep_init" and "non-residual" in str(err.value)
    assert LoGAHConfig.from_dict({**LoGAHConfig().to_dict(), "keep_init": ["wte"]}).keep_init == ("wte",)
