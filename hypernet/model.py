"""LoGAH: a Graphormer over the architecture graph plus a low-rank parameter decoder.

    graph (build_graph) -> GraphEncoder -> node embeddings h [N, d]
                        -> LowRankDecoder -> every parameter of every node

`predict` / `apply` stream (no grad; same-shape parameters batched, each matrix written by one
GEMM into its preallocated output or the model's own storage); `predict_batch` keeps the graph
of gradients for meta-training and encodes the whole meta-batch in one padded pass.

Residual prediction (`LoGAHConfig.residual`, default; see hypernet/decoder.py): every >= 2-D
parameter is W0 + g_role * Delta, where W0 is a standard random initialisation. Where W0 comes from:

* anchored (`LoGAHConfig.anchor_seed` set, the default): W0 is the anchored init of
  hypernet/anchor.py, one fixed N(0, std^2) draw shared by all architectures (a narrow model's
  W0 is the leading block of a wide one's), so the correction meta-training learns refers to
  features every architecture has. `predict`, `apply` (which overwrites the model's values) and
  `predict_batch` all use it; a prediction is a deterministic function of the architecture.
* fresh (`anchor_seed=None`, checkpoints written before anchoring): `predict(config, seed)` draws
  W0 from `torch.Generator().manual_seed(seed)`, `apply(model)` uses the model's CURRENT values
  (call it on a freshly built model), and `predict_batch` draws it on every call (global torch
  RNG or `generator`).

`base_init` gives the W0 those paths use, to pass explicitly as `inits`.

Coverage: meta-training records what it trained (shape-embedding rows, the deepest depth, the
widest width, the basis rows it reached; buffers saved with the weights). `predict` / `apply` never
read what was not trained: untrained shape rows are interpolated (hypernet/encoder.py), and a model
wider or deeper than any trained is predicted through its covered twin and grown (`covered_config`,
`_grow_into`). Checkpoints written before the record predict exactly as they did.
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field, fields
from dataclasses import replace as dataclass_replace
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import nn

from search_spaces import ConfigError, ModelConfig
from search_spaces.validate import require_range

from .anchor import anchored_fill_, segments
from .decoder import RESIDUAL_ROLES, ROLE_INIT, LowRankDecoder, init_std
from .encoder import GraphEncoder
from .graph import DEFAULT_SPD_CUTOFF, ArchGraph, Op, Role, arch_graph

if TYPE_CHECKING:
    from torch_geometric.data import Data

# (hidden d, Graphormer layers, heads, rank r) of the paper's variants (LOGAH_NOTES §2).
VARIANTS: dict[str, tuple[int, int, int, int]] = {
    "tiny": (64, 3, 8, 32),
    "small": (128, 5, 16, 90),
    "base": (256, 5, 16, 128),
    "large": (256, 12, 16, 256),
}


@dataclass(frozen=True)
class LoGAHConfig:
    """A hypernet's shape. `None` fields take the variant's value.

    `space_signature` (a search space's `signature()`) ties one hypernet to one space: it is
    stored in checkpoints and `predict` refuses configs outside it. `max_dim` (K) is the largest
    dimension with its own learned basis row; larger ones (up to `max_total_dim`) use chunk codes.
    `keep_init`: modules of the predicted model (e.g. "head", "wte") left at the standard init:
    the parts a hypernet transferred from other data cannot know (`hypernet.transfer`).
    `residual` (default True): predict W0 + g_role * Delta on top of a random init; False: the
    pure low-rank prediction of the first version (ablations; checkpoints written before this
    field existed are read with residual=False by `from_dict`). `anchor_seed` (residual only):
    W0 is the anchored init with this seed (hypernet/anchor.py); None draws a fresh W0 per
    prediction (checkpoints written before anchoring are read with None). `correction_cap`
    (residual only): each correction's RMS is held smoothly below that many times W0's std
    (`LowRankDecoder._capped`); None: unbounded, as every checkpoint written before the field.
    """

    variant: str = "tiny"
    hidden: int | None = None
    layers: int | None = None
    heads: int | None = None
    rank: int | None = None
    max_dim: int = 5120
    max_total_dim: int = 131072
    spd_cutoff: int = DEFAULT_SPD_CUTOFF
    max_degree: int = 32
    residual: bool = True
    anchor_seed: int | None = 0
    space_signature: dict[str, Any] | None = field(default=None, compare=True, hash=False)
    keep_init: tuple[str, ...] = ()
    correction_cap: float | None = None

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ConfigError("variant", self.variant, f"one of {list(VARIANTS)}")
        for name in ("hidden", "layers", "heads", "rank"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ConfigError(name, v, "an integer >= 1 or None (variant default)")
        if self.d % self.n_heads:
            raise ConfigError("heads", self.n_heads, f"a divisor of hidden={self.d}")
        if self.d < 2:
            raise ConfigError("hidden", self.d, "an integer >= 2")
        for name in ("max_dim", "max_total_dim", "spd_cutoff", "max_degree"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(name, v, "an integer >= 1")
        if self.max_total_dim < self.max_dim:
            raise ConfigError("max_total_dim", self.max_total_dim, f">= max_dim={self.max_dim}")
        if not isinstance(self.residual, bool):
            raise ConfigError("residual", self.residual, "True or False")
        if self.anchor_seed is not None and (isinstance(self.anchor_seed, bool) or not isinstance(self.anchor_seed, int)
                                             or not 0 <= self.anchor_seed < 2**63):
            raise ConfigError("anchor_seed", self.anchor_seed, "an integer in [0, 2^63) or None (fresh W0)")
        if self.space_signature is not None and not isinstance(self.space_signature, dict):
            raise ConfigError("space_signature", self.space_signature, "a dict from space.signature() or None")
        if isinstance(self.keep_init, list):  # read back from JSON
            object.__setattr__(self, "keep_init", tuple(self.keep_init))
        if not isinstance(self.keep_init, tuple) or not all(isinstance(m, str) and m for m in self.keep_init):
            raise ConfigError("keep_init", self.keep_init, "a tuple of module names (e.g. ('head', 'pos_embed'))")
        if self.correction_cap is not None and (not self.residual or isinstance(self.correction_cap, bool)
                                                or not isinstance(self.correction_cap, (int, float))
                                                or not 0 < self.correction_cap <= 1e3):
            raise ConfigError("correction_cap", self.correction_cap,
                              "None, or a number in (0, 1000] for a residual hypernet")
        if self.keep_init and not self.residual:
            raise ConfigError("keep_init", self.keep_init, "() for a non-residual hypernet (it has no standard init W0)")

    @property
    def d(self) -> int:
        return self.hidden or VARIANTS[self.variant][0]

    @property
    def n_layers(self) -> int:
        return self.layers or VARIANTS[self.variant][1]

    @property
    def n_heads(self) -> int:
        return self.heads or VARIANTS[self.variant][2]

    @property
    def r(self) -> int:
        return self.rank or VARIANTS[self.variant][3]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LoGAHConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(unknown[0], d[unknown[0]], f"a field of LoGAHConfig: {sorted(known)}")
        if "residual" not in d:  # stored before residual prediction existed: the pure low-rank decoder
            d = {**d, "residual": False}
        if "anchor_seed" not in d:  # stored before anchoring: W0 drawn fresh
            d = {**d, "anchor_seed": None}
        return cls(**d)

    @property
    def anchored(self) -> bool:
        return self.residual and self.anchor_seed is not None


MAX_LAYER_KEYS = 48  # blocks deeper than this share the last per-layer key
NODE_KEYS = len(Op) * (MAX_LAYER_KEYS + 1)


def node_keys(graph: ArchGraph | Data) -> torch.Tensor:
    """(op, layer) id of every node [N]: layer = 1 + i for nodes inside `blocks.i`, 0 outside.

    Residual decoders learn an offset of X and g per key (a direct path around the MLP), so
    different layers can get different corrections even where the encoder's h barely differ.
    Models deeper than any meta-training used never reach untrained keys: they are grown from a
    covered twin (`LoGAH.covered_config`).
    """
    layers = []
    for name in graph.node_names:
        parts = name.split(".")
        layers.append(1 + min(int(parts[1]), MAX_LAYER_KEYS - 1) if parts[0] == "blocks" and len(parts) > 1
                      and parts[1].isdigit() else 0)
    return graph.x[:, 0] * (MAX_LAYER_KEYS + 1) + torch.tensor(layers, dtype=torch.long)


@functools.lru_cache(maxsize=512)
def _cached_graph(config: ModelConfig, cutoff: int) -> ArchGraph:
    """Graphs are pure functions of the (frozen) config; meta-training revisits configs often."""
    return arch_graph(config, cutoff=cutoff)


class _Param(NamedTuple):
    role: str
    shape: tuple[int, ...]


def _params_of(graph: ArchGraph | Data) -> dict[str, _Param]:
    """Role and shape of every parameter of `graph`, by name (in node order)."""
    return {name: _Param(role, tuple(shape))
            for names, shapes, roles in zip(graph.param_names, graph.param_shapes, graph.param_roles)
            for name, shape, role in zip(names, shapes, roles)}


def _put(dest: torch.Tensor, src: torch.Tensor, scale: float) -> None:
    """dest = src * scale (a copy when scale is 1), elementwise in float32.

    On the CPU through numpy views: growing a model copies hundreds of small blocks, and as torch
    ops each would open an intra-op parallel region that, on a busy 2-core machine, waits
    milliseconds for the second core (GPT-2-L: 0.8 s instead of 0.02 s). The values are the same:
    torch multiplies a float32 tensor by a Python float as float32 * float32(scale), like numpy."""
    if dest.device.type == "cpu" and src.device.type == "cpu" and dest.dtype == src.dtype == torch.float32:
        import numpy as np

        if scale != 1.0:
            np.multiply(src.detach().numpy(), np.float32(scale), out=dest.detach().numpy())
        else:
            dest.detach().numpy()[...] = src.detach().numpy()
        return
    dest.copy_(src * scale if scale != 1.0 else src)


def _config_in_signature(config: ModelConfig, signature: dict[str, Any]) -> None:
    if signature.get("space") != config.space:
        raise ConfigError("space", config.space, f"{signature.get('space')!r} (this hypernet's search space)")
    for key, value in signature.items():
        if key != "space" and hasattr(config, key) and getattr(config, key) != value:
            raise ConfigError(key, getattr(config, key), f"{value!r} (this hypernet's search space {signature})")


class LoGAH(nn.Module):
    def __init__(self, config: LoGAHConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or LoGAHConfig()
        self.encoder = GraphEncoder(c.d, c.n_layers, c.n_heads, c.spd_cutoff, c.max_degree)
        self.decoder = LowRankDecoder(c.d, c.r, c.max_dim, c.max_total_dim, residual=c.residual,
                                      node_keys=NODE_KEYS if c.residual else 0, correction_cap=c.correction_cap)
        # The deepest and the widest model meta-training used (0: not recorded; see node_keys, `covered_config`).
        self.register_buffer("layers_seen", torch.zeros((), dtype=torch.long))
        self.register_buffer("width_seen", torch.zeros((), dtype=torch.long))

    # ---- what meta-training covered ------------------------------------------------------------
    def coverage_recorded(self) -> bool:
        """False for a fresh hypernet and for checkpoints written before coverage was recorded."""
        seen = self.encoder.embed.out_seen
        return bool(seen[1:].any()) and not bool(seen.all())

    def reset_coverage(self) -> None:
        """Forget what meta-training covered (shape rows, depth, width, basis rows: see NodeEmbedding,
        node_keys and LowRankDecoder.rows_seen), so that `record_coverage` starts a fresh record.
        `nas.pretrain` calls it before meta-training further a checkpoint written before coverage
        was recorded, then records that checkpoint's training grid; `meta_train` itself never calls
        it (it calls `record_coverage` after each update)."""
        self.encoder.embed.reset_coverage()
        self.layers_seen.zero_()
        self.width_seen.zero_()
        self.decoder.rows_seen.zero_()


    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ---- graphs and embeddings -----------------------------------------------------------
    def graph(self, config: ModelConfig) -> ArchGraph:
        """`build_graph(config)` as an `ArchGraph` (cached; no torch_geometric import)."""
        if self.config.space_signature is not None:
            _config_in_signature(config, self.config.space_signature)
        return _cached_graph(config, self.config.spd_cutoff)

    def embed(self, graphs: list[ArchGraph | Data]) -> list[torch.Tensor]:
        """Node embeddings, one [N_i, d] tensor per graph (one padded encoder pass).

        One graph is encoded without PyG (`GraphEncoder.forward_graph`: the same ops, no padding)."""
        if len(graphs) == 1:
            return [self.encoder.forward_graph(graphs[0])]
        from torch_geometric.data import Batch

        device = next(self.parameters()).device
        batch = Batch.from_data_list([g.to_pyg() if isinstance(g, ArchGraph) else g for g in graphs]).to(device)
        h, mask = self.encoder(batch)
        return list(h[mask].split(batch.ptr.diff().tolist()))  # un-pad with the mask: no index arithmetic

    # ---- the random-init part W0 ----------------------------------------------------------------
    def _fill_init(self, graph: ArchGraph, outputs: dict[str, torch.Tensor], generator: torch.Generator | None) -> None:
        """Write W0 (init_weights' distribution) into `outputs` for every residual-role parameter.

        Anchored: the anchored init (`generator` unused). Fresh: drawn from `generator` in
        `param_order`, so one generator state always gives the same W0 whichever path draws it."""
        params = _params_of(graph)
        targets = [(outputs[name], name, init_std(params[name].role, graph.depth))
                   for name in graph.param_order if params[name].role in RESIDUAL_ROLES]
        if self.config.anchor_seed is not None:
            anchored_fill_(targets, self.config.anchor_seed)  # all parameters in one threaded pass
        else:
            for out, _, std in targets:
                out.normal_(0.0, std, generator=generator)

    @torch.no_grad()
    def base_init(self, config: ModelConfig, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """W0 of every residual-role parameter of `config` (others are fully predicted), on the
        hypernet's device: the anchored init, or (fresh W0) what `predict(config, seed)` draws with
        `Generator().manual_seed(seed)`."""
        graph = self.graph(config)
        device = next(self.parameters()).device
        params = _params_of(graph)
        out = {name: torch.empty(params[name].shape, device=device)
               for name in graph.param_order if params[name].role in RESIDUAL_ROLES}
        self._fill_init(graph, out, generator)
        return out

    # ---- prediction --------------------------------------------------------------------------
    def _kept_inits(self, graph: ArchGraph, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor | float]:
        """The standard init of the parameters of the modules `config.keep_init` names: W0 (what
        `outputs` hold before decoding, so read it first) or the vector role's constant."""
        if not self.config.keep_init:
            return {}
        return {name: outputs[name].clone() if p.role in RESIDUAL_ROLES else ROLE_INIT[p.role]
                for name, p in _params_of(graph).items() if name.split(".", 1)[0] in self.config.keep_init}

    @staticmethod
    def _restore(params: dict[str, torch.Tensor], kept: dict[str, torch.Tensor | float]) -> None:
        for name, init in kept.items():
            if isinstance(init, torch.Tensor):
                params[name].copy_(init)
            else:
                params[name].fill_(init)

    def _decode_into(self, graph: ArchGraph, outputs: dict[str, torch.Tensor],
                     strength: float = 1.0) -> dict[str, torch.Tensor]:
        """Decode every parameter of `graph` into the preallocated contiguous tensors `outputs` (no grad).

        One encoder pass, one decoder-MLP pass over the parameter nodes, then `decode_into`
        batches same-shape parameters and writes each matrix with a single GEMM into its own
        output (residual: added onto the W0 that `outputs` hold): peak memory is the outputs plus
        a few MB of factors.
        """
        (h,) = self.embed([graph])
        nodes = [i for i, names in enumerate(graph.param_names) if names]
        x, g = self.decoder.node_features(h[nodes], node_keys(graph)[nodes].to(h.device))
        targets, outs = [], []
        for row, i in enumerate(nodes):
            for name, shape, role in zip(graph.param_names[i], graph.param_shapes[i], graph.param_roles[i]):
                targets.append((row, tuple(shape), role, graph.depth))
                outs.append(outputs[name])
        self.decoder.decode_into(x, g, targets, outs, strength=strength)
        return {name: outputs[name] for name in graph.param_order}

    # ---- wider than meta-training: grow the widest covered prediction -----------------------------
    def covered_config(self, config: ModelConfig) -> ModelConfig | None:
        """The architecture `config` is predicted through when it is wider or deeper than any
        meta-training used (None when it is not, when nothing is recorded, or W0 is not anchored).

        Past the widest trained width the decoder reads basis rows and shape embeddings nothing
        trained, and past the deepest trained depth layer keys nothing trained: its guesses there
        are far worse than random init. So such a model is predicted as its covered twin (width and
        depth clamped to the widest / deepest trained, the head count that keeps the head dimension
        as near as the width allows, everything else equal) and the twin's prediction is grown into it (`_grow_into`).
        """
        widest, deepest = int(self.width_seen), int(self.layers_seen)
        if not self.config.anchored or widest <= 0 or deepest <= 0 or (
                config.width <= widest and config.depth <= deepest):
            return None
        width, heads = config.width, config.heads
        if width > widest:  # the widest trained width, with the head count nearest the same head dimension
            width = widest
            heads = max(h for h in range(1, max(1, round(widest / (config.width // config.heads))) + 1)
                        if widest % h == 0)
        return dataclass_replace(config, width=width, heads=heads, depth=min(config.depth, deepest))

    @torch.no_grad()
    def record_coverage(self, configs: list[ModelConfig]) -> None:
        """Record `configs` as covered by meta-training. `meta_train` calls it after every update, on
        the step's architectures (a skipped update records nothing); a checkpoint written before coverage was recorded gets its known
        training architectures (its space's grid) recorded before it is meta-trained further.
        (`predict_batch` never grows a model: it decodes the architecture it is given.)"""
        for config in configs:
            graph = self.graph(config)
            self.encoder.embed.mark(graph.x)
            self.layers_seen.fill_(max(int(self.layers_seen), config.depth))
            self.width_seen.fill_(max(int(self.width_seen), config.width))
            reach = max(max(shape) for shapes in graph.param_shapes for shape in shapes)
            self.decoder.rows_seen.fill_(max(int(self.decoder.rows_seen), min(reach, self.decoder.max_dim)))

    def _decode_or_grow(self, config: ModelConfig, graph: ArchGraph, outputs: dict[str, torch.Tensor],
                        strength: float) -> dict[str, torch.Tensor]:
        covered = self.covered_config(config)
        if covered is None:
            return self._decode_into(graph, outputs, strength)
        return self._grow_into(graph, outputs, self.predict(covered, strength=strength), covered.depth)

    @staticmethod
    def _grow_into(graph: ArchGraph, outputs: dict[str, torch.Tensor], small: dict[str, torch.Tensor],
                   small_depth: int) -> dict[str, torch.Tensor]:
        """Grow the twin's prediction `small` into the wide / deep model's `outputs` (which hold the
        anchored W0).

        Width, as weight selection grows a small model: every parameter gets the twin's values in its
        leading block (fused q/k/v part by part, as the anchored init lays them out); since the
        anchored W0's leading block IS the twin's W0, that block is W0 + the twin's correction and
        the rest keeps the standard init (LayerNorm gain 1, shifts and biases 0 for vectors).
        Depth, as layer stacking: block i of L takes the twin's block floor(i * L' / L) of L', its
        residual-branch output projections (weight and bias) scaled by L' / L, so the stack adds up
        the same residual updates in finer steps."""
        depth = graph.depth
        params = _params_of(graph)
        for name in graph.param_order:
            source, scale = name, 1.0
            parts = name.split(".")
            if parts[0] == "blocks" and depth > small_depth:
                parts[1] = str(int(parts[1]) * small_depth // depth)
                source = ".".join(parts)
                if name.endswith(("attn.c_proj.weight", "attn.c_proj.bias", "mlp.c_proj.weight", "mlp.c_proj.bias")):
                    scale = small_depth / depth
            out, part = outputs[name], small[source].to(outputs[name].device)
            if params[name].role not in RESIDUAL_ROLES:
                out.fill_(ROLE_INIT[params[name].role])
            n_parts = segments(name)  # fused q/k/v (weight and bias): part by part
            big_rows, small_rows = out.shape[0] // n_parts, part.shape[0] // n_parts
            for k in range(n_parts):
                dest = out[k * big_rows: k * big_rows + small_rows]
                src = part[k * small_rows: (k + 1) * small_rows]
                _put(dest[tuple(slice(0, n) for n in src.shape)], src, scale)
        LoGAH._rescale_norms(graph, outputs, params, small)
        return {name: outputs[name] for name in graph.param_order}

    @staticmethod
    def _rescale_norms(graph: ArchGraph, outputs: dict[str, torch.Tensor], params: dict[str, _Param],
                       small: dict[str, torch.Tensor]) -> None:
        """Keep the twin's LayerNorm outputs on the leading features of a wider model.

        A LayerNorm divides by the RMS over ALL features: when the grown leading block of the
        residual stream is larger than the standard-init rest, that RMS is smaller than the twin's
        and the leading outputs come out larger by r_lead / r_all. The embedding tables (token,
        positional, class token) set the stream's scale, so their leading vs overall RMS gives that
        ratio, and every LayerNorm gain of the leading block is multiplied by r_all / r_lead (1
        when the block and the rest have one scale)."""
        tables = [n for n in graph.param_order
                  if params[n].role in (Role.EMBEDDING, Role.POS_EMBEDDING, Role.CLS_TOKEN)]
        if not tables:
            return
        width = outputs[tables[0]].shape[-1]
        lead = small[tables[0]].shape[-1]
        if lead >= width:
            return
        rows = [outputs[n].reshape(-1, width) for n in tables]
        sq_lead = sum(float(r[:, :lead].double().pow(2).sum()) for r in rows) / sum(r.shape[0] * lead for r in rows)
        sq_all = sum(float(r.double().pow(2).sum()) for r in rows) / sum(r.numel() for r in rows)
        if sq_lead <= 0:
            return
        factor = math.sqrt(sq_all / sq_lead)
        for name in graph.param_order:
            if params[name].role == Role.LN_WEIGHT and outputs[name].shape[-1] == width:
                outputs[name][:lead] *= factor

    @torch.no_grad()
    def predict(self, config: ModelConfig, device: torch.device | str | None = None,
                seed: int = 0, strength: float = 1.0) -> dict[str, torch.Tensor]:
        """All parameters of `build_model(config)` (keys == its `named_parameters()`), no grad.

        Outputs are preallocated (one storage each) and written in place, so peak memory is the
        target model's size plus a few MB of factors (`decode_into`). Residual hypernets first
        write W0 into them: the anchored init (`seed` unused), or with fresh W0 a draw from
        `torch.Generator().manual_seed(seed)`. `device` defaults to the hypernet's.
        `strength` in (0, 1] blends the prediction with the standard init it refines:
        init + strength * (prediction - init) (see `apply`).
        """
        require_range("strength", strength, 0.0, 1.0, lo_open=True)
        graph = self.graph(config)
        hn_device = next(self.parameters()).device
        outputs = {name: torch.empty(tuple(shape), device=hn_device)
                   for names, shapes in zip(graph.param_names, graph.param_shapes)
                   for name, shape in zip(names, shapes)}
        if self.config.residual:
            self._fill_init(graph, outputs, torch.Generator(device=hn_device).manual_seed(seed))
        kept = self._kept_inits(graph, outputs)
        params = self._decode_or_grow(config, graph, outputs, strength)
        self._restore(params, kept)
        if device is not None and torch.device(device) != hn_device:
            params = {k: v.to(device) for k, v in params.items()}
        return params

    def predict_batch(self, configs: list[ModelConfig], *, generator: torch.Generator | None = None,
                      inits: list[dict[str, torch.Tensor] | None] | None = None,
                      strength: float = 1.0) -> list[dict[str, torch.Tensor]]:
        """Parameters for a meta-batch WITH grad (meta-training, refit); `strength` as in `predict`
        (a refit can score what warm trials start from).

        The encoder runs once on the padded batch; then all parameters of the whole batch are
        decoded together, same-shape ones in one batched op. Residual hypernets add the
        correction to W0: `inits[b]` (e.g. from `base_init`, or a model's initial weights) or,
        where `inits` or `inits[b]` is None, a fresh draw from `generator` (None: torch's global
        RNG). Feed the results
        to the targets with `functional_forward(model, params, ...)`. `config.keep_init` does not
        apply here: meta-training on the new data is what teaches those parts.
        """
        require_range("strength", strength, 0.0, 1.0, lo_open=True)
        if not configs:
            return []
        if inits is not None and len(inits) != len(configs):
            raise ValueError(f"inits has {len(inits)} entries for {len(configs)} configs")
        graphs = [self.graph(c) for c in configs]
        if self.config.residual:
            inits = [i if i is not None else self.base_init(c, generator)
                     for c, i in zip(configs, inits if inits is not None else [None] * len(configs))]
        else:
            inits = None  # the pure low-rank decoder has no W0
        h = torch.cat(self.embed(graphs))  # [sum N, d], graph by graph in node order
        x, g = self.decoder.node_features(h, torch.cat([node_keys(gr) for gr in graphs]).to(h.device))
        targets, names, w0, offset = [], [], [], 0
        for b, graph in enumerate(graphs):
            for i, (ns, shapes, roles) in enumerate(zip(graph.param_names, graph.param_shapes, graph.param_roles)):
                for name, shape, role in zip(ns, shapes, roles):
                    targets.append((offset + i, tuple(shape), role, graph.depth))
                    names.append((b, name))
                    w0.append(inits[b][name].to(h.device, torch.float32)
                              if inits is not None and role in RESIDUAL_ROLES else None)
            offset += graph.num_nodes
        decoded = self.decoder.decode_many(x, g, targets, w0 if self.config.residual else None, strength=strength)
        per_graph: list[dict[str, torch.Tensor]] = [{} for _ in graphs]
        for (b, name), tensor in zip(names, decoded):
            per_graph[b][name] = tensor
        return [{name: params[name] for name in graph.param_order} for graph, params in zip(graphs, per_graph)]

    @torch.no_grad()
    def apply(self, model: nn.Module, strength: float = 1.0) -> nn.Module:
        """Overwrite `model`'s parameters in place with predictions for `model.config`.

        Residual hypernets: anchored ones overwrite W0 with the anchored init; fresh-W0 ones use the
        model's CURRENT values as W0 (W = W0 + g Delta), so call this on a freshly built model. fp32 parameters on the hypernet's
        device are decoded straight into the model's own storage (no second copy of the
        weights); others are decoded into fp32 copies and copied back one by one.

        `strength` in (0, 1] (residual hypernets) writes init + strength * (prediction - init): W0
        + strength * g Delta, and LayerNorm gains / shifts / biases that fraction of the way from
        their standard init (1, 0, 0) to the prediction. Why: a full-strength prediction starts far
        lower but, trained long enough, can end above random init (warm starts settle in the
        basin they start in); a partial one keeps most of the early gain and trains on like a
        random init (bench/RESULTS.md, "warm-start strength").
        """
        require_range("strength", strength, 0.0, 1.0, lo_open=True)
        graph = self.graph(model.config)
        params = dict(model.named_parameters())
        if set(params) != set(graph.param_order):
            raise ValueError(f"model parameters {sorted(params)} do not match its config's graph")
        hn_device = next(self.parameters()).device
        direct = all(p.dtype == torch.float32 and p.device == hn_device and p.is_contiguous()
                     for p in params.values())
        # Decode into the model's own storage, or into fp32 copies on the hypernet's device.
        targets = ({k: p.data for k, p in params.items()} if direct else
                   {k: p.detach().to(hn_device, torch.float32, copy=True).contiguous() for k, p in params.items()})
        if self.config.anchored:
            self._fill_init(graph, targets, None)
        kept = self._kept_inits(graph, targets)
        decoded = self._decode_or_grow(model.config, graph, targets, strength)
        self._restore(decoded, kept)
        if not direct:
            for name, value in decoded.items():
                params[name].copy_(value)
        return model


def functional_forward(model: nn.Module, params: dict[str, torch.Tensor], *args: Any, **kwargs: Any) -> Any:
    """Run `model` with `params` (e.g. from `predict_batch`) in place of its own parameters.

    Gradients flow back into the hypernet. Tied weights: `params` holds `wte.weight` only and
    `tie_weights=True` makes the tied `lm_head.weight` use it too.
    """
    return torch.func.functional_call(model, params, args, kwargs, tie_weights=True, strict=False)
