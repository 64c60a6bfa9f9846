"""Architectures a hypernet meta-trained on a search space cannot have seen: the evaluation
protocol's held-out shape classes.

An architecture that differs from a meta-training one only in its head count has exactly the same
parameter shapes, so it is not held out. Held out here are whole classes of shapes: widths off the
space's grid, 2x and 4x its widest width, 2x its deepest depth, and an MLP ratio it never draws.
`shares_shapes_with_space` is the check: True when some architecture of the space has every
parameter shape of the given one.
"""
from __future__ import annotations

import itertools
import random
from dataclasses import replace
from functools import lru_cache
from typing import Any

import torch

from search_spaces import GPT2Config, ModelConfig, ViTConfig, build_model

CLASSES = ("off_grid_width", "wide_2x", "wide_4x", "deep_2x", "unseen_mlp_ratio")


def shape_signature(config: ModelConfig) -> tuple:
    """The parameter shapes of a model, in order (names differ with depth, so they are part of it)."""
    return _shapes(config)


@lru_cache(maxsize=4096)
def _shapes(config: ModelConfig) -> tuple:
    with torch.device("meta"):
        model = build_model(config)
    return tuple((name, tuple(p.shape)) for name, p in model.named_parameters())


def _grid_widths(space: Any) -> list[int]:
    lo, hi, step = space.width
    return list(range(lo, hi + 1, step))


def arch_at(space: Any, depth: int, width: int, mlp_ratio: float | None = None) -> ModelConfig:
    """An architecture of `space`'s kind at (depth, width), in or out of its ranges: the largest head
    count of the space that divides the width (else 1), the space's first patch size / tying choice
    and MLP ratio. The held-out classes are built from it, and benchmarks name architectures with it."""
    heads = max((h for h in space.heads if width % h == 0), default=1)
    ratio = space.mlp_ratios[0] if mlp_ratio is None else mlp_ratio
    if space.__class__.__name__ == "ViTSpace":
        return ViTConfig(image_size=space.image_size, channels=space.channels, num_classes=space.num_classes,
                         patch_size=space.patch_sizes[0], depth=depth, width=width, heads=heads, mlp_ratio=ratio)
    return GPT2Config(vocab_size=space.vocab_size, context=space.context, depth=depth, width=width, heads=heads,
                      mlp_ratio=ratio, tied_embeddings=space.tied_embeddings[0])


def off_grid_widths(space: Any) -> list[int]:
    """The widths between the grid's steps that the held-out class uses and meta-training leaves out
    (`nas.pretrain.range_widths`); none where the grid has no width between its steps (step 1)."""
    lo, hi, step = space.width
    between = [w for w in range(lo + step // 2, hi, step) if (w - lo) % step]
    return [w for w in between if w % 8 == 0 or w % 4 == 0][:3]


def _unseen_ratio(space: Any) -> float:
    return next(r for r in (3.0, 1.5, 6.0, 8.0) if r not in space.mlp_ratios)


def unseen_shape_classes(space: Any) -> dict[str, list[ModelConfig]]:
    """A few architectures per held-out shape class of `space` (`CLASSES`), none of which shares
    every parameter shape with an architecture of the space."""
    lo, hi, step = space.width
    d_lo, d_hi = space.depth
    d_mid = (d_lo + d_hi) // 2
    mid_width = _grid_widths(space)[len(_grid_widths(space)) // 2]
    classes = {
        "off_grid_width": [arch_at(space, d, w) for d, w in zip((d_lo, d_mid, d_hi), off_grid_widths(space))],
        "wide_2x": [arch_at(space, d, 2 * hi) for d in (d_lo, d_mid)],
        "wide_4x": [arch_at(space, d_lo, 4 * hi)],
        "deep_2x": [arch_at(space, 2 * d_hi, w) for w in (lo, mid_width)],
        "unseen_mlp_ratio": [arch_at(space, d_mid, mid_width, _unseen_ratio(space))],
    }
    return {name: [c for c in configs if not shares_shapes_with_space(c, space)] for name, configs in classes.items()}


def draw_unseen(space: Any, per_class: int, seed: int) -> dict[str, list[ModelConfig]]:
    """`per_class` distinct architectures per held-out class drawn at random (seeded) over the whole
    class, not only at the fixed depths and widths of `unseen_shape_classes`: the space's every depth
    for the off-grid widths, 2x and 4x the widest width and the unseen MLP ratio, depths up to 2x the
    deepest; other widths from the grid. A second draw is another reviewer's set of unseen models."""
    if per_class < 1:
        raise ValueError(f"per_class: at least 1, got {per_class}")
    hi = space.width[1]
    d_lo, d_hi = space.depth
    depths, grid = list(range(d_lo, d_hi + 1)), _grid_widths(space)
    off_grid, ratio = off_grid_widths(space), _unseen_ratio(space)
    rules = {
        "off_grid_width": lambda rng: arch_at(space, rng.choice(depths), rng.choice(off_grid)),
        "wide_2x": lambda rng: arch_at(space, rng.choice(depths), 2 * hi),
        "wide_4x": lambda rng: arch_at(space, rng.choice(depths), 4 * hi),
        "deep_2x": lambda rng: arch_at(space, rng.randint(d_hi + 1, 2 * d_hi), rng.choice(grid)),
        "unseen_mlp_ratio": lambda rng: arch_at(space, rng.choice(depths), rng.choice(grid), ratio),
    }
    rng = random.Random(seed)
    drawn: dict[str, list[ModelConfig]] = {}
    for name, rule in rules.items():
        found: list[ModelConfig] = []
        tries = 0 if name == "off_grid_width" and not off_grid else 100 * per_class  # a grid of step 1 has none
        for _ in range(tries):
            config = rule(rng)
            if config not in found and not shares_shapes_with_space(config, space):
                found.append(config)
            if len(found) == per_class:
                break
        drawn[name] = found  # fewer where the class has fewer distinct models (one depth, one width)
    return drawn


def space_shape_signatures(space: Any) -> set[tuple]:
    """The parameter-shape signatures of every architecture `space` can draw (enumerated over its
    grid and filtered by `space.contains`; head counts do not change shapes)."""
    return _space_signatures(space)


@lru_cache(maxsize=16)
def _space_signatures(space: Any) -> frozenset:
    found = set()
    extra = ({"patch_size": space.patch_sizes} if space.__class__.__name__ == "ViTSpace"
             else {"tied_embeddings": space.tied_embeddings})
    keys = ("depth", "width", "mlp_ratio", *extra)
    grid = itertools.product(range(space.depth[0], space.depth[1] + 1), _grid_widths(space), space.mlp_ratios,
                             *extra.values())
    for values in grid:
        fields = dict(zip(keys, values))
        for heads in space.heads:
            if fields["width"] % heads:
                continue
            config = replace(arch_at(space, fields["depth"], fields["width"], fields["mlp_ratio"]), heads=heads,
                             **{k: fields[k] for k in extra})
            if space.contains(config):
                found.add(shape_signature(config))
                break  # other head counts: the same shapes
    return frozenset(found)


def shares_shapes_with_space(config: ModelConfig, space: Any) -> bool:
    return shape_signature(config) in space_shape_signatures(space)


__all__ = ["CLASSES", "arch_at", "draw_unseen", "off_grid_widths", "shape_signature", "shares_shapes_with_space",
           "space_shape_signatures", "unseen_shape_classes"]
