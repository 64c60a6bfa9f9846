"""build_graph: every trainable parameter on exactly one node, structure, features, SPD."""
import random

import pytest
import torch

from hypernet.graph import NUM_SHAPE_BUCKETS, Flag, Op, Role, build_graph, shape_bucket
from search_spaces import GPT2_L, GPT2Config, GPT2Space, ViTConfig, ViTSpace, build_model

CONFIGS = [
    ViTConfig(),
    ViTConfig(class_token=False),
    ViTConfig(learned_pos_embedding=False),
    ViTConfig(class_token=False, learned_pos_embedding=False, depth=1),
    GPT2Config(tied_embeddings=True),
    GPT2Config(tied_embeddings=False, depth=2),
]


def _node_params(g):
    return [(n, tuple(s)) for names, shapes in zip(g.param_names, g.param_shapes) for n, s in zip(names, shapes)]


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_every_parameter_on_exactly_one_node(config):
    g = build_graph(config)
    expected = {n: tuple(p.shape) for n, p in build_model(config).named_parameters()}
    got = _node_params(g)
    assert sorted(n for n, _ in got) == sorted(expected)  # no duplicates, nothing missing
    assert dict(got) == expected
    assert g.param_order == list(expected)
    assert all(role in Role.ALL for roles in g.param_roles for role in roles)


def test_sampled_configs_map_exactly():
    rng = random.Random(0)
    for space in (ViTSpace(), GPT2Space()):
        for _ in range(4):
            c = space.sample(rng)
            g = build_graph(c)
            assert sorted(n for n, _ in _node_params(g)) == sorted(dict(build_model(c).named_parameters()))


def test_tied_lm_head_has_no_parameter_and_follows_ln_f():
    g = build_graph(GPT2Config(tied_embeddings=True, depth=2))
    i = g.node_names.index("lm_head")
    assert g.param_names[i] == []
    assert g.x[i, 0] == Op.LM_HEAD and g.x[i, 3] == Flag.TIED
    j = g.node_names.index("ln_f")
    assert [j, i] in g.edge_index.T.tolist()
    assert g.out_degree[i] == 0 and g.in_degree[i] == 1  # the sink, not dangling from the input

    untied = build_graph(GPT2Config(tied_embeddings=False, depth=2))
    k = untied.node_names.index("lm_head")
    assert untied.param_names[k] == ["lm_head.weight"] and untied.x[k, 3] == Flag.NONE


def test_node_counts_and_ops():
    for depth in (1, 3):
        vit = build_graph(ViTConfig(depth=depth))
        gpt = build_graph(GPT2Config(depth=depth))
        assert vit.num_nodes == 9 * depth + 8  # input patch cls pos sum | 9 per block | ln_f pool head
        assert gpt.num_nodes == 9 * depth + 6  # input wte wpe sum | 9 per block | ln_f lm_head
        ops = gpt.x[:, 0].tolist()
        assert ops.count(Op.ATTENTION) == depth and ops.count(Op.SUM) == 2 * depth + 1
        assert ops.count(Op.TOKEN_EMBED) == 1 and ops.count(Op.POS_EMBED) == 1
    assert Op.FIXED_POS in build_graph(ViTConfig(learned_pos_embedding=False)).x[:, 0].tolist()
    assert Op.CLS_TOKEN not in build_graph(ViTConfig(class_token=False)).x[:, 0].tolist()
    assert Op.POOL_MEAN in build_graph(ViTConfig(class_token=False)).x[:, 0].tolist()


def test_deterministic():
    a, b = build_graph(GPT2Config()), build_graph(GPT2Config())
    for key in ("x", "edge_index", "pair_index", "pair_spd"):
        assert torch.equal(a[key], b[key])
    assert a.node_names == b.node_names


def test_spd_matches_structure():
    c = GPT2Config(depth=2)
    g = build_graph(c, cutoff=5)
    n = g.num_nodes
    spd = g.pair_spd.view(n, n)
    assert torch.equal(g.pair_index[0].view(n, n), torch.arange(n)[:, None].expand(n, n))
    assert (spd.diagonal() == 0).all()
    for s, d in g.edge_index.T.tolist():
        assert spd[s, d] == 1
        assert spd[d, s] == 6  # edges are directed forward: no way back (cutoff + 1)
    # input -> wte -> sum, 2 residual hops per block, -> ln_f -> lm_head = 8 > cutoff: capped at 5
    assert spd.max() == 6 and spd[0, n - 1] == 5
    full = build_graph(c, cutoff=50).pair_spd.view(n, n)
    assert full[0, n - 1] == 2 + 2 * c.depth + 2


def test_shape_buckets():
    assert shape_bucket(0) == 0 and shape_bucket(1) == 1
    assert shape_bucket(72) != shape_bucket(80)
    assert shape_bucket(768) != shape_bucket(1024)
    assert shape_bucket(50257) < NUM_SHAPE_BUCKETS - 1
    assert shape_bucket(10**9) == NUM_SHAPE_BUCKETS - 1
    g = build_graph(GPT2_L)  # built on the meta device: no 3 GB allocation
    assert g.num_nodes == 9 * 36 + 6
    assert int(g.x[:, 1:3].max()) < NUM_SHAPE_BUCKETS
