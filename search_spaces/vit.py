"""Vision Transformer: config, model and search space.

Parameter counts match torchvision's ViT for the same sizes (ViT-B/16 at 224 px with 1000
classes has 86,567,656 parameters; ViT-L/16 has 304,326,632).
"""
from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .validate import ConfigError, require_depth_in, require_positive_int, validate_block_dims
from ._transformer import Block, init_weights


@dataclass(frozen=True)
class ViTConfig:
    image_size: int = 8
    channels: int = 1
    patch_size: int = 2
    depth: int = 4
    width: int = 64
    heads: int = 4
    mlp_ratio: float = 4.0
    num_classes: int = 10
    class_token: bool = True
    learned_pos_embedding: bool = True  # False: fixed 2-D sin-cos table, not a parameter
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("image_size", "channels", "patch_size", "depth", "width", "heads", "num_classes"):
            require_positive_int(name, getattr(self, name))
        if self.image_size % self.patch_size:
            divisors = [p for p in range(1, self.image_size + 1) if self.image_size % p == 0]
            raise ConfigError("patch_size", self.patch_size, f"a divisor of image_size={self.image_size}: {divisors}")
        validate_block_dims(self.width, self.heads, self.mlp_ratio, self.dropout)

    @property
    def space(self) -> str:
        return "vit"

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def num_tokens(self) -> int:
        return self.num_patches + int(self.class_token)

    @property
    def mlp_hidden(self) -> int:
        return int(self.width * self.mlp_ratio)

    def to_dict(self) -> dict[str, Any]:
        return {"space": "vit", **asdict(self)}


def sincos_2d(grid: int, width: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine positional table [grid*grid, width] (MAE-style)."""
    if width % 4:
        raise ConfigError("width", width, "a multiple of 4 when learned_pos_embedding=False")
    ys, xs = torch.meshgrid(torch.arange(grid, dtype=torch.float32), torch.arange(grid, dtype=torch.float32), indexing="ij")
    omega = 1.0 / 10000 ** (torch.arange(width // 4, dtype=torch.float32) / (width // 4))
    ys = ys.flatten()[:, None] * omega[None]
    xs = xs.flatten()[:, None] * omega[None]
    return torch.cat([xs.sin(), xs.cos(), ys.sin(), ys.cos()], dim=1)


class ViT(nn.Module):
    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.config = c = config
        # A Linear on flattened patches has exactly the parameters of Conv2d(C, width, p, stride=p).
        self.patch_embed = nn.Linear(c.channels * c.patch_size**2, c.width)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.width)) if c.class_token else None
        if c.learned_pos_embedding:
            self.pos_embed = nn.Parameter(torch.zeros(1, c.num_tokens, c.width))
        else:
            table = sincos_2d(c.image_size // c.patch_size, c.width)
            if c.class_token:
                table = torch.cat([torch.zeros(1, c.width), table])
            self.register_buffer("pos_embed", table[None], persistent=False)
        self.blocks = nn.ModuleList(
            Block(c.width, c.heads, c.mlp_hidden, causal=False, gelu_approximate="none", dropout=c.dropout,
                  layer_norm_eps=1e-6)
            for _ in range(c.depth)
        )
        self.ln_f = nn.LayerNorm(c.width, eps=1e-6)
        self.head = nn.Linear(c.width, c.num_classes)
        init_weights(self, residual_projections=c.depth)

    def forward(self, images: torch.Tensor, targets: torch.Tensor | None = None):
        """images [B, C, H, W] -> (logits [B, classes], mean cross-entropy or None)."""
        c = self.config
        if images.shape[1:] != (c.channels, c.image_size, c.image_size):
            raise ValueError(
                f"images have shape {tuple(images.shape[1:])}, model expects {(c.channels, c.image_size, c.image_size)}"
            )
        patches = rearrange(images, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=c.patch_size, p2=c.patch_size)
        x = self.patch_embed(patches)  # [B, N, width]
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.pos_embed
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        pooled = x[:, 0] if c.class_token else x.mean(dim=1)
        logits = self.head(pooled)
        loss = None if targets is None else F.cross_entropy(logits, targets)
        return logits, loss

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def heads_param_name(options: list[int], all_heads: list[int]) -> str:
    """`heads` when `options` are all the space's head counts, else `heads_of_<options>` (see
    `ViTSpace._heads_param`: an Optuna categorical needs fixed choices per name)."""
    if sorted(options) == sorted(all_heads):
        return "heads"
    return "heads_of_" + "_".join(str(h) for h in options)


def _choices(field_name: str, values: tuple) -> None:
    if not values:
        raise ConfigError(field_name, values, "a non-empty list")


@dataclass(frozen=True)
class ViTSpace:
    """Ranges Optuna searches and the hypernet is trained on.

    Defaults suit the embedded 8x8 digits on a 2-core CPU; `ViTSpace.vits_1k()` gives the
    paper's ViTs-1K ranges (LOGAH_NOTES §4).
    """

    image_size: int = 8
    channels: int = 1
    num_classes: int = 10
    patch_sizes: tuple[int, ...] = (2, 4)
    depth: tuple[int, int] = (1, 6)
    width: tuple[int, int, int] = (32, 128, 16)  # low, high, step
    heads: tuple[int, ...] = (2, 4, 8)
    mlp_ratios: tuple[float, ...] = (2.0, 4.0)
    paper_width_rule: bool = False  # ViTs-1K: width range depends on depth
    name: str = field(default="vit", init=False)

    def __post_init__(self) -> None:
        for name in ("image_size", "channels", "num_classes"):
            require_positive_int(name, getattr(self, name))
        for name in ("patch_sizes", "heads", "mlp_ratios"):
            _choices(name, getattr(self, name))
        bad = [p for p in self.patch_sizes if self.image_size % p]
        if bad:
            raise ConfigError("patch_sizes", self.patch_sizes, f"divisors of image_size={self.image_size}")
        lo, hi = self.depth
        if not 1 <= lo <= hi:
            raise ConfigError("depth", self.depth, "[low, high] with 1 <= low <= high")
        wlo, whi, step = self.width
        if not (1 <= wlo <= whi and step >= 1):
            raise ConfigError("width", self.width, "[low, high, step] with 1 <= low <= high, step >= 1")
        bad_widths = [w for w in range(wlo, whi + 1, step) if not any(w % h == 0 for h in self.heads)]
        if bad_widths and not self.paper_width_rule:  # else suggest() would have no valid head count
            raise ConfigError("heads", self.heads, f"a divisor of every width in {self.width} (none divides {bad_widths[0]})")

    @classmethod
    def vits_1k(cls, image_size: int = 32, channels: int = 3, num_classes: int = 10) -> ViTSpace:
        return cls(image_size=image_size, channels=channels, num_classes=num_classes, patch_sizes=(2, 4),
                   depth=(3, 9), width=(128, 512, 32), heads=(3, 4, 6, 8, 12), mlp_ratios=(4.0,),
                   paper_width_rule=True)

    def _width_range(self, depth: int) -> tuple[int, int, int]:
        if not self.paper_width_rule:
            return self.width
        lo, hi = (128, 256) if depth > 5 else (256, 384) if depth >= 4 else (384, 512)
        return lo, hi, 32

    def _heads_for(self, width: int) -> list[int]:
        if self.paper_width_rule:  # ViTs-1K rule
            for divisor, options in ((12, [3, 6, 12]), (6, [3, 6]), (3, [3])):
                if width % divisor == 0:
                    return options
            return [4, 8]
        return [h for h in self.heads if width % h == 0]

    def _widths(self, depth: int) -> list[int]:
        lo, hi, step = self._width_range(depth)
        return [w for w in range(lo, hi + 1, step) if self._heads_for(w)]

    def _build(self, **kw: Any) -> ViTConfig:
        return ViTConfig(image_size=self.image_size, channels=self.channels, num_classes=self.num_classes, **kw)

    def _heads_param(self, width: int) -> tuple[str, list[int]]:
        """The Optuna parameter that draws the head count for `width`, and its choices.

        Optuna fixes a categorical's choices per parameter name, yet which head counts divide a
        width depends on the width. So the name is `heads` when every head count of the space is
        allowed, else it names the allowed set (`heads_of_3_6_12`): one name per distinct set
        (few: ViTs-1K has two), so TPE learns each from many trials and the value is the head
        count itself, as users read it in the Optuna CLI, dashboard and importances."""
        options = self._heads_for(width)
        return heads_param_name(options, list(self.heads)), options

    def suggest(self, trial) -> ViTConfig:
        """Define-by-run sampling for an Optuna trial. With the paper's rule the width range
        depends on depth (Optuna allows a param's range to vary per trial); heads: `_heads_param`."""
        depth = trial.suggest_int("depth", *self.depth)
        wlo, whi, step = self._width_range(depth)
        width = trial.suggest_int("width", wlo, whi, step=step)
        name, options = self._heads_param(width)
        return self._build(
            depth=depth, width=width, heads=trial.suggest_categorical(name, options),
            patch_size=trial.suggest_categorical("patch_size", list(self.patch_sizes)),
            mlp_ratio=trial.suggest_categorical("mlp_ratio", list(self.mlp_ratios)),
        )

    def params_of(self, config: ViTConfig) -> dict[str, Any]:
        """The Optuna params for which `suggest` returns `config` (to enqueue a chosen architecture)."""
        if not self.contains(config) or config.width not in self._widths(config.depth) or not (
                self.depth[0] <= config.depth <= self.depth[1]) or config.patch_size not in self.patch_sizes \
                or config.mlp_ratio not in self.mlp_ratios or config.heads not in self._heads_for(config.width):
            raise ConfigError("config", config.to_dict(), f"an architecture of this space: {self.signature()}, "
                                                           f"depth {self.depth}, width {self.width}")
        return {"depth": config.depth, "width": config.width, self._heads_param(config.width)[0]: config.heads,
                "patch_size": config.patch_size, "mlp_ratio": config.mlp_ratio}

    def sample(self, rng: random.Random, depth: int | None = None) -> ViTConfig:
        """An architecture for hypernet training (uniform over the space, or over one `depth` of it)."""
        depth = rng.randint(*self.depth) if depth is None else require_depth_in(depth, self.depth)
        width = rng.choice(self._widths(depth))
        return self._build(depth=depth, width=width, heads=rng.choice(self._heads_for(width)),
                           patch_size=rng.choice(self.patch_sizes), mlp_ratio=rng.choice(self.mlp_ratios))

    def build(self, config: ViTConfig) -> ViT:
        return ViT(config)

    def signature(self) -> dict[str, Any]:
        """What a hypernet checkpoint must agree on to be used with this space."""
        return {"space": "vit", "image_size": self.image_size, "channels": self.channels,
                "num_classes": self.num_classes}

    def contains(self, config: ViTConfig) -> bool:
        return (config.image_size, config.channels, config.num_classes) == (
            self.image_size, self.channels, self.num_classes)


# Reference sizes (torchvision / timm): patch 16, 224 px, 1000 classes.
VIT_S = ViTConfig(image_size=224, channels=3, patch_size=16, depth=12, width=384, heads=6, num_classes=1000)
VIT_B = ViTConfig(image_size=224, channels=3, patch_size=16, depth=12, width=768, heads=12, num_classes=1000)
VIT_L = ViTConfig(image_size=224, channels=3, patch_size=16, depth=24, width=1024, heads=16, num_classes=1000)
