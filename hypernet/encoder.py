"""Graphormer encoder: node embeddings of a (meta-)batch of architecture graphs.

Graphs are padded to a dense [B, N, d] batch with `to_dense_batch`; padded keys are masked out
of every attention row and padded rows are dropped with the returned mask (`h[mask]`), so a
graph's embeddings never depend on the other graphs in the batch (LOGAH_NOTES §6 bug 1).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .graph import NUM_SHAPE_BUCKETS, Flag, Op

if TYPE_CHECKING:
    from torch_geometric.data import Batch


class NodeEmbedding(nn.Module):
    """x0 = op + [out-dim ; in-dim] + flag + in/out-degree + distance-from-input embeddings.

    Shape buckets are rows of a table, but only the rows meta-training used carry anything learned
    (a bucket never drawn keeps its random init). So the table remembers which rows training used
    (`out_seen` / `in_seen`, saved with the weights), and outside training a dimension whose bucket
    was never used is embedded by linear interpolation, in log-dimension, between the nearest used
    buckets below and above it, and clamped to the nearest used bucket beyond either end: an
    off-grid width lies between its grid neighbours instead of on a random row. Until anything is
    recorded (a fresh hypernet), or when every row counts as used (checkpoints written before the
    record existed), the lookup is the plain table.
    """

    def __init__(self, d: int, cutoff: int, max_degree: int) -> None:
        super().__init__()
        self.max_degree = max_degree
        self.op = nn.Embedding(len(Op), d)
        self.out_dim = nn.Embedding(NUM_SHAPE_BUCKETS, d // 2)
        self.in_dim = nn.Embedding(NUM_SHAPE_BUCKETS, d - d // 2)
        self.flag = nn.Embedding(len(Flag), d)
        self.in_degree = nn.Embedding(max_degree + 1, d)
        self.out_degree = nn.Embedding(max_degree + 1, d)
        self.input_dist = nn.Embedding(cutoff + 2, d)  # 0..cutoff, cutoff+1 = unreachable
        self.register_buffer("out_seen", torch.zeros(NUM_SHAPE_BUCKETS, dtype=torch.bool))
        self.register_buffer("in_seen", torch.zeros(NUM_SHAPE_BUCKETS, dtype=torch.bool))
        self._known_cache: dict[int, tuple[torch.Tensor, int, torch.Tensor | None]] = {}

    def reset_coverage(self) -> None:
        """Forget which shape rows were trained (before meta-training a hypernet without a record)."""
        self.out_seen.zero_()
        self.in_seen.zero_()

    @torch.no_grad()
    def mark(self, x: torch.Tensor) -> None:
        """Record the shape rows of node features `x` [N, 4] as trained; a row recorded for the first
        time starts from its interpolation between the rows trained so far."""
        for table, seen, ids in ((self.out_dim, self.out_seen, x[:, 1]), (self.in_dim, self.in_seen, x[:, 2])):
            new = ids[~seen[ids]].unique()
            known = self._known(seen)
            if new.numel() and known is not None:
                table.weight[new] = self._interpolate(table, seen, known, new)
            seen[ids] = True

    def _known(self, seen: torch.Tensor) -> torch.Tensor | None:
        """Sorted ids [S] of the used rows of `seen` (0, "no dimension", apart), or None when the plain
        table applies (nothing recorded, or every row counts as used).

        Cached per buffer and recomputed when the buffer changes: every write to it (`mark`,
        `reset_coverage`, `load_state_dict`, any in-place op) bumps its version counter, and `.to()`
        / `_apply` replace the tensor object. Not cached in inference mode (no version counter there,
        and an inference tensor could not be used by a later forward with grad)."""
        cacheable = not (torch.is_inference_mode_enabled() or seen.is_inference())
        hit = self._known_cache.get(id(seen)) if cacheable else None
        if hit is not None and hit[0] is seen and hit[1] == seen._version:
            return hit[2]
        known = None
        if bool(seen[1:].any()) and not bool(seen.all()):
            known = seen[1:].nonzero().squeeze(1) + 1
        if cacheable:
            if len(self._known_cache) >= 2 and id(seen) not in self._known_cache:
                self._known_cache.clear()  # buffers replaced (`.to()`): drop the old ones
            self._known_cache[id(seen)] = (seen, seen._version, known)
        return known

    def _dim(self, table: nn.Embedding, seen: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Embeddings of the shape buckets `ids` [N] -> [N, e]: interpolated over the trained rows."""
        known = self._known(seen)
        if known is None:
            return table(ids)
        return self._interpolate(table, seen, known, ids)

    @staticmethod
    def _interpolate(table: nn.Embedding, seen: torch.Tensor, known: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Rows `ids` interpolated over the used rows `known` (`_known(seen)`)."""
        last = known.numel() - 1
        pos = torch.searchsorted(known, ids.contiguous())  # first used id >= ids
        hi = known[pos.clamp(max=last)]
        lo = known[(pos - 1).clamp(min=0)]
        lo = torch.where((pos == 0) | (hi == ids), hi, lo)  # below the first used row, or a used row
        hi = torch.where(pos > last, lo, hi)  # beyond the last used row: clamp
        t = ((ids - lo) / (hi - lo).clamp(min=1)).to(table.weight.dtype)[:, None]
        direct = (ids == 0) | seen[ids]  # "no dimension" and used rows: the row itself
        mixed = (1 - t) * table(lo) + t * table(hi)
        return torch.where(direct[:, None], table(ids), mixed)

    def forward(self, x: torch.Tensor, in_deg: torch.Tensor, out_deg: torch.Tensor,
                input_dist: torch.Tensor) -> torch.Tensor:  # x: [N, 4] -> [N, d]
        op, out_dim, in_dim, flag = x.unbind(-1)
        shape = torch.cat([self._dim(self.out_dim, self.out_seen, out_dim),
                           self._dim(self.in_dim, self.in_seen, in_dim)], dim=-1)
        return (self.op(op) + shape + self.flag(flag)
                + self.in_degree(in_deg.clamp(max=self.max_degree))
                + self.out_degree(out_deg.clamp(max=self.max_degree))
                + self.input_dist(input_dist))


class SpatialBias(nn.Module):
    """Per-head attention bias from the shortest-path distance in both directions.

    Computed once per batch and shared by all layers (as in GHN-3/LoGAH).
    """

    def __init__(self, d: int, heads: int, cutoff: int) -> None:
        super().__init__()
        self.dist = nn.Embedding(cutoff + 2, d)
        self.mlp = nn.Sequential(nn.Linear(2 * d, d), nn.ReLU(), nn.Linear(d, heads))

    def forward(self, spd: torch.Tensor) -> torch.Tensor:  # spd: [B, N, N] -> [B, H, N, N]
        # The bias depends only on the pair (spd_ij, spd_ji), which takes (cutoff+2)^2 values: run the
        # MLP once per possible pair and index the table, instead of once per node pair (N^2 rows).
        e = self.dist.weight  # [D, d], D = cutoff + 2
        n = e.shape[0]
        pairs = torch.cat([e[:, None].expand(n, n, -1), e[None, :].expand(n, n, -1)], dim=-1)  # [D, D, 2d]
        table = self.mlp(pairs)  # [D, D, H]
        return rearrange(table[spd, spd.transpose(1, 2)], "b i j h -> b h i j")


class Attention(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:  # x [B,N,d], bias [B,H,N,N]
        q, k, v = rearrange(self.qkv(x), "b n (three h e) -> three b h n e", three=3, h=self.heads)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        return self.proj(rearrange(y, "b h n e -> b n (h e)"))


class GraphormerLayer(nn.Module):
    """Pre-LN block: x += MHA(LN x) + spatial bias; x += FFN(LN x)."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(d)
        self.attn = Attention(d, heads)
        self.ln_2 = nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), bias)
        return x + self.ffn(self.ln_2(x))


class GraphEncoder(nn.Module):
    def __init__(self, d: int, layers: int, heads: int, cutoff: int, max_degree: int = 32) -> None:
        super().__init__()
        self.embed = NodeEmbedding(d, cutoff, max_degree)
        self.spatial = SpatialBias(d, heads, cutoff)
        self.layers = nn.ModuleList(GraphormerLayer(d, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """A PyG Batch of `build_graph` graphs -> (h [B, N, d], mask [B, N] True for real nodes)."""
        from torch_geometric.utils import to_dense_adj, to_dense_batch

        node_batch = batch.batch
        spd = to_dense_adj(batch.pair_index, node_batch, edge_attr=batch.pair_spd).long()  # [B, N, N]
        _, mask = to_dense_batch(batch.x, node_batch)  # [B, N]: True for real nodes
        input_dist = spd[:, 0][mask]  # [sum N]: distance from each graph's node 0 (the input)
        h = self.embed(batch.x, batch.in_degree, batch.out_degree, input_dist)  # [sum N, d]
        h, _ = to_dense_batch(h, node_batch)  # [B, N, d]
        return self._layers(h, spd, mask), mask

    def forward_graph(self, graph) -> torch.Tensor:
        """One graph (`ArchGraph` or PyG `Data`) -> h [N, d] on the encoder's device, without PyG.

        The same ops as `forward` on a batch of one (no padding): its dense SPD matrix is
        `pair_spd` viewed [1, N, N], since `pair_index` lists the ordered pairs row by row."""
        device, n = self.ln_f.weight.device, graph.num_nodes
        spd = graph.pair_spd.to(device).view(1, n, n).long()
        mask = torch.ones(1, n, dtype=torch.bool, device=device)
        h = self.embed(graph.x.to(device), graph.in_degree.to(device), graph.out_degree.to(device), spd[0, 0])
        return self._layers(h[None], spd, mask)[0]

    def _layers(self, h: torch.Tensor, spd: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Padded node embeddings h [B, N, d] -> the Graphormer's output [B, N, d]."""
        neg = torch.finfo(h.dtype).min / 2  # large negative; still finite after adding the bias
        bias = self.spatial(spd).masked_fill(~mask[:, None, None, :], neg)  # padded keys never attended
        for layer in self.layers:
            h = layer(h, bias)
        return self.ln_f(h)
