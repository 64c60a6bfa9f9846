"""textdir: bytes of any folder's files, split by whole files; and pytext, which is textdir over the stdlib."""
import hashlib
import random

import pytest
import torch

from nas.data import DATASETS, TextDataset, data_fingerprint, dataset_options, load_dataset
from search_spaces import ConfigError, get_space


def _corpus(root, n=12, suffix=".txt"):
    """Files whose every line names the file, so each byte's file is known."""
    for i in range(n):
        sub = root / ("a" if i % 3 == 0 else "b/c" if i % 3 == 1 else "")
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"doc{i:02d}{suffix}").write_text(f"<doc{i:02d}> some text {i}\n" * (20 + 7 * i))
    return root


def _docs(ds, split):
    text = bytes(ds._tokens[split].tolist()).decode()
    return {line.split(">")[0] + ">" for line in text.splitlines() if line.startswith("<doc")}


def test_textdir_splits_whole_files_and_is_seeded(tmp_path):
    _corpus(tmp_path)
    ds = load_dataset("textdir", path=tmp_path, val_fraction=0.2, test_fraction=0.2, context=8)
    assert isinstance(ds, TextDataset) and ds.name == "textdir" and ds.space_options() == {"vocab_size": 256}
    docs = {s: _docs(ds, s) for s in ("train", "val", "test")}
    assert all(docs.values())
    assert not docs["train"] & docs["val"] and not docs["train"] & docs["test"] and not docs["val"] & docs["test"]
    assert len(docs["train"] | docs["val"] | docs["test"]) == 12
    sizes = [p.stat().st_size for p in tmp_path.rglob("*.txt")]
    # max_bytes=None: every file is read; only the last held-out file is cut (its tail is dropped)
    assert sum(sizes) - max(sizes) < sum(ds.num_examples(s) for s in ("train", "val", "test")) <= sum(sizes)
    digests = {s: ds.example_digests(s) for s in ("train", "val", "test")}  # one per file
    assert len(digests["val"]) == len(docs["val"]) and len(digests["test"]) == len(docs["test"])
    assert not digests["train"] & (digests["val"] | digests["test"])
    again = load_dataset("textdir", path=str(tmp_path), val_fraction=0.2, test_fraction=0.2, context=8)
    assert all(torch.equal(ds._tokens[s], again._tokens[s]) for s in ("train", "val", "test"))
    other = load_dataset("textdir", path=tmp_path, val_fraction=0.2, test_fraction=0.2, context=8, seed=1)
    assert _docs(other, "val") | _docs(other, "test") != docs["val"] | docs["test"]


def test_textdir_glob_hidden_and_max_bytes(tmp_path):
    _corpus(tmp_path)
    _corpus(tmp_path / "py", n=4, suffix=".py")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD.py").write_text("<git> hidden\n" * 50)
    (tmp_path / ".hidden.py").write_text("<dot> hidden\n" * 50)
    ds = load_dataset("textdir", path=tmp_path, glob="**/*.py", val_fraction=0.25, test_fraction=0.25, context=8)
    text = b"".join(bytes(ds._tokens[s].tolist()) for s in ("train", "val", "test")).decode()
    assert "<git>" not in text and "<dot>" not in text and "some text 3" in text and "some text 5" not in text
    assert len(_docs(ds, "train") | _docs(ds, "val") | _docs(ds, "test")) == 4
    hidden = load_dataset("textdir", path=tmp_path, glob="**/*.py", hidden=True, context=8)
    text = b"".join(bytes(hidden._tokens[s].tolist()) for s in ("train", "val", "test")).decode()
    assert "<git>" in text and "<dot>" in text
    top = load_dataset("textdir", path=tmp_path, glob="*.txt", context=8)  # not recursive without **
    assert len(_docs(top, "train") | _docs(top, "val") | _docs(top, "test")) == 4
    small = load_dataset("textdir", path=tmp_path, max_bytes=2048, context=8)
    assert sum(small.num_examples(s) for s in ("train", "val", "test")) == 2048


def test_textdir_batches_fit_a_gpt2_and_fingerprint(tmp_path):
    ds = load_dataset("textdir", path=_corpus(tmp_path), context=16)
    x, y = ds.batch("train", 4, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 16) and torch.equal(x[:, 1:], y[:, :-1])
    space = get_space("gpt2", **ds.space_options(), context=16)
    model = space.build(space.sample(random.Random(0)))
    assert model(x, y)[0].shape == (4, 16, 256)
    fp = data_fingerprint(ds, {"path": str(tmp_path)})
    assert fp["data"] == "textdir" and fp["examples"] == len(ds.example_digests("train")) > 0
    assert data_fingerprint(load_dataset("textdir", path=tmp_path, context=16))["sha256"] == fp["sha256"]


def test_textdir_errors_name_what_was_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found") as err:
        load_dataset("textdir", path=tmp_path / "missing")
    assert "glob='**/*'" in str(err.value)
    (tmp_path / "only.txt").write_text("one file\n" * 10)
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("textdir", path=tmp_path)
    assert "found 1 file(s)" in str(err.value) and "glob='**/*'" in str(err.value) and "at least 2" in str(err.value)
    with pytest.raises(FileNotFoundError, match=r"found 0 file\(s\) matching glob='\*\*/\*\.md'"):
        load_dataset("textdir", path=tmp_path, glob="**/*.md")
    with pytest.raises(FileNotFoundError, match="it is a file"):
        load_dataset("textdir", path=tmp_path / "only.txt")
    empty = tmp_path / "empty"
    empty.mkdir()
    for i in range(3):
        (empty / f"e{i}.txt").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="all empty"):
        load_dataset("textdir", path=empty)
    for kwargs, field in [(dict(glob=""), "glob"), (dict(glob="/etc/*"), "glob"), (dict(glob="../*"), "glob"),
                          (dict(max_bytes=100), "max_bytes"), (dict(max_bytes=True), "max_bytes"),
                          (dict(val_fraction=0.0), "val_fraction"), (dict(val_fraction=0.6, test_fraction=0.5),
                                                                     "test_fraction"),
                          (dict(hidden="yes"), "hidden"), (dict(path=3), "path"), (dict(nope=1), "nope")]:
        with pytest.raises(ConfigError) as err:
            load_dataset("textdir", **{"path": tmp_path, **kwargs})
        assert err.value.field == field
    assert "textdir" in DATASETS and dataset_options("textdir")["glob"] == "**/*"


# --- pytext is textdir's split over the stdlib's .py files: pinned to the splits it gave before ---

def _stdlib_like(root):
    """A small stdlib-like tree: nested packages, skipped folders, non-.py files, empty files."""
    rng = random.Random(1234)
    dirs = ["", "pkg", "pkg/sub", "email/mime", "test", "tests", "pkg/__pycache__", "site-packages/x", "idle_test", "zz"]
    for d in dirs:
        (root / d).mkdir(parents=True, exist_ok=True)
    for i in range(40):
        d = dirs[i % len(dirs)]
        n = rng.randrange(0, 3000)
        body = "".join(f"def f{i}_{j}(x):\n    return x * {rng.randrange(1000)}  # {'é' if j % 7 == 0 else ''}\n"
                       for j in range(n // 40))
        name = f"mod{i:02d}.py" if i % 9 else "__init__.py"
        (root / d / name).write_text(body, encoding="utf-8")
        if i % 5 == 0:
            (root / d / f"notes{i}.txt").write_text("not python\n" * 20)
            (root / d / f"mod{i:02d}.pyc").write_bytes(bytes(range(256)))
    return root


def _split_digest(ds):
    h = hashlib.sha256()
    for s in ("train", "val", "test"):
        h.update(s.encode())
        h.update(ds._tokens[s].numpy().tobytes())
        h.update(repr(ds._documents.get(s)).encode())
    return h.hexdigest()[:32]


@pytest.mark.parametrize("kwargs, digest, sizes", [
    (dict(max_bytes=1024, context=8), "e4d310c72b8d4596236fef41f1670f5c", [922, 51, 51]),
    (dict(max_bytes=20_000), "8860fc4a71b7fc2ed4ad75630aed3073", [18000, 1325, 675]),
    (dict(max_bytes=10**9), "b93bd8e04e87c379d82710b67f403974", [24869, 1325, 1489]),
    (dict(max_bytes=30_000, val_fraction=0.2, test_fraction=0.1, seed=3, context=8),
     "cea461046661d4d2a12b8846e1413edb", [19121, 4706, 3738]),
    (dict(max_bytes=5000, val_fraction=0.01, test_fraction=0.01, seed=7, context=4),
     "81e5faded1ab01a1e4780815a3c3948a", [4900, 50, 50]),
])
def test_pytext_splits_are_byte_identical_to_before_the_textdir_refactor(tmp_path, kwargs, digest, sizes):
    """Digests of pytext's tokens and document offsets computed with the pre-textdir implementation:
    a checkpoint's data fingerprint and the shipped hypernets' train split must not move."""
    ds = load_dataset("pytext", root=_stdlib_like(tmp_path), **kwargs)
    assert [ds.num_examples(s) for s in ("train", "val", "test")] == sizes
    assert _split_digest(ds) == digest


def test_pytext_equals_textdir_over_the_same_files(tmp_path):
    """Same files, same options: the same split (pytext only adds its file filter)."""
    root = tmp_path / "src"
    for i in range(8):
        (root / "pkg").mkdir(parents=True, exist_ok=True)
        (root / ("pkg" if i % 2 else "") / f"m{i}.py").write_text(f"# m{i}\n" + f"v = {i}\n" * (30 + 11 * i))
    a = load_dataset("pytext", root=root, max_bytes=2048, val_fraction=0.2, test_fraction=0.1, seed=5, context=8)
    b = load_dataset("textdir", path=root, glob="**/*.py", max_bytes=2048, val_fraction=0.2, test_fraction=0.1,
                     seed=5, context=8)
    assert all(torch.equal(a._tokens[s], b._tokens[s]) for s in ("train", "val", "test"))
    assert a._documents == b._documents and a.name == "pytext" and b.name == "textdir"
