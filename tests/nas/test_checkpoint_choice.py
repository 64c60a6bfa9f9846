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


def _images(name: str, size: int, class_names: list[str] | None):
    import torch

    from nas.data import ImageDataset

    g = torch.Generator().manual_seed(size)
    split = lambda n: (torch.randint(0, 256, (n, 1, size, size), dtype=torch.uint8, generator=g),  # noqa: E731
                       torch.arange(n) % 10)
    return ImageDataset(name, split(40), split(20), split(20), num_classes=10, scale=255.0, class_names=class_names)


def test_data_no_checkpoint_matches_gets_the_closest_of_its_kind_transferred():
    """LoGAH section 5.4: 12x12 images of the digits 0-9 start from the digits hypernet with the
    positional table (another patch grid) and the classifier (another data set's features, even with
    the same labels) left at init; a 1-channel 8x8 set of another name loses only the classifier."""
    scans = _images("scans", 12, [str(d) for d in range(10)])
    choice = choose_shipped(_signature(scans), scans)
    assert choice.path.name == "vit_digits.safetensors" and choice.transfer
    assert choice.keep_init == {"pos_embed": "image_size 8 -> 12", "head": "a classifier for data=digits"}
    assert choice.note.startswith("transferred from vit_digits-v") and "pos_embed (image_size 8 -> 12)" in choice.note

    small = _images("letters", 8, list("abcdefghij"))
    choice = choose_shipped(_signature(small), small)
    assert choice.keep_init == {"head": "a classifier for data=digits"}


def test_a_byte_corpus_the_shipped_gpt2_never_saw_transfers_whole():
    import torch

    from nas.data import TextDataset

    tokens = lambda seed: torch.randint(0, 256, (5000,), generator=torch.Generator().manual_seed(seed))  # noqa: E731
    text = TextDataset("textdir", tokens(0), tokens(1), tokens(2), vocab_size=256, context=64)
    choice = choose_shipped(get_space("gpt2", **text.space_options()).signature(), text)
    assert choice.path.name == "gpt2_pytext.safetensors" and choice.keep_init == {}
    assert "every part transfers" in choice.note


def test_a_study_on_new_data_records_its_transferred_version_0(tmp_path, monkeypatch):
    """The versions table says where version 0 came from and what it left at init; the hypernet the
    workers load predicts the study's space with those parts at the standard init."""
    from nas.hypernets import initial_hypernet
    from nas.config import compose

    data = _images("scans", 12, [str(d) for d in range(10)])
    cfg = compose(["space=vit", "data=digits"])
    space = cfg.make_space(**data.space_options())
    initial = initial_hypernet(cfg.hypernet, space, data)
    assert initial.hn.config.space_signature == space.signature()
    assert initial.hn.config.keep_init == ("head", "pos_embed")
    assert initial.note.startswith("transferred from vit_digits-v") and not initial.pretrained
    config = space.sample(__import__("random").Random(0))
    got = initial.hn.predict(config)
    assert got["pos_embed"].equal(initial.hn.base_init(config)["pos_embed"])


def test_a_given_checkpoint_of_another_data_name_that_holds_the_study_s_examples_is_refused():
    """Content, not names: a byte corpus whose held-out files the checkpoint learned from (pytext's
    train files read as another data set) is refused when given by path too."""
    import torch

    from nas.data import TextDataset

    pytext = load_dataset("pytext")
    train = pytext._tokens["train"]
    starts = pytext._documents["train"]
    first_file = train[starts[0]:starts[1]]
    other = TextDataset("textdir", torch.randint(0, 256, (4000,)), first_file, first_file, vocab_size=256,
                        context=64, documents={"val": [0], "test": [0]})
    meta = {"data": "pytext", "data_fingerprint": data_fingerprint(pytext)}
    with pytest.raises(ConfigError) as err:
        check_given("gpt2_pytext.safetensors", meta, other)
    assert "saw 1 val and 1 test examples" in str(err.value)
