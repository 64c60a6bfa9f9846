"""The two dataset kinds every loader returns, with one batching API for training and meta-training.

Data stay compact on the CPU (uint8 pixels, uint8/int32 tokens) and are converted per batch:
CIFAR-10 as float32 would be 600 MB, as uint8 it is 150 MB.
"""
from __future__ import annotations

import copy
import hashlib
import math
from abc import ABC, abstractmethod
from typing import Iterator

import torch

from search_spaces import ConfigError

SPLITS = ("train", "val", "test")
EVAL_SPLITS = ("val", "test")  # studies select on val; exports report test
TEXT_CHUNK = 4096  # tokens per digest for text without document boundaries


def check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError("batch_size", batch_size, "an integer >= 1")


def check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError("limit", limit, "None or an integer >= 1")


def check_split(split: str, allowed: tuple[str, ...] = SPLITS) -> None:
    if split not in allowed:
        raise ConfigError("split", split, f"one of {list(allowed)}")


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def check_fraction(field: str, value: float) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 < value < 1.0
    if not ok:
        raise ConfigError(field, value, "a number in (0, 1)")


class Dataset(ABC):
    """A train split to sample random batches from and two held-out splits to evaluate on: val
    (what a study selects on) and test (what an export reports)."""

    name: str
    kind: str  # "image" | "text"

    @abstractmethod
    def space_options(self) -> dict:
        """The keyword arguments `search_spaces.get_space` needs so models fit this data."""

    @abstractmethod
    def batch(self, split: str, batch_size: int, generator: torch.Generator,
              context: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """A random batch (x, y) on the CPU, drawn with `generator` so runs are reproducible."""

    @abstractmethod
    def val_batches(self, batch_size: int, context: int | None = None, limit: int | None = None,
                    split: str = "val") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """A held-out split (`val` or `test`) in a fixed order (at most `limit` batches), so every
        model sees the same data."""

    @abstractmethod
    def num_examples(self, split: str) -> int:
        """Images, or tokens for text."""

    @abstractmethod
    def example_digests(self, split: str) -> frozenset[str]:
        """Short content hashes of a split's examples (images with their labels; text documents),
        so a hypernet checkpoint can say which examples it was meta-trained on and a study can
        check that none of its val/test examples are among them."""

    def split_off_train(self, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
        """(rest, slice): two views of this data set. `rest` trains on the train split minus a seeded
        `fraction` of it; `slice` trains on the same rest and evaluates (its val split) on that
        fraction. Why: a hypernet refit meta-trains on `rest` and is judged on `slice` (as predicted,
        and after a few fine-tuning steps on the rest), data that neither it nor the trials' val saw.
        Normalisation statistics stay the whole train split's, as the trials use them."""
        check_fraction("fraction", fraction)
        keep, held = self._train_parts(fraction, seed)
        return self._view(train=keep), self._view(train=keep, val=held, test=held)

    @abstractmethod
    def _train_parts(self, fraction: float, seed: int) -> tuple[object, object]:
        """The train split cut into (rest, held-out slice), in this class's storage."""

    @abstractmethod
    def _view(self, **splits: object) -> Dataset:
        """A shallow copy with some splits replaced."""

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, train={self.num_examples('train')}, "
                f"val={self.num_examples('val')}, test={self.num_examples('test')}, {self.space_options()})")


class ImageDataset(Dataset):
    """Classification images [N, C, H, W] stored as integers, normalised per channel on the fly.

    `mean`/`std` are per-channel statistics of the train split after dividing by `scale`
    (16 for digits, 255 for CIFAR), so val data are normalised with train statistics only.
    """

    kind = "image"

    def __init__(self, name: str, train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
                 test: tuple[torch.Tensor, torch.Tensor], num_classes: int, scale: float,
                 class_names: list[str] | None = None) -> None:
        self.name = name
        self._images = {"train": train[0], "val": val[0], "test": test[0]}
        self._labels = {"train": train[1].long(), "val": val[1].long(), "test": test[1].long()}
        for split in SPLITS:
            images, labels = self._images[split], self._labels[split]
            if images.dim() != 4 or images.shape[2] != images.shape[3] or len(images) != len(labels) or not len(images):
                raise ValueError(f"{name}: {split} images must be a non-empty [N, C, H, W] square batch with one label "
                                 f"each, got {tuple(images.shape)} and {len(labels)} labels")
        self.num_classes = num_classes
        self.class_names = class_names
        self.scale = float(scale)
        self.channels, self.image_size = int(train[0].shape[1]), int(train[0].shape[2])
        self.mean, self.std = _channel_stats(train[0], self.scale)

    def space_options(self) -> dict:
        return {"image_size": self.image_size, "channels": self.channels, "num_classes": self.num_classes}

    def num_examples(self, split: str) -> int:
        check_split(split)
        return len(self._labels[split])

    def _normalise(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / self.scale
        return (x - self.mean[None, :, None, None]) / self.std[None, :, None, None]

    def batch(self, split, batch_size, generator, context=None):
        """`context` is ignored: it only applies to text."""
        check_split(split)
        check_batch_size(batch_size)
        idx = torch.randint(len(self._labels[split]), (batch_size,), generator=generator)
        return self._normalise(self._images[split][idx]), self._labels[split][idx]

    def val_batches(self, batch_size, context=None, limit=None, split="val"):
        check_batch_size(batch_size)
        check_limit(limit)
        check_split(split, EVAL_SPLITS)
        return self._eval_iter(batch_size, limit, split)

    def _eval_iter(self, batch_size: int, limit: int | None, split: str):
        images, labels = self._images[split], self._labels[split]
        for i, start in enumerate(range(0, len(labels), batch_size)):
            if limit is not None and i >= limit:
                return
            yield self._normalise(images[start:start + batch_size]), labels[start:start + batch_size]

    def _train_parts(self, fraction, seed):
        perm = torch.randperm(len(self._labels["train"]), generator=torch.Generator().manual_seed(seed))
        n_keep, _ = split_sizes(len(perm), fraction)
        return perm[:n_keep], perm[n_keep:]

    def _view(self, **splits):
        view = copy.copy(self)
        view._images, view._labels = dict(self._images), dict(self._labels)
        for split, idx in splits.items():
            view._images[split] = self._images["train"][idx]
            view._labels[split] = self._labels["train"][idx]
        return view

    def example_digests(self, split):
        check_split(split)
        images, labels = self._images[split].contiguous(), self._labels[split]
        return frozenset(_digest(img.numpy().tobytes() + int(label).to_bytes(4, "little"))
                         for img, label in zip(images, labels))


def _channel_stats(images: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean/std, in chunks so 50k CIFAR images need no full float copy (sums in float64)."""
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for chunk in images.split(4096):
        x = chunk.flatten(2).float()  # [B, C, H*W]: reducing the contiguous last dim first is ~8x faster
        total += x.sum(-1).sum(0, dtype=torch.float64)
        total_sq += x.square_().sum(-1).sum(0, dtype=torch.float64)
    n = images.numel() // c
    mean = total / n
    std = (total_sq / n - mean * mean).clamp_min(0).sqrt() / scale
    return (mean / scale).float(), std.clamp_min(1e-6).float()


class TextDataset(Dataset):
    """A token stream per split; a batch is random windows of `context + 1` tokens shifted by one.

    `documents[split]`, where known, are the start offsets of the split's documents (files, articles):
    the units `example_digests` hashes. Without them a split is hashed in aligned chunks.
    """

    kind = "text"

    def __init__(self, name: str, train: torch.Tensor, val: torch.Tensor, test: torch.Tensor, vocab_size: int,
                 context: int = 64, documents: dict[str, list[int]] | None = None) -> None:
        self.name = name
        self._tokens = {"train": train, "val": val, "test": test}
        self._documents = dict(documents or {})
        self.vocab_size = vocab_size
        self.context = self._check_context(context)

    def space_options(self) -> dict:
        return {"vocab_size": self.vocab_size}

    def num_examples(self, split: str) -> int:
        check_split(split)
        return len(self._tokens[split])

    def _check_context(self, context: int | None) -> int:
        if context is None:
            return self.context
        limit = min(len(t) for t in self._tokens.values()) - 1
        if isinstance(context, bool) or not isinstance(context, int) or not 1 <= context <= limit:
            raise ConfigError("context", context, f"an integer in [1, {limit}] (shortest split of {self.name} "
                                                  f"has {limit + 1} tokens)")
        return context

    def _windows(self, tokens: torch.Tensor, starts: torch.Tensor, context: int):
        w = tokens[starts[:, None] + torch.arange(context + 1)].long()  # [B, context + 1]
        return w[:, :-1], w[:, 1:]

    def batch(self, split, batch_size, generator, context=None):
        check_split(split)
        check_batch_size(batch_size)
        context = self._check_context(context)
        tokens = self._tokens[split]
        starts = torch.randint(len(tokens) - context, (batch_size,), generator=generator)
        return self._windows(tokens, starts, context)

    def val_batches(self, batch_size, context=None, limit=None, split="val"):
        """Non-overlapping windows; with `limit`, spread evenly over the whole split so a few eval
        batches still cover every held-out file, not just the first one."""
        check_batch_size(batch_size)
        check_limit(limit)
        check_split(split, EVAL_SPLITS)
        context = self._check_context(context)
        tokens = self._tokens[split]
        n_windows = (len(tokens) - 1) // context
        starts = torch.arange(n_windows) * context
        if limit is not None and limit * batch_size < n_windows:
            pick = torch.linspace(0, n_windows - 1, limit * batch_size).round().long()
            starts = starts[pick]
        return (self._windows(tokens, s, context) for s in starts.split(batch_size))


    def _train_parts(self, fraction, seed):
        """Text: a contiguous seeded window of the train tokens (windows of `context` must fit in both)."""
        tokens = self._tokens["train"]
        n_held = max(self.context + 2, math.floor(len(tokens) * fraction))
        if n_held > len(tokens) - self.context - 2:
            raise ConfigError("fraction", fraction, f"a share of the {len(tokens)} train tokens that leaves "
                                                    f"both parts longer than context={self.context}")
        start = int(torch.randint(len(tokens) - n_held + 1, (1,), generator=torch.Generator().manual_seed(seed)))
        return torch.cat([tokens[:start], tokens[start + n_held:]]), tokens[start:start + n_held]

    def _view(self, **splits):
        view = copy.copy(self)
        view._tokens = {**self._tokens, **splits}
        view._documents = {k: v for k, v in self._documents.items() if k not in splits}
        return view

    def example_digests(self, split):
        check_split(split)
        tokens = self._tokens[split]
        starts = self._documents.get(split) or list(range(0, len(tokens), TEXT_CHUNK))
        bounds = [*starts, len(tokens)]
        return frozenset(_digest(tokens[a:b].numpy().tobytes()) for a, b in zip(bounds, bounds[1:]) if b > a)


def bytes_to_tokens(data: bytes) -> torch.Tensor:
    """Byte-level tokens (vocab 256) without copying twice."""
    return torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.zeros(0, dtype=torch.uint8)


def split_sizes(n: int, val_fraction: float) -> tuple[int, int]:
    """(train, val) counts with both splits non-empty."""
    n_val = min(max(1, math.floor(n * val_fraction)), n - 1)
    return n - n_val, n_val


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    check_fraction("val_fraction", val_fraction)
    check_fraction("test_fraction", test_fraction)
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError("test_fraction", test_fraction, f"a number in (0, {1.0 - val_fraction:g}) so "
                                                          "val_fraction + test_fraction < 1 (train must not be empty)")


def heldout_split(perm: torch.Tensor, val_fraction: float, test_fraction: float
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train, val, test) indices from a seeded permutation: the last `val_fraction + test_fraction`
    are held out, val first. Train is what a two-way split with val_fraction + test_fraction would
    give, so a checkpoint meta-trained on that train split never saw a val or test example."""
    n_train, n_held = split_sizes(len(perm), val_fraction + test_fraction)
    held = perm[n_train:]
    n_val = min(max(1, round(n_held * val_fraction / (val_fraction + test_fraction))), n_held - 1)
    return perm[:n_train], held[:n_val], held[n_val:]
