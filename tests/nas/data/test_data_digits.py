"""The embedded image dataset and the load_dataset entry point."""
import pytest
import torch

from nas.data import DATASETS, ImageDataset, dataset_options, load_dataset
from search_spaces import ConfigError, ViTSpace, get_space


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_digits_split_shapes_and_space(digits):
    assert isinstance(digits, ImageDataset) and digits.kind == "image" and digits.name == "digits"
    sizes = tuple(digits.num_examples(s) for s in ("train", "val", "test"))
    assert sizes == (1438, 179, 180)  # 80/10/10 of 1,797
    assert digits.space_options() == {"image_size": 8, "channels": 1, "num_classes": 10}
    assert get_space("vit", **digits.space_options()) == ViTSpace()  # the default space fits the default data


def test_digits_normalised_with_train_statistics(digits):
    train = digits._normalise(digits._images["train"])
    assert abs(float(train.mean())) < 1e-4 and abs(float(train.std()) - 1) < 1e-3
    assert torch.allclose(digits.mean * 16, digits._images["train"].float().mean().reshape(1), atol=1e-4)
    x, y = digits.batch("val", 7, torch.Generator().manual_seed(0))
    assert x.shape == (7, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.long
    assert int(y.min()) >= 0 and int(y.max()) <= 9


def test_digits_split_is_seeded_and_disjoint():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert torch.equal(a._labels["val"], b._labels["val"]) and torch.equal(a._images["val"], b._images["val"])
    other = load_dataset("digits", seed=1, val_fraction=0.25, test_fraction=0.25)
    assert other.num_examples("val") + other.num_examples("test") == 898
    assert not torch.equal(other._images["val"][:50], a._images["val"][:50])
    train = a.example_digests("train")
    for split in ("val", "test"):  # sklearn digits has a few exact duplicates, nothing more
        assert len(a.example_digests(split) & train) < 5
    assert not a.example_digests("val") & a.example_digests("test")


def test_the_train_split_is_the_two_way_split_of_the_held_out_share():
    """Train with val_fraction v and test_fraction t is exactly the train of a v + t hold-out, so a
    hypernet meta-trained on it never saw a val or test example (the checkpoint guard relies on it)."""
    from nas.data._base import heldout_split, split_sizes

    perm = torch.randperm(1797, generator=torch.Generator().manual_seed(0))
    train, val, test = heldout_split(perm, 0.1, 0.1)
    n_train, _ = split_sizes(1797, 0.2)
    assert torch.equal(train, perm[:n_train]) and torch.equal(torch.cat([train, val, test]), perm)


def test_val_batches_cover_the_split_in_order(digits):
    batches = list(digits.val_batches(100))
    assert [len(y) for _, y in batches] == [100, 79]
    assert torch.equal(torch.cat([y for _, y in batches]), digits._labels["val"])
    test = list(digits.val_batches(100, split="test"))
    assert torch.equal(torch.cat([y for _, y in test]), digits._labels["test"])
    with pytest.raises(ConfigError, match="split"):
        list(digits.val_batches(100, split="train"))
    assert len(list(digits.val_batches(100, limit=2))) == 2
    first = next(iter(digits.val_batches(100)))[0]
    assert torch.equal(first, batches[0][0])


def test_batch_draws_depend_only_on_the_generator(digits):
    x1, y1 = digits.batch("train", 16, torch.Generator().manual_seed(5))
    x2, y2 = digits.batch("train", 16, torch.Generator().manual_seed(5))
    x3, _ = digits.batch("train", 16, torch.Generator().manual_seed(6))
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and not torch.equal(x1, x3)


def test_unknown_dataset_and_option():
    with pytest.raises(ConfigError) as err:
        load_dataset("mnist")
    assert err.value.field == "data"
    assert all(name in str(err.value) for name in DATASETS)
    with pytest.raises(ConfigError) as err:
        load_dataset("digits", batch_size=3)
    assert err.value.field == "batch_size" and "val_fraction" in str(err.value)
    for bad in (0.0, 1.0, -0.2, "half"):
        with pytest.raises(ConfigError) as err:
            load_dataset("digits", val_fraction=bad)
        assert err.value.field == "val_fraction" and "(0, 1)" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_dataset("digits", val_fraction=0.6, test_fraction=0.5)
    assert err.value.field == "test_fraction" and "train must not be empty" in str(err.value)
    assert dataset_options("digits") == {"val_fraction": 0.1, "test_fraction": 0.1, "seed": 0}
    assert set(DATASETS) == {"digits", "pytext", "cifar10", "cifar100", "wikitext103", "wikitext2", "textdir",
                             "imagefolder", "mnist5k"}
