"""The protocol's held-out shape classes are really unseen: no architecture of the space has all
their parameter shapes (a head-count sibling would)."""
from __future__ import annotations

import random
from dataclasses import replace

import pytest

from nas.unseen import CLASSES, shares_shapes_with_space, unseen_shape_classes
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
