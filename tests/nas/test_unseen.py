"""The protocol's held-out shape classes are really unseen: no architecture of the space has all
their parameter shapes (a head-count sibling would)."""
from __future__ import annotations

import random
from dataclasses import replace

import pytest

from nas.unseen import CLASSES, draw_unseen, shares_shapes_with_space, unseen_shape_classes
from search_spaces import get_space

SPACES = {"vit": dict(image_size=8, channels=1, num_classes=10), "gpt2": dict(vocab_size=256)}


@pytest.mark.parametrize("name", sorted(SPACES))
def test_every_held_out_class_is_present_and_shares_no_shapes(name):
    space = get_space(name, **SPACES[name])
    classes = unseen_shape_classes(space)
    assert set(classes) == set(CLASSES) and all(classes.values())
    for configs in classes.values():
        for config in configs:
            assert not shares_shapes_with_space(config, space)
    widths = {c.width for c in classes["wide_4x"]}
    assert widths == {4 * space.width[1]} and {c.depth for c in classes["deep_2x"]} == {2 * space.depth[1]}


def test_a_head_count_sibling_is_not_held_out():
    """The check can fail: an architecture of the space with other heads has every shape of one
    the space can draw."""
    space = get_space("vit", **SPACES["vit"])
    config = space.sample(random.Random(0))
    sibling = replace(config, heads=next(h for h in space.heads if h != config.heads and config.width % h == 0))
    assert shares_shapes_with_space(config, space) and shares_shapes_with_space(sibling, space)


@pytest.mark.parametrize("name", sorted(SPACES))
def test_a_draw_covers_each_class_at_random_with_models_meta_training_never_draws(name):
    from nas.pretrain import range_widths

    space = get_space(name, **SPACES[name])
    (d_lo, d_hi), hi = space.depth, space.width[1]
    drawn = draw_unseen(space, 3, seed=0)
    assert set(drawn) == set(CLASSES)
    fixed = unseen_shape_classes(space)
    for cls, configs in drawn.items():
        assert len(configs) == len(set(configs)) == 3, cls  # distinct
        assert not any(shares_shapes_with_space(c, space) for c in configs), cls
    assert {c.width for c in drawn["off_grid_width"]} <= {c.width for c in fixed["off_grid_width"]}
    assert not {c.width for c in drawn["off_grid_width"]} & set(range_widths(space))  # held out of meta-training
    assert {c.width for c in drawn["wide_2x"]} == {2 * hi} and {c.width for c in drawn["wide_4x"]} == {4 * hi}
    assert all(d_hi < c.depth <= 2 * d_hi for c in drawn["deep_2x"])
    assert all(c.mlp_ratio not in space.mlp_ratios for c in drawn["unseen_mlp_ratio"])
    assert all(d_lo <= c.depth <= d_hi for cls in ("off_grid_width", "wide_2x", "wide_4x", "unseen_mlp_ratio")
               for c in drawn[cls])
    # the whole class, not the fixed set's depths: over many draws every depth of the space turns up
    many = draw_unseen(space, 6, seed=1)
    assert {c.depth for c in many["wide_2x"]} == set(range(d_lo, d_hi + 1))


def test_a_draw_is_reproducible_by_its_seed_and_refuses_an_empty_class():
    space = get_space("vit", **SPACES["vit"])
    assert draw_unseen(space, 2, seed=5) == draw_unseen(space, 2, seed=5)
    assert draw_unseen(space, 2, seed=5) != draw_unseen(space, 2, seed=6)
    with pytest.raises(ValueError, match="per_class"):
        draw_unseen(space, 0, seed=0)


def test_a_grid_of_step_one_has_no_off_grid_width_and_meta_training_keeps_every_width():
    from nas.pretrain import range_widths
    from nas.unseen import off_grid_widths

    stepped = get_space("vit", **SPACES["vit"])
    assert off_grid_widths(stepped) == [40, 56, 72] and not set(off_grid_widths(stepped)) & set(range_widths(stepped))
    space = get_space("vit", **SPACES["vit"], width=(32, 64, 1), heads=(1, 2, 4))
    assert off_grid_widths(space) == [] and unseen_shape_classes(space)["off_grid_width"] == []
    assert draw_unseen(space, 2, seed=0)["off_grid_width"] == []
    assert range_widths(space) == list(range(32, 65))
