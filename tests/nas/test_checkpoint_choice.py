"""A study starts only from a checkpoint that never saw its val or test examples."""
from __future__ import annotations

import pytest
from _nas_tiny import tiny_config

from nas.checkpoint_choice import check_given, choose_shipped, seen_examples
from nas.data import data_fingerprint, load_dataset
from search_spaces import ConfigError, get_space


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _signature(dataset):
    return get_space("vit", **dataset.space_options()).signature()


def test_the_shipped_checkpoints_saw_none_of_the_default_val_and_test_examples(digits):
    from hypernet import read_header

    choice = choose_shipped(_signature(digits), digits)
    assert choice.path is not None and choice.path.name == "vit_digits.safetensors"
    assert seen_examples(read_header(choice.path)["meta"], digits) == {"val": 0, "test": 0}
    text = load_dataset("pytext")
    gpt2 = choose_shipped(get_space("gpt2", **text.space_options()).signature(), text)
    assert gpt2.path is not None and gpt2.path.name == "gpt2_pytext.safetensors"


def test_another_split_of_the_same_data_is_refused_with_the_reason():
    """With another seed the digits val/test splits are drawn from the shipped file's train examples."""
    reshuffled = load_dataset("digits", seed=1)
    choice = choose_shipped(_signature(reshuffled), reshuffled)
    assert choice.path is None
    assert "vit_digits.safetensors was meta-trained on" in choice.note and "val and" in choice.note


def test_a_checkpoint_of_other_data_is_not_chosen(tmp_path, digits):
    from hypernet import LoGAH, LoGAHConfig, save_checkpoint

    save_checkpoint(LoGAH(LoGAHConfig(variant="tiny", space_signature=_signature(digits))), tmp_path / "a.safetensors",
                    {"data": "cifar10"})
    choice = choose_shipped(_signature(digits), digits, directory=tmp_path)
    assert choice.path is None and "data=cifar10" in choice.note


def test_a_given_checkpoint_that_saw_val_examples_is_a_config_error(digits):
    leaky = data_fingerprint(load_dataset("digits", seed=3))
    with pytest.raises(ConfigError) as err:
        check_given("mine.safetensors", {"data_fingerprint": leaky}, digits)
    assert err.value.field == "hypernet.checkpoint" and "val and" in str(err.value)
    check_given("mine.safetensors", {"data_fingerprint": data_fingerprint(digits)}, digits)  # its own train: fine
    check_given("mine.safetensors", {}, digits)  # no fingerprint: nothing to check


def test_a_study_on_another_split_starts_from_a_random_hypernet_and_says_why(tmp_path):
    from nas.study import open_session
    from nas.versions import list_versions

    cfg = tiny_config(tmp_path, "hypernet.checkpoint=auto", "space.depth=[1,6]", "space.width=[32,128,16]",
                      "space.heads=[2,4]", "space.patch_sizes=[2,4]", "space.mlp_ratios=[2.0,4.0]",
                      "data.options.seed=1", "n_trials=1", "hypernet.screen_candidates=0")
    session = open_session(cfg, create=True)
    v0 = list_versions(session.storage.engine, cfg.study_name)[0]
    assert v0.note.startswith("random init LoGAH-tiny") and "val and" in v0.note and "test examples" in v0.note


@pytest.mark.parametrize("space, data", [("vit", "digits"), ("gpt2", "pytext")])
def test_the_default_configs_start_from_the_shipped_checkpoints(space, data):
    """The README's commands: the yaml's data options split val/test off the examples the shipped
    hypernets never saw."""
    from nas.config import compose

    cfg = compose([f"space={space}", f"data={data}"])
    dataset = cfg.data.load()
    choice = choose_shipped(cfg.make_space(**dataset.space_options()).signature(), dataset)
    assert choice.path is not None, choice.note
