"""imagefolder: the user's images, one sub-folder per class, read with Pillow."""
import random

import numpy as np
import pytest
import torch
from PIL import Image

from nas.data import ImageDataset, data_fingerprint, dataset_options, load_dataset, overlap
from search_spaces import ConfigError, get_space

CLASSES = ("cat", "dog", "emu")


def _folder(root, per_class=(10, 12, 8), size=(20, 14)):
    """Distinct images (every pixel encodes class and index) as PNG, JPEG and BMP, plus junk files."""
    rng = np.random.default_rng(0)
    for c, (name, n) in enumerate(zip(CLASSES, per_class)):
        d = root / name
        (d / "nested").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            arr[0, 0] = (c * 80, i * 10, 7)
            fmt = ("png", "jpg", "bmp")[i % 3]
            where = d / "nested" if i == 1 else d
            Image.fromarray(arr).save(where / f"img{i:02d}.{fmt}")
        (d / "README.txt").write_text("not an image")
        (d / ".DS_Store").write_bytes(b"\0\1junk")
    return root


def test_imagefolder_shapes_classes_and_split(tmp_path):
    ds = load_dataset("imagefolder", path=_folder(tmp_path), image_size=8, channels=3, val_fraction=0.2,
                      test_fraction=0.2)
    assert isinstance(ds, ImageDataset) and ds.name == "imagefolder" and ds.kind == "image"
    assert ds.class_names == list(CLASSES) and ds.scale == 255.0
    assert ds.space_options() == {"image_size": 8, "channels": 3, "num_classes": 3}
    sizes = [ds.num_examples(s) for s in ("train", "val", "test")]
    assert sum(sizes) == 30 and all(sizes) and sizes[0] == 30 - 12  # heldout_split of 30 with 0.4 held out
    assert ds._images["train"].dtype == torch.uint8 and ds._images["train"].shape[1:] == (3, 8, 8)
    for split in ("val", "test"):  # stratified: every class held out
        assert set(ds._labels[split].tolist()) == {0, 1, 2}
    digests = {s: ds.example_digests(s) for s in ("train", "val", "test")}
    assert sum(len(d) for d in digests.values()) == 30  # disjoint by image
    assert not digests["train"] & digests["val"] and not digests["train"] & digests["test"]
    assert not digests["val"] & digests["test"]
    gray = load_dataset("imagefolder", path=tmp_path, image_size=12, channels=1)
    assert gray._images["train"].shape[1:] == (1, 12, 12) and gray.space_options()["channels"] == 1


def test_imagefolder_is_seeded(tmp_path):
    _folder(tmp_path)
    a, b = (load_dataset("imagefolder", path=tmp_path, image_size=8, seed=3) for _ in range(2))
    assert all(torch.equal(a._images[s], b._images[s]) and torch.equal(a._labels[s], b._labels[s])
               for s in ("train", "val", "test"))
    other = load_dataset("imagefolder", path=tmp_path, image_size=8, seed=4)
    assert other.example_digests("val") != a.example_digests("val")
    plain = load_dataset("imagefolder", path=tmp_path, image_size=8, stratified=False, seed=3)
    assert sum(plain.num_examples(s) for s in ("train", "val", "test")) == 30
    assert plain.num_examples("train") == a.num_examples("train")


def test_imagefolder_pixels_and_a_vit_batch(tmp_path):
    arr = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.fromarray(arr).save(tmp_path / name / f"{i}.png")
    ds = load_dataset("imagefolder", path=tmp_path, image_size=8, val_fraction=0.3, test_fraction=0.3)
    assert torch.equal(ds._images["train"][0], torch.from_numpy(arr.transpose(2, 0, 1)))  # no resize: exact pixels
    x, y = ds.batch("train", 5, torch.Generator().manual_seed(0))
    assert x.shape == (5, 3, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.long
    space = get_space("vit", **ds.space_options())
    model = space.build(space.sample(random.Random(0)))
    logits, loss = model(x, y)
    assert logits.shape == (5, 2) and torch.isfinite(loss)
    fp = data_fingerprint(ds, {"path": str(tmp_path)})
    assert fp["data"] == "imagefolder" and fp["examples"] == 2  # copies of one image: one example per label
    assert set(ds._labels["train"].tolist()) == {0, 1}  # stratified: so held-out copies are all "seen"
    assert overlap(fp, ds) == {s: len(ds.example_digests(s)) for s in ("val", "test")}


def test_imagefolder_train_val_test_layout(tmp_path):
    for split, n in (("train", 4), ("val", 2), ("test", 3)):
        _folder(tmp_path / split, per_class=(n, n, n))
    ds = load_dataset("imagefolder", path=tmp_path, image_size=8)
    assert ds.class_names == list(CLASSES)
    assert [ds.num_examples(s) for s in ("train", "val", "test")] == [12, 6, 9]
    (tmp_path / "val" / "zebra").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "val" / "zebra" / "z.png")
    with pytest.raises(FileNotFoundError, match="zebra"):
        load_dataset("imagefolder", path=tmp_path, image_size=8)


def test_imagefolder_errors_name_what_was_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found.*<class>"):
        load_dataset("imagefolder", path=tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no class folders"):
        load_dataset("imagefolder", path=tmp_path)
    _folder(tmp_path, per_class=(2, 2, 2))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match=r"class folder .*empty holds no image.*\.png"):
        load_dataset("imagefolder", path=tmp_path)
    (tmp_path / "empty" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ValueError, match="broken.jpg is not a readable image"):
        load_dataset("imagefolder", path=tmp_path)
    few = tmp_path / "few"
    (few / "a").mkdir(parents=True)
    for i in range(2):
        Image.new("L", (4, 4)).save(few / "a" / f"{i}.png")
    with pytest.raises(FileNotFoundError, match="found 2 image"):
        load_dataset("imagefolder", path=few)
    for i in range(2, 6):
        Image.new("L", (4, 4), color=i).save(few / "a" / f"{i}.png")
    with pytest.raises(ConfigError) as err:  # 6 images x 0.2 holds out one: no room for both val and test
        load_dataset("imagefolder", path=few)
    assert err.value.field == "val_fraction" and "at least 2 of the 6 images" in str(err.value)
    assert load_dataset("imagefolder", path=few, image_size=4, val_fraction=0.2, test_fraction=0.2).num_examples(
        "test") == 1
    for kwargs, field in [(dict(image_size=2), "image_size"), (dict(image_size=2048), "image_size"),
                          (dict(image_size=8.0), "image_size"), (dict(channels=2), "channels"),
                          (dict(channels=True), "channels"), (dict(val_fraction=1.0), "val_fraction"),
                          (dict(stratified="no"), "stratified"), (dict(path=None), "path"), (dict(size=8), "size")]:
        with pytest.raises(ConfigError) as err:
            load_dataset("imagefolder", **{"path": few, **kwargs})
        assert err.value.field == field
    assert dataset_options("imagefolder")["image_size"] == 32
