"""The original per-tensor decode path, kept only as the reference the fast batched paths
(`LowRankDecoder.decode_many` / `decode_into`, `LoGAH.predict`) are pinned against: same
parameterisation, different op order."""
from __future__ import annotations

import math

import torch

from hypernet.decoder import RESIDUAL_ROLES, LowRankDecoder
from hypernet.graph import Role
from hypernet.model import LoGAH, node_keys
from search_spaces import ModelConfig


def decode_param(dec: LowRankDecoder, x: torch.Tensor, g: torch.Tensor, shape: tuple[int, ...], role: str,
                 depth: int, out: torch.Tensor | None = None, base: torch.Tensor | None = None,
                 init: torch.Tensor | None = None) -> torch.Tensor:
    """One parameter of a node, normalised for its role. x [2r, r], g [2, r] from `node_features`.

    Residual decoders need `init` (W0) for the roles in `RESIDUAL_ROLES` and return W0 + g Delta.
    """
    residual = dec.residual and role in RESIDUAL_ROLES
    if residual and init is None:
        raise ValueError(f"a residual decoder needs init (W0) for role {role!r}")
    if role in Role.VECTOR_SLOT:
        v = dec._activate(dec.vector(g[Role.VECTOR_SLOT[role]], math.prod(shape), base), role).view(shape)
        if residual:
            v = init.view(shape) + v
        return v if out is None else out.copy_(v)
    n_in, n_out = shape[-1], math.prod(shape[:-1])
    std = dec.matrix_std(role, n_in, depth)
    w = dec.matrix(x, n_out, n_in, std * dec.role_gain(role) if residual else std, out=out, base=base)
    if residual:
        w = init.view(shape) + w.view(shape)
        if out is not None:
            out.copy_(w)
    return w.view(shape)


@torch.no_grad()
def decode_reference(hn: LoGAH, config: ModelConfig, init: dict[str, torch.Tensor] | None = None
                      ) -> dict[str, torch.Tensor]:
    """The original per-tensor path (`decode_param`, one node at a time), kept as the reference
    that tests pin the fast `predict` against: same parameterisation, different op order.
    Residual hypernets need `init` (W0, e.g. `hn.base_init(config, generator)`)."""
    graph = hn.graph(config)
    (h,) = hn.embed([graph])
    result: dict[str, torch.Tensor] = {}
    base = hn.decoder.prefix(max(max(math.prod(s[:-1]), s[-1]) for shapes in graph.param_shapes for s in shapes))
    keys = node_keys(graph).to(h.device)
    for i, names in enumerate(graph.param_names):
        if not names:
            continue
        x, g = hn.decoder.node_features(h[i: i + 1], keys[i: i + 1])
        for name, shape, role in zip(names, graph.param_shapes[i], graph.param_roles[i]):
            w0 = init.get(name) if init is not None else None
            result[name] = decode_param(hn.decoder, x[0], g[0], tuple(shape), role, graph.depth, base=base, init=w0)
    return {name: result[name] for name in graph.param_order}
