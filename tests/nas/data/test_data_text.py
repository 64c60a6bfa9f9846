"""Byte-level text: the embedded stdlib corpus and WikiText raw files in their official layout."""
import importlib.util
import random

import pytest
import torch

from nas.data import TextDataset, load_dataset
from search_spaces import ConfigError, get_space

WIKI_TRAIN = " \n = Valkyria Chronicles III = \n \n Senjō no Valkyria 3 : Unrecorded Chronicles ( Japanese : 戦場のヴァルキュリア3 ) . \n"
WIKI_VALID = " \n = Homarus gammarus = \n \n Homarus gammarus , known as the European lobster or common lobster . \n"


def _wiki(folder, train=WIKI_TRAIN * 20, valid=WIKI_VALID * 10):
    folder.mkdir(parents=True)
    (folder / "wiki.train.raw").write_text(train, encoding="utf-8")
    (folder / "wiki.valid.raw").write_text(valid, encoding="utf-8")
    (folder / "wiki.test.raw").write_text(valid, encoding="utf-8")
    return folder


def test_pytext_is_deterministic_held_out_and_fast():
    a = load_dataset("pytext", max_bytes=200_000)
    b = load_dataset("pytext", max_bytes=200_000)
    assert isinstance(a, TextDataset) and a.space_options() == {"vocab_size": 256}
    assert torch.equal(a._tokens["train"], b._tokens["train"]) and torch.equal(a._tokens["val"], b._tokens["val"])
    n_train, n_val, n_test = (a.num_examples(s) for s in ("train", "val", "test"))
    assert n_train + n_val + n_test == 200_000 and 0.05 * 200_000 <= n_val + n_test <= 0.5 * 200_000
    assert n_val > 0 and n_test > 0
    other = load_dataset("pytext", max_bytes=200_000, seed=1)
    assert not torch.equal(other._tokens["val"][:1000], a._tokens["val"][:1000])  # another file order
    text = bytes(a._tokens["train"][:20_000].tolist()).decode("utf-8", errors="replace")
    assert "def " in text or "import " in text


def test_pytext_splits_by_file(tmp_path):
    for i in range(10):
        (tmp_path / f"mod{i}.py").write_text(f"# module {i}\n" + f"x{i} = {i}\n" * 200)
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "test_skipped.py").write_text("SKIPPED_TEST_DIR = 1\n" * 100)
    ds = load_dataset("pytext", root=tmp_path, max_bytes=1_000_000, val_fraction=0.2, test_fraction=0.2, context=8)
    text = {s: bytes(ds._tokens[s].tolist()).decode() for s in ("train", "val", "test")}
    assert "SKIPPED_TEST_DIR" not in "".join(text.values())
    headers = {s: {line for line in t.splitlines() if line.startswith("# module")} for s, t in text.items()}
    assert all(headers.values())
    assert not headers["train"] & headers["val"] and not headers["train"] & headers["test"]
    assert not headers["val"] & headers["test"]
    assert len(headers["train"] | headers["val"] | headers["test"]) == 10
    digests = {s: ds.example_digests(s) for s in text}  # one per file
    assert len(digests["val"]) + len(digests["test"]) == len(headers["val"]) + len(headers["test"])


def test_pytext_missing_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"\.py"):
        load_dataset("pytext", root=tmp_path)


def test_text_batches_are_shifted_windows():
    ds = load_dataset("pytext", max_bytes=50_000, context=16)
    g = torch.Generator().manual_seed(0)
    x, y = ds.batch("train", 5, g)
    assert x.shape == y.shape == (5, 16) and x.dtype == y.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])
    x2, _ = ds.batch("train", 5, torch.Generator().manual_seed(0))
    assert torch.equal(x, x2)
    x3, y3 = ds.batch("val", 3, g, context=40)
    assert x3.shape == (3, 40) and int(x3.max()) < 256
    space = get_space("gpt2", **ds.space_options(), context=16)
    model = space.build(space.sample(random.Random(0)))
    assert model(x, y)[0].shape == (5, 16, 256)


def test_val_batches_are_deterministic_and_cover_the_split():
    ds = load_dataset("pytext", max_bytes=100_000, context=32)
    full = list(ds.val_batches(64))
    n_windows = (ds.num_examples("val") - 1) // 32
    assert sum(len(x) for x, _ in full) == n_windows
    assert torch.equal(torch.cat([x for x, _ in full]).flatten()[:32 * n_windows],
                       ds._tokens["val"][:32 * n_windows].long())
    few = list(ds.val_batches(4, limit=2))
    assert len(few) == 2 and all(len(x) == 4 for x, _ in few)
    again = list(ds.val_batches(4, limit=2))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(few, again))
    last_start = ds._tokens["val"][(n_windows - 1) * 32:(n_windows - 1) * 32 + 32].long()
    assert torch.equal(few[-1][0][-1], last_start)  # spread to the end of the val split


def test_text_option_errors():
    with pytest.raises(ConfigError) as err:
        load_dataset("pytext", max_bytes=4096, context=100_000)
    assert err.value.field == "context" and "[1, " in str(err.value)
    ds = load_dataset("pytext", max_bytes=4096, context=8)
    for kwargs, field in [(dict(batch_size=-1), "batch_size"), (dict(context=0), "context"),
                          (dict(context=ds.num_examples("val")), "context")]:
        kw = dict(split="train", batch_size=2, generator=torch.Generator()) | kwargs
        with pytest.raises(ConfigError) as err:
            ds.batch(**kw)
        assert err.value.field == field
    with pytest.raises(ConfigError) as err:
        list(ds.val_batches(2, limit=0))
    assert err.value.field == "limit"
    for kwargs, field in [(dict(val_fraction=0.0), "val_fraction"), (dict(val_fraction=1.5), "val_fraction"),
                          (dict(max_bytes=-5), "max_bytes")]:
        with pytest.raises(ConfigError) as err:
            load_dataset("pytext", **kwargs)
        assert err.value.field == field


@pytest.mark.parametrize("sub", ["", "wikitext-103-raw", "wikitext-103-raw-v1"])
def test_wikitext103_raw_files(tmp_path, sub):
    _wiki(tmp_path / sub if sub else tmp_path / "x")
    root = tmp_path if sub else tmp_path / "x"
    ds = load_dataset("wikitext103", path=str(root), context=32)
    assert ds.name == "wikitext103" and ds.space_options() == {"vocab_size": 256}
    assert ds.num_examples("train") == len((WIKI_TRAIN * 20).encode())  # bytes, not characters
    assert bytes(ds._tokens["val"][:len(WIKI_VALID.encode())].tolist()).decode() == WIKI_VALID
    x, y = ds.batch("train", 4, torch.Generator().manual_seed(0))
    assert x.shape == (4, 32) and torch.equal(x[:, 1:], y[:, :-1])


def test_wikitext2_and_max_bytes(tmp_path):
    _wiki(tmp_path / "wikitext-2-raw")
    ds = load_dataset("wikitext2", path=tmp_path, max_bytes=300, context=16)
    assert ds.num_examples("train") == 300 and ds.num_examples("val") == 300


def test_wikitext_missing_files_and_no_datasets(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("wikitext103", path=tmp_path)
    assert "wiki.train.raw" in str(err.value) and "wikitext-103-raw" in str(err.value)
    (tmp_path / "wiki.train.raw").write_text(WIKI_TRAIN)
    with pytest.raises(FileNotFoundError, match="wiki.valid.raw"):
        load_dataset("wikitext103", path=tmp_path)
    if importlib.util.find_spec("datasets") is None:
        with pytest.raises(FileNotFoundError, match="datasets"):
            load_dataset("wikitext103")


def test_wikitext_bad_options(tmp_path):
    _wiki(tmp_path / "w")
    with pytest.raises(ConfigError) as err:
        load_dataset("wikitext103", path=tmp_path / "w", tokenizer="sentencepiece")
    assert err.value.field == "tokenizer"
    with pytest.raises(ConfigError) as err:
        load_dataset("wikitext103", path=tmp_path / "w")  # default context 1024 > the tiny files
    assert err.value.field == "context"


def test_wikitext_gpt2_tokenizer(tmp_path, monkeypatch):
    """BPE path with a tiny locally trained byte-level tokenizer standing in for GPT-2's (no network)."""
    transformers = pytest.importorskip("transformers")
    from tokenizers import ByteLevelBPETokenizer

    _wiki(tmp_path / "w")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([WIKI_TRAIN, WIKI_VALID], vocab_size=300, min_frequency=1, show_progress=False)
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe)
    calls = []

    def fake_from_pretrained(name, **kw):
        calls.append((name, kw))
        return tok

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", fake_from_pretrained)
    ds = load_dataset("wikitext103", path=tmp_path / "w", tokenizer="gpt2", context=8)
    assert calls == [("gpt2", {"local_files_only": True})]  # never downloads
    assert ds.space_options() == {"vocab_size": len(tok)}
    assert tok.decode(ds._tokens["val"].tolist()) == WIKI_VALID * 10
    assert ds.num_examples("train") < len((WIKI_TRAIN * 20).encode())  # merges make it shorter than bytes
    x, y = ds.batch("train", 2, torch.Generator().manual_seed(0))
    assert int(x.max()) < len(tok) and torch.equal(x[:, 1:], y[:, :-1])


def test_wikitext_gpt2_tokenizer_missing_is_explained(tmp_path, monkeypatch):
    transformers = pytest.importorskip("transformers")

    def offline(name, **kw):
        raise OSError("couldn't find them in the cached files")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", offline)
    _wiki(tmp_path / "w")
    with pytest.raises(FileNotFoundError, match="tokenizer='bytes'"):
        load_dataset("wikitext103", path=tmp_path / "w", tokenizer="gpt2", context=8)


def test_wikitext_hugging_face_parquet_layout(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    folder = tmp_path / "wikitext-103-raw-v1"
    folder.mkdir()
    lines = WIKI_TRAIN.splitlines(keepends=True) * 10  # HF rows are the raw file's lines
    pq.write_table(pa.table({"text": lines[:20]}), folder / "train-00000-of-00002.parquet")
    pq.write_table(pa.table({"text": lines[20:]}), folder / "train-00001-of-00002.parquet")
    pq.write_table(pa.table({"text": WIKI_VALID.splitlines(keepends=True) * 5}), folder / "validation-00000-of-00001.parquet")
    pq.write_table(pa.table({"text": WIKI_VALID.splitlines(keepends=True) * 3}), folder / "test-00000-of-00001.parquet")
    ds = load_dataset("wikitext103", path=tmp_path, context=16)
    assert bytes(ds._tokens["train"].tolist()).decode() == "".join(lines)  # shards in order
    assert bytes(ds._tokens["val"].tolist()).decode() == WIKI_VALID * 5
    assert bytes(ds._tokens["test"].tolist()).decode() == WIKI_VALID * 3  # the official test split
