"""The pre-LayerNorm transformer block shared by ViT and GPT-2.

Both models use the same block; they differ only in causal masking and the GELU variant
(GPT-2 uses the tanh approximation). Parameter names follow GPT-2 (`c_attn`, `c_proj`,
`c_fc`) so one graph builder and one export mapping serve both spaces.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class SelfAttention(nn.Module):
    def __init__(self, width: int, heads: int, causal: bool, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads = heads
        self.causal = causal
        self.dropout = dropout
        self.c_attn = nn.Linear(width, 3 * width)  # fused q, k, v
        self.c_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, T, C]
        q, k, v = rearrange(self.c_attn(x), "b t (three h d) -> three b h t d", three=3, h=self.heads)
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=self.causal, dropout_p=self.dropout if self.training else 0.0
        )  # [B, H, T, D]
        return self.c_proj(rearrange(y, "b h t d -> b t (h d)"))


class MLP(nn.Module):
    def __init__(self, width: int, hidden: int, gelu_approximate: str) -> None:
        super().__init__()
        self.c_fc = nn.Linear(width, hidden)
        self.c_proj = nn.Linear(hidden, width)
        self.gelu_approximate = gelu_approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x), approximate=self.gelu_approximate))


class Block(nn.Module):
    def __init__(
        self,
        width: int,
        heads: int,
        mlp_hidden: int,
        *,
        causal: bool,
        gelu_approximate: str,
        dropout: float = 0.0,
        layer_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=layer_norm_eps)
        self.attn = SelfAttention(width, heads, causal, dropout)
        self.ln_2 = nn.LayerNorm(width, eps=layer_norm_eps)
        self.mlp = MLP(width, mlp_hidden, gelu_approximate)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln_1(x)))
        return x + self.drop(self.mlp(self.ln_2(x)))


def init_weights(module: nn.Module, residual_projections: int) -> None:
    """GPT-2 initialisation: N(0, 0.02), zero biases, output projections scaled by 1/sqrt(2L).

    This is the "random init" baseline every warm start is compared against. Models built on the
    `meta` device (shapes only: graphs, functional calls) have no values to draw.
    """
    if any(p.is_meta for p in module.parameters()):
        return
    for name, p in module.named_parameters():
        if name.endswith(".bias") and p.dim() == 1:
            nn.init.zeros_(p)
        elif p.dim() == 1:  # LayerNorm scale
            nn.init.ones_(p)
        elif name.endswith("c_proj.weight"):
            nn.init.normal_(p, std=0.02 / (2 * residual_projections) ** 0.5)
        else:
            nn.init.normal_(p, std=0.02)
