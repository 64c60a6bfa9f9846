"""Initialisations a warm start is compared against, written for our two models' parameter layout.

- `pytorch_default_init`: what `nn.Linear` / `nn.Embedding` / `nn.LayerNorm` do by default (the
  other half of "the better of the GPT-2 scheme and PyTorch's default"; the models' own init is the
  GPT-2 scheme, `_transformer.init_weights`).
- `mimetic_init`: Trockman & Kolter (ICML 2023), closed form, no data: every head's
  W_q^T W_k ~ a1 Z + b1 I and each layer's W_v^T W_o^T ~ a2 Z - b2 I (Z Gaussian, 1/d variance), so
  attention starts out as a mixture of identity-like (local) and random maps.
- `inherit_weights`: weight selection (Xu et al., ICLR 2024) from another trained model of the same
  kind: every parameter takes the leading rows/columns of its namesake (q, k and v cropped
  separately), blocks map to blocks of the same index, what does not exist in the source keeps
  the target's init.
"""
from __future__ import annotations

import math

import torch
from torch import nn

MIMETIC_QK = (0.7, 0.7)  # (alpha1, beta1): W_q^T W_k ~ alpha1 Z + beta1 I, per head
MIMETIC_VO = (0.4, 0.4)  # (alpha2, beta2): W_v^T W_o^T ~ alpha2 Z - beta2 I, per layer


@torch.no_grad()
def pytorch_default_init(model: nn.Module, generator: torch.Generator | None = None) -> dict[str, int]:
    """Re-initialise every Linear, Embedding and LayerNorm as PyTorch's constructors do, and
    positional / class tokens (plain Parameters) as N(0, 0.02) like timm. Returns counts by kind."""
    counts = {"linear": 0, "embedding": 0, "layernorm": 0, "other": 0}
    covered = set()
    for module in model.modules():
        if isinstance(module, nn.Linear):
            bound = 1 / math.sqrt(module.in_features)  # kaiming_uniform(a=sqrt(5)) for weight and bias
            module.weight.uniform_(-bound, bound, generator=generator)
            if module.bias is not None:
                module.bias.uniform_(-bound, bound, generator=generator)
            counts["linear"] += 1
        elif isinstance(module, nn.Embedding):
            module.weight.normal_(0.0, 1.0, generator=generator)
            counts["embedding"] += 1
        elif isinstance(module, nn.LayerNorm):
            module.weight.fill_(1.0)
            module.bias.zero_()
            counts["layernorm"] += 1
        else:
            continue
        covered.update(id(p) for p in module.parameters(recurse=False))
    for p in model.parameters():
        if id(p) not in covered:
            p.normal_(0.0, 0.02, generator=generator)
            counts["other"] += 1
    return counts


def _factor(m: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, B) with A^T B the best rank-`rank` approximation of the square matrix m (A, B: [rank, d])."""
    u, s, vh = torch.linalg.svd(m)
    root = s[:rank].sqrt()
    return (u[:, :rank] * root).T, root[:, None] * vh[:rank]


@torch.no_grad()
def mimetic_init(model: nn.Module, generator: torch.Generator | None = None,
                 qk: tuple[float, float] = MIMETIC_QK, vo: tuple[float, float] = MIMETIC_VO) -> int:
    """Set every attention layer's q/k and v/output weights in closed form (other parameters keep
    their init). Returns the number of attention layers set."""
    n = 0
    for module in model.modules():
        if not (hasattr(module, "c_attn") and hasattr(module, "c_proj") and hasattr(module, "heads")):
            continue
        w = module.c_attn.weight  # [3C, C]: rows q, k, v; y = x W^T
        c, heads = w.shape[1], module.heads
        d = c // heads
        q, k, v = w[:c], w[c:2 * c], w[2 * c:]
        for h in range(heads):
            z = torch.randn(c, c, generator=generator, dtype=w.dtype) / math.sqrt(c)
            a, b = _factor(qk[0] * z + qk[1] * torch.eye(c, dtype=w.dtype), d)  # q^T k for this head's rows
            q[h * d:(h + 1) * d] = a
            k[h * d:(h + 1) * d] = b
        z = torch.randn(c, c, generator=generator, dtype=w.dtype) / math.sqrt(c)
        a, b = _factor(vo[0] * z - vo[1] * torch.eye(c, dtype=w.dtype), c)  # W_v^T W_o^T = a^T b
        v.copy_(a)
        module.c_proj.weight.copy_(b.T)
        n += 1
    return n


def _crop_into(target: torch.Tensor, source: torch.Tensor) -> bool:
    """Copy the leading block of `source` that fits into `target` (same number of dims)."""
    if source.dim() != target.dim():
        return False
    region = tuple(slice(0, min(a, b)) for a, b in zip(target.shape, source.shape))
    target[region] = source[region].to(target.dtype)
    return True


@torch.no_grad()
def inherit_weights(model: nn.Module, source: dict[str, torch.Tensor]) -> dict[str, int]:
    """Weight selection from `source` (a trained model's `named_parameters`, same model kind) into
    `model` in place. Fused q/k/v weights and biases are cropped per segment. Returns counts of
    parameters copied whole, cropped or padded, and kept at their init."""
    counts = {"whole": 0, "partial": 0, "kept": 0}
    for name, p in model.named_parameters():
        s = source.get(name)
        if s is None:
            counts["kept"] += 1
            continue
        if name.endswith("attn.c_attn.weight") or name.endswith("attn.c_attn.bias"):
            ok = all(_crop_into(t, u) for t, u in zip(p.chunk(3, dim=0), s.chunk(3, dim=0)))
        else:
            ok = _crop_into(p, s)
        counts["kept" if not ok else "whole" if tuple(s.shape) == tuple(p.shape) else "partial"] += 1
    return counts


__all__ = ["MIMETIC_QK", "MIMETIC_VO", "inherit_weights", "mimetic_init", "pytorch_default_init"]
