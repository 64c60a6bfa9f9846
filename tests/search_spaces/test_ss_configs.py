"""Config validation names the field; to_dict/config_from_dict round-trip."""
import pytest

from search_spaces import (GPT2_S, VIT_B, ConfigError, GPT2Config, ViTConfig, config_from_dict, get_space)


@pytest.mark.parametrize("cls, kwargs, field", [
    (ViTConfig, dict(width=64, heads=5), "heads"),
    (GPT2Config, dict(width=64, heads=3), "heads"),
    (ViTConfig, dict(image_size=8, patch_size=3), "patch_size"),
    (ViTConfig, dict(depth=0), "depth"),
    (ViTConfig, dict(width=-8), "width"),
    (ViTConfig, dict(image_size=0), "image_size"),
    (ViTConfig, dict(num_classes=0), "num_classes"),
    (GPT2Config, dict(vocab_size=0), "vocab_size"),
    (GPT2Config, dict(context=0), "context"),
    (GPT2Config, dict(depth=2.0), "depth"),
    (ViTConfig, dict(mlp_ratio=0.0), "mlp_ratio"),
    (GPT2Config, dict(mlp_ratio=-1.0), "mlp_ratio"),
    (GPT2Config, dict(mlp_ratio=100.0), "mlp_ratio"),
    (GPT2Config, dict(width=4, heads=2, mlp_ratio=0.1), "mlp_ratio"),  # hidden size 0
    (ViTConfig, dict(dropout=1.5), "dropout"),
    (GPT2Config, dict(dropout=-0.1), "dropout"),
])
def test_invalid_config_names_the_field(cls, kwargs, field):
    with pytest.raises(ConfigError) as err:
        cls(**kwargs)
    assert err.value.field == field
    assert str(err.value).startswith(f"{field}=") and "allowed" in str(err.value)
    assert isinstance(err.value, ValueError)


def test_patch_error_lists_the_divisors():
    with pytest.raises(ConfigError, match=r"\[1, 2, 4, 8\]"):
        ViTConfig(image_size=8, patch_size=3)


@pytest.mark.parametrize("config", [VIT_B, GPT2_S, ViTConfig(class_token=False, dropout=0.1),
                                    GPT2Config(tied_embeddings=False, mlp_ratio=2.0)])
def test_round_trip(config):
    d = config.to_dict()
    assert d["space"] == config.space
    assert config_from_dict(d) == config
    assert d == config_from_dict(d).to_dict()


def test_config_from_dict_rejects_unknown_fields_and_spaces():
    d = ViTConfig().to_dict() | {"colour": "red"}
    with pytest.raises(ConfigError) as err:
        config_from_dict(d)
    assert err.value.field == "colour"
    with pytest.raises(ConfigError) as err:
        config_from_dict({"space": "resnet"})
    assert err.value.field == "space"
    with pytest.raises(ConfigError):
        config_from_dict({"depth": 2})  # no "space" key


def test_get_space_unknown_name():
    with pytest.raises(ConfigError) as err:
        get_space("resnet")
    assert err.value.field == "space" and "gpt2" in str(err.value) and "vit" in str(err.value)
