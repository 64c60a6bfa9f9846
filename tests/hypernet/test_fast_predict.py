"""The prediction path without torch_geometric, scipy or torch._dynamo (issue 21): the same numbers
as the PyG / scipy path it replaced, bit for bit."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from hypernet import LoGAH, LoGAHConfig
from hypernet.anchor import segments
from hypernet.encoder import NodeEmbedding
from hypernet.graph import arch_graph, build_graph, capped_distances, meta_model
from search_spaces import GPT2Config, ViTConfig, build_model

CONFIGS = [GPT2Config(depth=1), GPT2Config(depth=3, width=96, heads=4, tied_embeddings=False),
           ViTConfig(depth=2), ViTConfig(depth=1, class_token=False, learned_pos_embedding=False)]


@pytest.mark.parametrize("config", CONFIGS, ids=["gpt2-1", "gpt2-3-untied", "vit-2", "vit-pool"])
@pytest.mark.parametrize("cutoff", [2, 5, 50])
def test_capped_distances_equal_scipys_shortest_paths(config, cutoff):
    import numpy as np
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import shortest_path

    graph = arch_graph(config, cutoff)
    n = graph.num_nodes
    src, dst = graph.edge_index.tolist()
    dist = shortest_path(csr_matrix((np.ones(len(src)), (src, dst)), shape=(n, n)), method="D", directed=True,
                         unweighted=True)
    expected = np.where(np.isfinite(dist), np.minimum(dist, cutoff), cutoff + 1).astype(np.int64)
    got = capped_distances(n, src, dst, cutoff)
    assert got.dtype == torch.long and torch.equal(got, torch.from_numpy(expected))
    assert torch.equal(graph.pair_spd, got.flatten())
    assert int(got.max()) == cutoff + 1  # later nodes never reach earlier ones


def test_build_graph_is_the_pyg_form_of_arch_graph():
    from torch_geometric.data import Data

    a, b = arch_graph(CONFIGS[1]), build_graph(CONFIGS[1])
    assert isinstance(b, Data) and a.to_pyg() is a.to_pyg()
    for key in ("x", "edge_index", "pair_index", "pair_spd", "in_degree", "out_degree"):
        assert torch.equal(getattr(a, key), getattr(b, key)), key
    for key in ("num_nodes", "node_names", "param_names", "param_shapes", "param_roles", "param_order", "depth",
                "config_json"):
        assert getattr(a, key) == getattr(b, key), key


@pytest.fixture(scope="module")
def covered_hn():
    """A hypernet with a coverage record, so shape rows are interpolated (the path shipped ones take)."""
    torch.manual_seed(0)
    hn = LoGAH(LoGAHConfig(variant="tiny", hidden=32, layers=2, heads=4, rank=8)).eval()
    hn.record_coverage([GPT2Config(depth=2, width=64, heads=4), ViTConfig(depth=2, width=64, heads=4)])
    return hn


@pytest.mark.parametrize("config", CONFIGS, ids=["gpt2-1", "gpt2-3-untied", "vit-2", "vit-pool"])
def test_one_graph_without_pyg_encodes_exactly_as_a_pyg_batch_of_one(covered_hn, config):
    from torch_geometric.data import Batch

    graph = covered_hn.graph(config)
    (fast,) = covered_hn.embed([graph])  # forward_graph: no PyG
    h, mask = covered_hn.encoder(Batch.from_data_list([graph.to_pyg()]))  # the previous path
    assert torch.equal(fast, h[mask])
    # several graphs still go through a padded PyG batch: the same embeddings up to float rounding
    pair = covered_hn.embed([graph, covered_hn.graph(CONFIGS[0])])
    torch.testing.assert_close(pair[0], fast, atol=1e-5, rtol=1e-5)


def test_meta_model_has_the_models_parameters_and_skips_the_init_fills():
    for config in CONFIGS:
        meta = meta_model(config)
        real = build_model(config)
        assert [(n, p.shape) for n, p in meta.named_parameters()] == [(n, p.shape) for n, p in real.named_parameters()]
        assert all(p.is_meta for p in meta.parameters())
    tied = meta_model(GPT2Config(depth=1))
    assert tied.lm_head.weight is tied.wte.weight


def test_predicting_imports_neither_pyg_nor_scipy_nor_dynamo():
    """The predict command's path: build the empty model, predict a grown GPT-2 into it."""
    code = """
import sys
import torch
from hypernet import LoGAH, LoGAHConfig
from nas.predict import predicted_model
from search_spaces import GPT2Config
hn = LoGAH(LoGAHConfig(variant="tiny", hidden=32, layers=1, heads=4, rank=8)).eval()
hn.record_coverage([GPT2Config(depth=2, width=64, heads=4)])
model = predicted_model(hn, GPT2Config(depth=3, width=96, heads=4))
print(sorted(m for m in ("torch_geometric", "scipy", "torch._dynamo", "sympy") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


@pytest.mark.parametrize("config", [GPT2Config(depth=3, width=96, heads=4),
                                    GPT2Config(depth=3, width=96, heads=4, tied_embeddings=False),
                                    GPT2Config(depth=1, width=32, heads=4)], ids=["grown", "grown-untied", "covered"])
def test_predicted_model_holds_exactly_predict(covered_hn, config):
    """The empty model (meta device, then torch.empty per parameter, ties kept) is fully overwritten."""
    from nas.predict import _empty_model, predicted_model

    empty = _empty_model(config)
    assert [(n, p.shape) for n, p in empty.named_parameters()] == \
           [(n, p.shape) for n, p in build_model(config).named_parameters()]
    assert (empty.lm_head.weight is empty.wte.weight) == config.tied_embeddings
    model = predicted_model(covered_hn, config)
    expected = covered_hn.predict(config)
    params = dict(model.named_parameters())
    assert params.keys() == expected.keys()
    assert all(torch.equal(params[k], v) for k, v in expected.items())


def test_segments_cover_the_fused_qkv_weight_and_bias():
    assert segments("blocks.0.attn.c_attn.weight") == segments("blocks.3.attn.c_attn.bias") == 3
    assert segments("blocks.0.attn.c_proj.weight") == segments("blocks.0.mlp.c_fc.bias") == segments("wte.weight") == 1


def test_cached_known_rows_follow_every_change_of_the_record():
    """`_known` is cached against the buffer's version: mark, fills, load_state_dict and .to() all refresh it."""

    def uncached(seen):
        return None if seen.all() or not seen[1:].any() else seen[1:].nonzero().squeeze(1) + 1

    torch.manual_seed(0)
    emb = NodeEmbedding(8, cutoff=4, max_degree=4)
    ids = torch.tensor([5, 12, 15, 20, 30])
    assert emb._known(emb.out_seen) is None  # nothing recorded: the plain table
    emb.out_seen[[0, 10, 20]] = True
    assert torch.equal(emb._known(emb.out_seen), uncached(emb.out_seen))
    before = emb._dim(emb.out_dim, emb.out_seen, ids)
    assert emb._known(emb.out_seen) is emb._known(emb.out_seen)  # cached while unchanged
    emb.mark(torch.tensor([[0, 15, 0, 0]]))  # a new row: the cache must not keep [10, 20]
    assert torch.equal(emb._known(emb.out_seen), torch.tensor([10, 15, 20]))
    assert not torch.equal(emb._dim(emb.out_dim, emb.out_seen, ids), before)
    state = {k: v.clone() for k, v in emb.state_dict().items()}
    emb.out_seen.fill_(True)  # every row used: the plain table
    assert emb._known(emb.out_seen) is None
    emb.load_state_dict(state)
    assert torch.equal(emb._known(emb.out_seen), torch.tensor([10, 15, 20]))
    emb.reset_coverage()
    assert emb._known(emb.out_seen) is None
    emb.out_seen[[0, 7]] = True
    moved = emb.to(torch.float64)  # _apply: buffers may be new tensors
    assert torch.equal(moved._known(moved.out_seen), uncached(moved.out_seen))
    with torch.inference_mode():
        assert torch.equal(emb._known(emb.out_seen), torch.tensor([7]))
