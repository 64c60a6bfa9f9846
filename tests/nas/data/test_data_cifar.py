"""CIFAR loaders on tiny fakes written in the exact official "python version" format
(Python 2 pickles: byte-string keys, numpy arrays named `numpy.core.multiarray._reconstruct`)."""
import io
import os
import pickle
import struct
import tarfile

import numpy as np
import pytest
import torch

from nas.data import load_dataset
from nas.data._safe_pickle import UnsafePickleError, load_numpy_pickle
from search_spaces import ConfigError, get_space


class _Py2Pickler(pickle._Pickler):
    """Writes bytes the way Python 2's cPickle wrote `str` (SHORT_BINSTRING / BINSTRING)."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_bytes(self, obj):
        n = len(obj)
        self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj if n < 256 else
                   pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes


def py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    # The official files were written by numpy 1.x, whose arrays live in numpy.core.
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def _batch(n, rng, label_key, num_classes):
    return {b"batch_label": b"training batch 1 of 5",
            label_key: [int(v) for v in rng.integers(0, num_classes, n)],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [b"img_%d.png" % i for i in range(n)]}


def fake_cifar10(root, n=6):
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    files = {f"data_batch_{i}": _batch(n, rng, b"labels", 10) for i in range(1, 6)}
    files["test_batch"] = _batch(n, rng, b"labels", 10)
    files["batches.meta"] = {b"num_cases_per_batch": n, b"num_vis": 3072,
                             b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog",
                                              b"frog", b"horse", b"ship", b"truck"]}
    for name, obj in files.items():
        (folder / name).write_bytes(py2_pickle(obj))
    return folder, files


def fake_cifar100(root, n=8):
    rng = np.random.default_rng(1)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    files = {}
    for split in ("train", "test"):
        b = _batch(n, rng, b"fine_labels", 100)
        b[b"coarse_labels"] = [v // 5 for v in b[b"fine_labels"]]
        files[split] = b
    files["meta"] = {b"fine_label_names": [b"class%d" % i for i in range(100)],
                     b"coarse_label_names": [b"super%d" % i for i in range(20)]}
    for name, obj in files.items():
        (folder / name).write_bytes(py2_pickle(obj))
    return folder, files


def _tar(folder, archive):
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return archive


def test_fake_matches_the_official_encoding(tmp_path):
    folder, _ = fake_cifar10(tmp_path)
    raw = (folder / "data_batch_1").read_bytes()
    assert raw.startswith(b"\x80\x02}") and b"cnumpy.core.multiarray\n_reconstruct" in raw
    assert b"U\x04data" in raw  # SHORT_BINSTRING key, as in the real files


@pytest.mark.parametrize("form", ["folder", "parent", "archive", "archive_in_parent"])
def test_cifar10_every_layout(tmp_path, form):
    folder, files = fake_cifar10(tmp_path / "src")
    path = {"folder": folder, "parent": folder.parent}.get(form)
    if form == "archive":
        path = _tar(folder, tmp_path / "cifar-10-python.tar.gz")
    elif form == "archive_in_parent":
        (tmp_path / "dl").mkdir()
        _tar(folder, tmp_path / "dl" / "cifar-10-python.tar.gz")
        path = tmp_path / "dl"
    ds = load_dataset("cifar10", path=str(path))
    assert ds.kind == "image" and (ds.num_examples("train"), ds.num_examples("val")) == (27, 3)  # 10 % of train
    assert ds.num_examples("test") == 6
    assert ds.space_options() == {"image_size": 32, "channels": 3, "num_classes": 10}
    assert ds.class_names[0] == "airplane"
    get_space("vit", **ds.space_options())  # the options are exactly get_space's kwargs
    # test = official test batch, in file order, with the pixel layout 1024 R, 1024 G, 1024 B
    (x, y), = list(ds.val_batches(100, split="test"))
    test = files["test_batch"]
    assert y.tolist() == test[b"labels"]
    expected = torch.from_numpy(test[b"data"][2, 1024:2048].reshape(32, 32)).float() / 255
    assert torch.allclose(x[2, 1] * ds.std[1] + ds.mean[1], expected, atol=1e-5)
    train_pixels = np.concatenate([files[f"data_batch_{i}"][b"data"] for i in range(1, 6)]).reshape(-1, 3, 1024)
    train_rows = {r.tobytes() for r in ds._images["train"].reshape(-1, 3, 1024).numpy()}
    kept = np.stack([r for r in train_pixels if r.tobytes() in train_rows])  # the official train minus val
    assert len(kept) == 27  # statistics of our train split only, never val or test
    assert torch.allclose(ds.mean, torch.tensor(kept.mean(axis=(0, 2)) / 255, dtype=torch.float32), atol=1e-5)


def test_cifar10_batches_are_normalised_and_seeded(tmp_path):
    folder, _ = fake_cifar10(tmp_path, n=50)
    ds = load_dataset("cifar10", path=folder)
    x, y = ds.batch("train", 64, torch.Generator().manual_seed(3))
    assert x.shape == (64, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.long
    x2, y2 = ds.batch("train", 64, torch.Generator().manual_seed(3))
    assert torch.equal(x, x2) and torch.equal(y, y2)
    full = torch.cat([b[0] for b in ds.val_batches(1000, split="test")])
    assert full.mean(dim=(0, 2, 3)).abs().max() < 0.1  # uniform random pixels: val ~ train statistics


def test_cifar10_val_fraction_holds_out_train_images(tmp_path):
    folder, _ = fake_cifar10(tmp_path, n=10)
    ds = load_dataset("cifar10", path=folder, val_fraction=0.2, seed=1)
    assert (ds.num_examples("train"), ds.num_examples("val"), ds.num_examples("test")) == (40, 10, 10)
    assert not ds.example_digests("val") & ds.example_digests("train")


@pytest.mark.parametrize("archive", [False, True])
def test_cifar100_fine_and_coarse(tmp_path, archive):
    folder, files = fake_cifar100(tmp_path / "src")
    path = _tar(folder, tmp_path / "cifar-100-python.tar.gz") if archive else folder.parent
    fine = load_dataset("cifar100", path=path)
    assert fine.space_options() == {"image_size": 32, "channels": 3, "num_classes": 100}
    assert next(iter(fine.val_batches(8, split="test")))[1].tolist() == files["test"][b"fine_labels"]
    coarse = load_dataset("cifar100", path=path, label="coarse")
    assert coarse.num_classes == 20 and coarse.class_names[3] == "super3"
    assert next(iter(coarse.val_batches(8, split="test")))[1].tolist() == files["test"][b"coarse_labels"]


def test_missing_files_say_what_is_expected(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("cifar10", path=tmp_path)
    msg = str(err.value)
    assert "cifar-10-batches-py" in msg and "data_batch_1" in msg and "cifar-10-python.tar.gz" in msg
    assert "https://www.cs.toronto.edu/~kriz/" in msg
    folder, _ = fake_cifar10(tmp_path)
    os.remove(folder / "data_batch_4")
    with pytest.raises(FileNotFoundError, match="data_batch_4"):
        load_dataset("cifar10", path=folder)
    archive = _tar(folder, tmp_path / "cifar-10-python.tar.gz")
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py/data_batch_4"):
        load_dataset("cifar10", path=archive)
    with pytest.raises(FileNotFoundError, match="cifar-100-python"):
        load_dataset("cifar100", path=tmp_path / "nowhere")


def test_bad_options_are_config_errors(tmp_path):
    folder, _ = fake_cifar10(tmp_path)
    with pytest.raises(ConfigError) as err:
        load_dataset("cifar10", path=folder, val_fraction=1.0)
    assert err.value.field == "val_fraction"
    with pytest.raises(ConfigError) as err:
        load_dataset("cifar100", path=folder, label="medium")
    assert err.value.field == "label"
    ds = load_dataset("cifar10", path=folder)
    with pytest.raises(ConfigError) as err:
        ds.batch("train", 0, torch.Generator())
    assert err.value.field == "batch_size"
    with pytest.raises(ConfigError) as err:
        ds.batch("valid", 2, torch.Generator())
    assert err.value.field == "split"


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > should_not_exist",))


def test_malicious_pickle_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder, _ = fake_cifar10(tmp_path)
    (folder / "data_batch_2").write_bytes(py2_pickle({b"data": _Evil(), b"labels": []}))
    with pytest.raises(UnsafePickleError, match="system"):
        load_dataset("cifar10", path=folder)
    assert not (tmp_path / "should_not_exist").exists()
    for payload in (pickle.dumps(_Evil(), protocol=4), pickle.dumps(_Evil(), protocol=0),
                    py2_pickle({b"x": pickle.PicklingError})):  # any other global, even a harmless class
        with pytest.raises(UnsafePickleError):
            load_numpy_pickle(io.BytesIO(payload))
    assert not (tmp_path / "should_not_exist").exists()


def test_safe_loader_reads_numpy_arrays_as_python_2_and_3_write_them():
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    obj = {b"a": arr, b"n": [1, 2], b"s": b"text"}
    for payload in (py2_pickle(obj), pickle.dumps(obj, protocol=3), pickle.dumps(obj, protocol=4)):
        out = load_numpy_pickle(io.BytesIO(payload))
        assert np.array_equal(out[b"a"], arr) and out[b"a"].dtype == np.float32
        assert out[b"n"] == [1, 2] and out[b"s"] == b"text"
