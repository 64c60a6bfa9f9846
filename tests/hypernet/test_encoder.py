"""Graphormer encoder: batch invariance (released code's bug 1), masks, spatial bias."""
import pytest
import torch

from hypernet.encoder import GraphEncoder
from hypernet.graph import build_graph
from search_spaces import GPT2Config, ViTConfig


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return GraphEncoder(d=32, layers=2, heads=4, cutoff=50).eval()


def _encode(encoder, graphs):
    from torch_geometric.data import Batch

    h, mask = encoder(Batch.from_data_list(graphs))
    return h, mask


def test_output_does_not_depend_on_other_graphs(encoder):
    small = build_graph(GPT2Config(depth=1))
    mid = build_graph(ViTConfig(depth=2))
    big = build_graph(GPT2Config(depth=4, tied_embeddings=False))
    alone, _ = _encode(encoder, [mid])
    alone = alone[0]
    for batch, pos in (([small, mid, big], 1), ([big, mid], 1), ([mid, small], 0), ([small, big, mid], 2)):
        h, mask = _encode(encoder, batch)
        got = h[pos][mask[pos]]
        assert got.shape == alone.shape
        torch.testing.assert_close(got, alone, atol=1e-6, rtol=0)


def test_mask_and_shapes(encoder):
    graphs = [build_graph(GPT2Config(depth=1)), build_graph(GPT2Config(depth=3))]
    h, mask = _encode(encoder, graphs)
    assert h.shape == (2, graphs[1].num_nodes, 32)
    assert mask.sum(1).tolist() == [g.num_nodes for g in graphs]
    assert torch.isfinite(h).all()


def test_structure_changes_embeddings(encoder):
    """Same node multiset, different wiring distance: the spatial bias must make a difference."""
    a = build_graph(ViTConfig(depth=2))
    b = build_graph(ViTConfig(depth=2), cutoff=2)  # all SPD > 2 collapse to 2
    ha, _ = _encode(encoder, [a])
    hb, _ = _encode(encoder, [b])
    assert not torch.allclose(ha, hb)


def test_gradients_reach_every_embedding_table(encoder):
    graphs = [build_graph(ViTConfig(depth=1)), build_graph(GPT2Config(depth=2))]
    h, mask = _encode(encoder, graphs)
    h[mask].pow(2).sum().backward()
    for name, p in encoder.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    encoder.zero_grad()
