"""WikiText-103 / WikiText-2 (raw), the GPT-2 corpora of the LoGAH paper.

Sources, first match wins: `path=` a folder with the official raw files (`wiki.train.raw`,
`wiki.valid.raw`, `wiki.test.raw`, optionally inside `wikitext-103-raw/`), or the Hugging Face layout
(`wikitext-103-raw-v1/{train,validation,test}-*.parquet`); the official valid and test splits are
our val and test; without `path`, Hugging Face `datasets`
from its local cache (no network). Tokens are bytes (vocab 256) or, with `tokenizer="gpt2"`,
GPT-2 BPE from a locally cached `transformers` tokenizer (vocab 50257).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from search_spaces import ConfigError

from ._base import TextDataset, bytes_to_tokens

_VARIANTS = {"wikitext103": "103", "wikitext2": "2"}
_SPLITS = {"train": "train", "val": "valid", "test": "test"}  # our split -> official file suffix
_HF_SPLITS = {"train": "train", "val": "validation", "test": "test"}


def _layout_help(name: str) -> str:
    n = _VARIANTS[name]
    return (f"Expected path= to be a folder with wiki.train.raw, wiki.valid.raw and wiki.test.raw (as in the "
            f"official wikitext-{n}-raw-v1.zip, extracted: wikitext-{n}-raw/wiki.*.raw), or with the Hugging Face "
            f"parquet files wikitext-{n}-raw-v1/{{train,validation,test}}-*.parquet (dataset 'Salesforce/wikitext'). "
            f"Download once on a machine with internet (e.g. `huggingface-cli download Salesforce/wikitext "
            f"--repo-type dataset --include 'wikitext-{n}-raw-v1/*'`) and pass data.path=...")


def _read_folder(name: str, root: Path) -> dict[str, str | bytes]:
    n = _VARIANTS[name]
    if not root.is_dir():
        raise FileNotFoundError(f"{name}: folder {root} does not exist. {_layout_help(name)}")
    for folder in (root, root / f"wikitext-{n}-raw", root / f"wikitext-{n}-raw-v1"):
        if all((folder / f"wiki.{s}.raw").is_file() for s in _SPLITS.values()):
            return {split: (folder / f"wiki.{s}.raw").read_bytes() for split, s in _SPLITS.items()}
        parquet = {split: sorted(folder.glob(f"{s}-*.parquet")) for split, s in _HF_SPLITS.items()}
        if all(parquet.values()):
            return {split: _read_parquet(files) for split, files in parquet.items()}
    raise FileNotFoundError(f"{name}: no wiki.train.raw / wiki.valid.raw / wiki.test.raw under {root}. "
                            f"{_layout_help(name)}")


def _read_parquet(files: list[Path]) -> str:
    try:
        import pyarrow.parquet as pq
    except ImportError as e:
        raise ImportError("reading the Hugging Face parquet files needs pyarrow (`pip install pyarrow`)") from e
    return "".join(t for f in files for t in pq.read_table(f, columns=["text"]).column("text").to_pylist())


def _read_hf_cache(name: str) -> dict[str, str]:
    try:
        import datasets
    except ImportError as e:
        raise FileNotFoundError(f"{name}: no path= given and Hugging Face `datasets` is not installed. "
                                f"{_layout_help(name)}") from e
    config = f"wikitext-{_VARIANTS[name]}-raw-v1"
    try:
        ds = datasets.load_dataset("wikitext", config, download_mode="reuse_cache_if_exists")
    except Exception as e:  # no cache and no network: say what to do instead of a connection error
        raise FileNotFoundError(f"{name}: Hugging Face datasets has no local copy of wikitext/{config} ({e}). "
                                f"{_layout_help(name)}") from e
    return {split: "".join(ds[hf]["text"]) for split, hf in _HF_SPLITS.items()}


def _tokenize(texts: dict[str, str | bytes], tokenizer: str) -> tuple[dict[str, torch.Tensor], int]:
    if tokenizer == "bytes":
        return {s: bytes_to_tokens(t if isinstance(t, bytes) else t.encode("utf-8")) for s, t in texts.items()}, 256
    try:
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained("gpt2", local_files_only=True)
    except Exception as e:
        raise FileNotFoundError("tokenizer='gpt2' needs the GPT-2 tokenizer in the local Hugging Face cache "
                                "(run `AutoTokenizer.from_pretrained('gpt2')` once with internet), or use "
                                "tokenizer='bytes'") from e
    out = {}
    for split, text in texts.items():
        text = text.decode("utf-8") if isinstance(text, bytes) else text
        lines = text.splitlines(keepends=True)  # WikiText lines are paragraphs: short, independent
        parts = []
        for i in range(0, len(lines), 10_000):  # batched: the fast (Rust) tokenizer parallelises each call
            ids = tok(lines[i:i + 10_000], add_special_tokens=False)["input_ids"]
            parts.append(torch.tensor([t for line in ids for t in line], dtype=torch.int32))
        out[split] = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.int32)
    return out, len(tok)


def load_wikitext(name: str, path: str | os.PathLike | None = None, tokenizer: str = "bytes",
                  max_bytes: int | None = None, context: int = 1024) -> TextDataset:
    """`max_bytes` truncates each split (useful for smoke tests on the 540 MB train file)."""
    if name not in _VARIANTS:
        raise ConfigError("data", name, f"one of {sorted(_VARIANTS)}")
    if tokenizer not in ("bytes", "gpt2"):
        raise ConfigError("tokenizer", tokenizer, "'bytes' (vocab 256) or 'gpt2' (GPT-2 BPE, vocab 50257)")
    if max_bytes is not None and (isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 2):
        raise ConfigError("max_bytes", max_bytes, "None or an integer >= 2")
    texts = _read_folder(name, Path(path)) if path is not None else _read_hf_cache(name)
    if max_bytes is not None:
        texts = {s: (t if isinstance(t, bytes) else t.encode("utf-8"))[:max_bytes] for s, t in texts.items()}
        if tokenizer == "gpt2":
            texts = {s: t.decode("utf-8", errors="ignore") for s, t in texts.items()}
    tokens, vocab = _tokenize(texts, tokenizer)
    for split, t in tokens.items():
        if len(t) < 2:
            raise ValueError(f"{name}: the {split} split has {len(t)} tokens; need at least 2")
    return TextDataset(name, tokens["train"], tokens["val"], tokens["test"], vocab_size=vocab, context=context,
                       documents={s: _article_starts(t, vocab) for s, t in tokens.items()})


def _article_starts(tokens: torch.Tensor, vocab: int) -> list[int] | None:
    """Offsets of the articles of a byte-level split (lines ` = Title = `); None for BPE tokens
    (hashed in chunks instead)."""
    if vocab != 256:
        return None
    data = tokens.numpy().tobytes()
    starts, pos = [0], data.find(b"\n = ", 0)
    while pos != -1:
        end = data.find(b"\n", pos + 1)
        line = data[pos + 1: end if end != -1 else len(data)]
        if not line.startswith(b" = = ") and line.rstrip().endswith(b" ="):
            starts.append(pos + 1)
        pos = data.find(b"\n = ", pos + 1)
    return sorted(set(starts))
