"""Computational graphs of our ViT / GPT-2 models, as PyTorch Geometric `Data`.

The graph is built by walking the model's module structure (on the `meta` device, so even
GPT-2-L costs no memory), not by tracing autograd as the released LoGAH/GHN-3 code does. That
makes it deterministic and independent of SDPA vs eager attention (LOGAH_NOTES §6 bug 6),
gives the class token and the tied `lm_head` a node, and connects `lm_head` after `ln_f`
(bug 3).

Nodes are modules, not single tensors: a Linear node predicts its weight and bias, a
LayerNorm node its scale and shift. Every trainable parameter maps to exactly one node; a tied
`lm_head` gets a node with no parameter (flag `TIED`) because its tensor belongs to `wte`.

Node features `x` [N, 4] (long): (op, out-dim bucket, in-dim bucket, flag). Dimensions are
bucketised on a log scale, 8 buckets per octave (`shape_bucket`), so every size up to 2^17
(incl. vocabularies 256 / 50257) has an id and nearby widths (72 vs 80) stay distinguishable;
0 means "no dimension". The (out, in) pair is the weight's [out, in] for Linear-like nodes,
(width, -) for LayerNorm / sum / pool / class token, (tokens, width) for positional tables,
(heads, head dim) for attention, and (patch dim, patches) or (vocab, context) for the input.

Shortest-path distances (directed, unweighted, capped at `cutoff`; unreachable -> cutoff + 1)
are stored for all N^2 ordered pairs as `pair_index` [2, N^2] / `pair_spd` [N^2], so PyG's
`Batch` offsets them like edges and `to_dense_adj` rebuilds the padded [B, N, N] matrix.

`arch_graph` builds the same fields as a plain `ArchGraph` without importing torch_geometric
(~1.5 s, most of a GPT-2-L prediction's graph cost): `LoGAH` encodes one graph without PyG and
converts to a PyG `Data` (`ArchGraph.to_pyg`, cached) only to batch several. `build_graph` returns
that `Data`.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from search_spaces import GPT2Config, ModelConfig, ViTConfig, build_model

if TYPE_CHECKING:
    from torch_geometric.data import Data

DEFAULT_SPD_CUTOFF = 50
MAX_LOG2_DIM = 17  # dims up to 131072 get distinct buckets; larger ones share the last bucket
BUCKETS_PER_OCTAVE = 8
NUM_SHAPE_BUCKETS = 2 + BUCKETS_PER_OCTAVE * MAX_LOG2_DIM  # 0 = none, 1 + round(8 log2 n)


class Op(IntEnum):
    """Node operation vocabulary (the embedding table has `len(Op)` rows)."""

    INPUT = 0
    PATCH_EMBED = 1   # Linear on flattened patches (== Conv2d with stride = kernel)
    TOKEN_EMBED = 2   # nn.Embedding of tokens (wte)
    POS_EMBED = 3     # learned positional embedding (wpe / pos_embed)
    FIXED_POS = 4     # fixed sin-cos positional table: a buffer, nothing to predict
    CLS_TOKEN = 5     # learned class token, concatenated in front of the patches
    LAYERNORM = 6
    QKV = 7           # fused q/k/v projection (c_attn)
    ATTENTION = 8     # softmax(q k^T / sqrt(d)) v, no parameters
    ATTN_PROJ = 9     # attention output projection (attn.c_proj)
    MLP_FC = 10
    MLP_PROJ = 11     # MLP output projection (mlp.c_proj)
    SUM = 12          # residual / embedding addition
    POOL_CLS = 13     # take the class-token position
    POOL_MEAN = 14    # mean over tokens
    HEAD = 15         # classifier
    LM_HEAD = 16      # language-model head


class Flag(IntEnum):
    NONE = 0
    TIED = 1     # node reuses another node's parameter (tied lm_head)
    CAUSAL = 2   # causal attention


class Role:
    """How a predicted tensor is normalised (see decoder.normalise)."""

    WEIGHT = "weight"                    # Linear weight [out, in]: fan-in scaling
    RESIDUAL_WEIGHT = "residual_weight"  # c_proj: fan-in and 1/sqrt(2L)
    HEAD = "head"                        # classifier weight: fan-in
    BIAS = "bias"
    LN_WEIGHT = "ln_weight"
    LN_BIAS = "ln_bias"
    EMBEDDING = "embedding"              # token embedding, untied lm_head: std 0.02
    POS_EMBEDDING = "pos_embedding"      # std 0.02
    CLS_TOKEN = "cls_token"              # std 0.02

    VECTOR_SLOT = {BIAS: 1, LN_WEIGHT: 0, LN_BIAS: 1, CLS_TOKEN: 0}  # 1-D outputs per node
    ALL = (WEIGHT, RESIDUAL_WEIGHT, HEAD, BIAS, LN_WEIGHT, LN_BIAS, EMBEDDING, POS_EMBEDDING, CLS_TOKEN)


def shape_bucket(n: int) -> int:
    """Log-scale id of a dimension: 0 for none, else 1 + round(8 * log2 n), capped."""
    if n <= 0:
        return 0
    return min(1 + round(BUCKETS_PER_OCTAVE * math.log2(n)), NUM_SHAPE_BUCKETS - 1)


@dataclass
class _Node:
    op: Op
    out_dim: int = 0
    in_dim: int = 0
    flag: Flag = Flag.NONE
    params: list[tuple[str, tuple[int, ...], str]] = field(default_factory=list)  # (name, shape, role)
    name: str = ""


class _GraphBuilder:
    """Collects nodes and forward edges while walking a model."""

    def __init__(self) -> None:
        self.nodes: list[_Node] = []
        self.edges: list[tuple[int, int]] = []

    def add(self, node: _Node, *parents: int) -> int:
        self.nodes.append(node)
        i = len(self.nodes) - 1
        self.edges.extend((p, i) for p in parents)
        return i

    def module(self, op: Op, module: nn.Module, prefix: str, roles: dict[str, str], *parents: int,
               out_dim: int | None = None, in_dim: int | None = None) -> int:
        """A node predicting `module`'s own parameters (weight -> roles['weight'], ...)."""
        params = [(f"{prefix}.{n}", tuple(p.shape), roles[n]) for n, p in module.named_parameters(recurse=False)]
        w = module.weight
        o = out_dim if out_dim is not None else w.shape[0]
        i = in_dim if in_dim is not None else (w.shape[1] if w.dim() > 1 else 0)
        return self.add(_Node(op, o, i, params=params, name=prefix), *parents)


_LINEAR = {"weight": Role.WEIGHT, "bias": Role.BIAS}
_RESIDUAL = {"weight": Role.RESIDUAL_WEIGHT, "bias": Role.BIAS}
_LN = {"weight": Role.LN_WEIGHT, "bias": Role.LN_BIAS}


def _blocks(g: _GraphBuilder, model: nn.Module, x: int, causal: bool) -> int:
    """Pre-LN transformer blocks; returns the node holding the residual stream."""
    for i, blk in enumerate(model.blocks):
        p = f"blocks.{i}"
        h = g.module(Op.LAYERNORM, blk.ln_1, f"{p}.ln_1", _LN, x)
        h = g.module(Op.QKV, blk.attn.c_attn, f"{p}.attn.c_attn", _LINEAR, h)
        width = blk.attn.c_proj.weight.shape[0]
        h = g.add(_Node(Op.ATTENTION, blk.attn.heads, width // blk.attn.heads,
                        Flag.CAUSAL if causal else Flag.NONE, name=f"{p}.attn"), h)
        h = g.module(Op.ATTN_PROJ, blk.attn.c_proj, f"{p}.attn.c_proj", _RESIDUAL, h)
        x = g.add(_Node(Op.SUM, width, name=f"{p}.add_1"), x, h)
        h = g.module(Op.LAYERNORM, blk.ln_2, f"{p}.ln_2", _LN, x)
        h = g.module(Op.MLP_FC, blk.mlp.c_fc, f"{p}.mlp.c_fc", _LINEAR, h)
        h = g.module(Op.MLP_PROJ, blk.mlp.c_proj, f"{p}.mlp.c_proj", _RESIDUAL, h)
        x = g.add(_Node(Op.SUM, width, name=f"{p}.add_2"), x, h)
    return x


def _vit(g: _GraphBuilder, model: nn.Module, c: ViTConfig) -> None:
    inp = g.add(_Node(Op.INPUT, c.channels * c.patch_size**2, c.num_patches, name="input"))
    x = g.module(Op.PATCH_EMBED, model.patch_embed, "patch_embed", _LINEAR, inp)
    if c.class_token:
        x = g.add(_Node(Op.CLS_TOKEN, c.width, params=[("cls_token", (1, 1, c.width), Role.CLS_TOKEN)],
                        name="cls_token"), x)
    if c.learned_pos_embedding:
        pos_param = ("pos_embed", (1, c.num_tokens, c.width), Role.POS_EMBEDDING)
        pos = g.add(_Node(Op.POS_EMBED, c.num_tokens, c.width, params=[pos_param], name="pos_embed"), inp)
    else:
        pos = g.add(_Node(Op.FIXED_POS, c.num_tokens, c.width, name="pos_embed"), inp)
    x = g.add(_Node(Op.SUM, c.width, name="add_pos"), x, pos)
    x = _blocks(g, model, x, causal=False)
    x = g.module(Op.LAYERNORM, model.ln_f, "ln_f", _LN, x)
    x = g.add(_Node(Op.POOL_CLS if c.class_token else Op.POOL_MEAN, c.width, name="pool"), x)
    head = {"weight": Role.HEAD, "bias": Role.BIAS}
    g.module(Op.HEAD, model.head, "head", head, x)


def _gpt2(g: _GraphBuilder, model: nn.Module, c: GPT2Config) -> None:
    inp = g.add(_Node(Op.INPUT, c.vocab_size, c.context, name="input"))
    tok = g.module(Op.TOKEN_EMBED, model.wte, "wte", {"weight": Role.EMBEDDING}, inp)
    pos = g.module(Op.POS_EMBED, model.wpe, "wpe", {"weight": Role.POS_EMBEDDING}, inp)
    x = g.add(_Node(Op.SUM, c.width, name="add_pos"), tok, pos)
    x = _blocks(g, model, x, causal=True)
    x = g.module(Op.LAYERNORM, model.ln_f, "ln_f", _LN, x)
    if model.lm_head.weight is model.wte.weight:
        g.add(_Node(Op.LM_HEAD, c.vocab_size, c.width, Flag.TIED, name="lm_head"), x)
    else:
        # An untied lm_head is an output embedding: normalised like the wte it would be tied to.
        g.module(Op.LM_HEAD, model.lm_head, "lm_head", {"weight": Role.EMBEDDING}, x)


_INIT_FILLS = frozenset({nn.init.normal_, nn.init.uniform_, nn.init.trunc_normal_, nn.init.kaiming_normal_,
                         nn.init.kaiming_uniform_, nn.init.xavier_normal_, nn.init.xavier_uniform_,
                         torch.Tensor.normal_, torch.Tensor.uniform_})


class _SkipInitFills(TorchFunctionMode):
    """Skips the random fills of modules' default init: on the meta device they write nothing, and
    torch's meta `normal_` imports torch._dynamo on first use (~1 s)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in _INIT_FILLS:
            return args[0] if args else kwargs["tensor"]
        return func(*args, **(kwargs or {}))


def meta_model(config: ModelConfig) -> nn.Module:
    """`build_model(config)` on the meta device: shapes only (GPT-2-L costs no memory and no init time)."""
    with torch.device("meta"), _SkipInitFills():
        return build_model(config)


class ArchGraph:
    """One architecture's graph: the attributes `build_graph` documents, as plain tensors and lists
    (no torch_geometric). `to_pyg()` is the same graph as a PyG `Data` (built once), for batching."""

    def __init__(self, **fields) -> None:
        self._fields = fields
        self._pyg: Data | None = None
        self.__dict__.update(fields)

    def __repr__(self) -> str:
        return f"ArchGraph(num_nodes={self.num_nodes}, params={len(self.param_order)})"

    def to_pyg(self) -> Data:
        if self._pyg is None:
            from torch_geometric.data import Data

            self._pyg = Data(**self._fields)
        return self._pyg


def capped_distances(n: int, src: Sequence[int], dst: Sequence[int], cutoff: int) -> torch.Tensor:
    """[n, n] int64 directed, unweighted shortest-path lengths along the edges src[k] -> dst[k],
    capped at `cutoff`; `cutoff + 1` where unreachable.

    A breadth-first search from every node, in plain Python: n * E steps (GPT-2-L: ~0.1 s), the
    same integers as scipy's `shortest_path` (whose import costs ~0.2 s per process), and no
    intra-op threads (dozens of tiny parallel torch ops each wait for the other core on a busy
    machine)."""
    children: list[list[int]] = [[] for _ in range(n)]
    for s, d in zip(src, dst):
        children[s].append(d)
    far = cutoff + 1
    rows = []
    for source in range(n):
        row = [far] * n
        row[source] = 0
        frontier, step = [source], 0
        while frontier:
            step += 1
            level, reached = min(step, cutoff), []
            for u in frontier:
                for v in children[u]:
                    if row[v] == far:  # not reached yet (reached nodes hold <= cutoff)
                        row[v] = level
                        reached.append(v)
            frontier = reached
        rows.append(row)
    return torch.tensor(rows, dtype=torch.long)


def build_graph(config: ModelConfig, cutoff: int = DEFAULT_SPD_CUTOFF) -> Data:
    """The graph of `build_model(config)`, as a PyG `Data`.

    Attributes: `x` [N, 4], `edge_index` [2, E] (forward edges), `pair_index` [2, N^2] and
    `pair_spd` [N^2] (capped shortest-path distances of all ordered pairs), `in_degree` and
    `out_degree` [N]; Python lists `node_names`, `param_names`, `param_shapes`, `param_roles`
    (one list per node) and `param_order` (named_parameters order), and `config_json` (a string, so `Batch` keeps it).
    """
    return arch_graph(config, cutoff).to_pyg()


def arch_graph(config: ModelConfig, cutoff: int = DEFAULT_SPD_CUTOFF) -> ArchGraph:
    """`build_graph` without torch_geometric: the same attributes on an `ArchGraph`."""
    if cutoff < 1:
        from search_spaces import ConfigError

        raise ConfigError("cutoff", cutoff, "an integer >= 1")
    model = meta_model(config)
    g = _GraphBuilder()
    if isinstance(config, ViTConfig):
        _vit(g, model, config)
    elif isinstance(config, GPT2Config):
        _gpt2(g, model, config)
    else:
        raise TypeError(f"build_graph needs a ViTConfig or GPT2Config, got {type(config).__name__}")

    # Every trainable parameter must belong to exactly one node, else the builder is out of date.
    expected = {n: tuple(p.shape) for n, p in model.named_parameters()}
    got = [(n, s) for node in g.nodes for n, s, _ in node.params]
    names = [n for n, _ in got]
    if sorted(names) != sorted(expected) or any(expected[n] != s for n, s in got):
        raise RuntimeError(f"graph nodes {sorted(names)} do not match the model's parameters {sorted(expected)}")

    n = len(g.nodes)
    src, dst = zip(*g.edges)
    dist = capped_distances(n, src, dst, cutoff)

    x = torch.tensor([[nd.op, shape_bucket(nd.out_dim), shape_bucket(nd.in_dim), nd.flag] for nd in g.nodes],
                     dtype=torch.long)
    edge_index = torch.tensor([src, dst], dtype=torch.long)
    ii, jj = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    return ArchGraph(
        x=x,
        edge_index=edge_index,
        pair_index=torch.stack([ii.flatten(), jj.flatten()]),
        pair_spd=dist.flatten(),
        in_degree=torch.bincount(edge_index[1], minlength=n),
        out_degree=torch.bincount(edge_index[0], minlength=n),
        num_nodes=n,
        node_names=[nd.name for nd in g.nodes],
        param_names=[[p[0] for p in nd.params] for nd in g.nodes],
        param_shapes=[[p[1] for p in nd.params] for nd in g.nodes],
        param_roles=[[p[2] for p in nd.params] for nd in g.nodes],
        param_order=list(expected),
        depth=config.depth,
        config_json=json.dumps(config.to_dict(), sort_keys=True),
    )
