"""GPT-2 decoder: config, model and search space, in the style of nanoGPT.

With vocab 50257, context 1024 and tied embeddings the parameter counts equal Hugging Face's
GPT-2: 124,439,808 (S), 354,823,168 (M), 774,030,080 (L).
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .validate import ConfigError, require_depth_in, require_positive_int, validate_block_dims
from ._transformer import Block, init_weights
from .vit import heads_param_name


@dataclass(frozen=True)
class GPT2Config:
    vocab_size: int = 256
    context: int = 128
    depth: int = 4
    width: int = 128
    heads: int = 4
    mlp_ratio: float = 4.0
    tied_embeddings: bool = True
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context", "depth", "width", "heads"):
            require_positive_int(name, getattr(self, name))
        validate_block_dims(self.width, self.heads, self.mlp_ratio, self.dropout)

    @property
    def space(self) -> str:
        return "gpt2"

    @property
    def mlp_hidden(self) -> int:
        return int(self.width * self.mlp_ratio)

    def to_dict(self) -> dict[str, Any]:
        return {"space": "gpt2", **asdict(self)}


class GPT2(nn.Module):
    def __init__(self, config: GPT2Config) -> None:
        super().__init__()
        self.config = c = config
        self.wte = nn.Embedding(c.vocab_size, c.width)
        self.wpe = nn.Embedding(c.context, c.width)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            Block(c.width, c.heads, c.mlp_hidden, causal=True, gelu_approximate="tanh", dropout=c.dropout)
            for _ in range(c.depth)
        )
        self.ln_f = nn.LayerNorm(c.width)
        self.lm_head = nn.Linear(c.width, c.vocab_size, bias=False)
        init_weights(self, residual_projections=c.depth)
        if c.tied_embeddings:
            self.lm_head.weight = self.wte.weight  # one tensor, named once ("wte.weight")

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor | None = None):
        """tokens [B, T] -> (logits [B, T, vocab], mean next-token cross-entropy or None)."""
        t = tokens.shape[1]
        if t > self.config.context:
            raise ValueError(f"sequence length {t} exceeds context={self.config.context}")
        pos = torch.arange(t, device=tokens.device)
        x = self.drop(self.wte(tokens) + self.wpe(pos))  # [B, T, width]
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return logits, loss

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())  # shared tensors are counted once


@dataclass(frozen=True)
class GPT2Space:
    """Ranges Optuna searches and the hypernet is trained on.

    Defaults suit the embedded byte-level corpus on a 2-core CPU; `GPT2Space.gpts_1k()` gives
    the paper's GPTs-1K ranges (LOGAH_NOTES §4).
    """

    vocab_size: int = 256
    context: int = 64
    depth: tuple[int, int] = (1, 6)
    width: tuple[int, int, int] = (32, 128, 16)  # low, high, step
    heads: tuple[int, ...] = (2, 4, 8)
    mlp_ratios: tuple[float, ...] = (2.0, 4.0)
    tied_embeddings: tuple[bool, ...] = (True, False)
    paper_width_rule: bool = False  # GPTs-1K: width range depends on depth, 8 heads
    name: str = field(default="gpt2", init=False)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context"):
            require_positive_int(name, getattr(self, name))
        for name in ("heads", "mlp_ratios", "tied_embeddings"):
            if not getattr(self, name):
                raise ConfigError(name, getattr(self, name), "a non-empty list")
        lo, hi = self.depth
        if not 1 <= lo <= hi:
            raise ConfigError("depth", self.depth, "[low, high] with 1 <= low <= high")
        wlo, whi, step = self.width
        if not (1 <= wlo <= whi and step >= 1):
            raise ConfigError("width", self.width, "[low, high, step] with 1 <= low <= high, step >= 1")
        bad_widths = [w for w in range(wlo, whi + 1, step) if not any(w % h == 0 for h in self.heads)]
        if bad_widths:  # else suggest() would have no valid head count for that width
            raise ConfigError("heads", self.heads, f"a divisor of every width in {self.width} (none divides {bad_widths[0]})")

    @classmethod
    def gpts_1k(cls, vocab_size: int = 50257, context: int = 1024) -> GPT2Space:
        return cls(vocab_size=vocab_size, context=context, depth=(3, 9), width=(72, 256, 8), heads=(8,),
                   mlp_ratios=(4.0,), tied_embeddings=(False,), paper_width_rule=True)

    def _widths(self, depth: int) -> list[int]:
        lo, hi, step = self.width
        if self.paper_width_rule:
            lo, hi = (72, 176) if depth > 5 else (128, 176) if depth >= 4 else (176, 256)
        return [w for w in range(lo, hi + 1, step) if any(w % h == 0 for h in self.heads)]

    def _build(self, **kw: Any) -> GPT2Config:
        return GPT2Config(vocab_size=self.vocab_size, context=self.context, **kw)

    def _heads_param(self, width: int) -> tuple[str, list[int]]:
        """The Optuna parameter that draws the head count for `width`, and its choices: `heads`
        when every head count divides the width (always, with GPTs-1K), else named by the allowed
        set (see `ViTSpace._heads_param`)."""
        options = [h for h in self.heads if width % h == 0]
        return heads_param_name(options, list(self.heads)), options

    def suggest(self, trial) -> GPT2Config:
        """Define-by-run sampling for an Optuna trial (with the paper's rule the width range
        depends on depth; heads: `_heads_param`)."""
        depth = trial.suggest_int("depth", *self.depth)
        widths = self._widths(depth)  # the paper's rule: range depends on depth
        width = trial.suggest_int("width", widths[0], widths[-1], step=self.width[2])
        name, options = self._heads_param(width)
        return self._build(
            depth=depth, width=width, heads=trial.suggest_categorical(name, options),
            mlp_ratio=trial.suggest_categorical("mlp_ratio", list(self.mlp_ratios)),
            tied_embeddings=trial.suggest_categorical("tied_embeddings", list(self.tied_embeddings)),
        )

    def params_of(self, config: GPT2Config) -> dict[str, Any]:
        """The Optuna params for which `suggest` returns `config` (to enqueue a chosen architecture)."""
        name, options = self._heads_param(config.width)
        if not self.contains(config) or config.width not in self._widths(config.depth) or not (
                self.depth[0] <= config.depth <= self.depth[1]) or config.heads not in options \
                or config.mlp_ratio not in self.mlp_ratios or config.tied_embeddings not in self.tied_embeddings:
            raise ConfigError("config", config.to_dict(), f"an architecture of this space: {self.signature()}, "
                                                           f"depth {self.depth}, width {self.width}")
        return {"depth": config.depth, "width": config.width, name: config.heads,
                "mlp_ratio": config.mlp_ratio, "tied_embeddings": config.tied_embeddings}

    def sample(self, rng: random.Random, depth: int | None = None) -> GPT2Config:
        """An architecture for hypernet training (uniform over the space, or over one `depth` of it)."""
        depth = rng.randint(*self.depth) if depth is None else require_depth_in(depth, self.depth)
        width = rng.choice(self._widths(depth))
        return self._build(depth=depth, width=width, heads=rng.choice([h for h in self.heads if width % h == 0]),
                           mlp_ratio=rng.choice(self.mlp_ratios), tied_embeddings=rng.choice(self.tied_embeddings))

    def build(self, config: GPT2Config) -> GPT2:
        return GPT2(config)

    def signature(self) -> dict[str, Any]:
        return {"space": "gpt2", "vocab_size": self.vocab_size, "context": self.context}

    def contains(self, config: GPT2Config) -> bool:
        return config.vocab_size == self.vocab_size and config.context == self.context


GPT2_S = GPT2Config(vocab_size=50257, context=1024, depth=12, width=768, heads=12)
GPT2_M = GPT2Config(vocab_size=50257, context=1024, depth=24, width=1024, heads=16)
GPT2_L = GPT2Config(vocab_size=50257, context=1024, depth=36, width=1280, heads=20)
