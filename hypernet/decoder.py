"""Low-rank parameter decoder: node embedding -> every parameter tensor of that node.

Matrices (the "intended" LoGAH design, LOGAH_NOTES §3): an MLP maps the node embedding h to
X [2r, r] (r^2 coefficients per factor). With a learned basis M [K, r] (one row per index),

    A = M[:out] @ X[:r]^T                [out, r]
    B = (M[:in] @ X[r:]^T)^T             [r, in]
    W = A @ B                            [out, in],  rank <= r

The released code applies a ReLU to X before the basis layer; we do not, because with
entrywise non-negative coefficients the r x r core X_A X_B^T is entrywise non-negative, so
(Perron-Frobenius) one singular value dominates and every predicted matrix starts nearly
rank-1 (a random hypernet then gives a cross-entropy of ~8 on 10 classes instead of ~2.3).

Only the rows of M a target needs are used (`M[:n]` is sliced before the matmul), so the
[nodes, 2r, K] tensor of the released code is never built, and K = 5120 covers GPT-2-L's widest
dimension without tiling.

Dimensions beyond K (vocabularies such as 50257): index i = c*K + j uses the basis row
M[j] * s_c, where s_c [r] is a learned per-chunk code initialised with random signs (s_0 = 1).
Rows of different chunks are therefore different, non-periodic functions of the node, and
the output is produced chunk by chunk (`out=` writes each [K, in] block straight into the
destination), so the vocabulary never needs more than one chunk of scratch memory.

Vectors (LayerNorm scale/shift, biases, class token): v = M[:n] @ g_slot / sqrt(r) with
g = Linear(8d -> 2r)(MLP features); slot 0 = weight / scale / token, slot 1 = bias / shift.

Normalisation (explicit per role, applied in `decode_param`):
- Linear weights (Linear layout [out, in]): exact RMS 1/sqrt(fan_in); c_proj output
  projections additionally / sqrt(2 L); the RMS of A @ B is computed analytically from the
  r x r Gram matrices (||AB||_F^2 = sum(A^T A * B B^T)), so no pass over W is needed.
- embeddings, positional embeddings, class token: RMS 0.02.
- LayerNorm scale 2*sigmoid(v) in (0, 2); biases and LayerNorm shift tanh(0.2 v).

Two code paths share these rules: `decode_param` (one tensor, optionally streamed into `out=`;
used by `LoGAH.predict`) and `decode_many` (all tensors of a meta-batch, same-shape ones in one
einsum, with grad; used by `LoGAH.predict_batch`). Everything runs in fp32 outside autocast.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .graph import Role

EMBEDDING_STD = 0.02
_EPS = 1e-12


class LowRankDecoder(nn.Module):
    def __init__(self, d: int, rank: int, max_dim: int = 5120, max_total_dim: int = 131072) -> None:
        super().__init__()
        self.rank = rank
        self.max_dim = max_dim
        self.max_total_dim = max_total_dim
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.ReLU(), nn.Linear(4 * d, 8 * d), nn.ReLU())
        self.to_factors = nn.Linear(8 * d, 2 * rank * rank)  # X: r^2 coefficients for A and for B
        self.to_vectors = nn.Linear(8 * d, 2 * rank)         # g: two vector slots
        self.basis = nn.Parameter(torch.randn(max_dim, rank))  # M: one learned row per index < K
        n_codes = math.ceil(max_total_dim / max_dim) - 1
        signs = torch.randint(0, 2, (n_codes, rank)).float() * 2 - 1
        self.chunk_codes = nn.Parameter(signs)  # s_1..s_C for indices >= K

    # ---- per-node features ------------------------------------------------------------------
    def node_features(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h [n, d] -> (X [n, 2r, r], g [n, 2, r]), in fp32."""
        with torch.autocast(h.device.type, enabled=False):
            f = self.mlp(h.float())
            x = rearrange(self.to_factors(f), "n (two_r r) -> n two_r r", r=self.rank)
            g = rearrange(self.to_vectors(f), "n (slot r) -> n slot r", slot=2)
        return x, g

    # ---- the basis ---------------------------------------------------------------------------
    def _check(self, n: int) -> None:
        if n > self.max_total_dim:
            from search_spaces import ConfigError

            raise ConfigError("dimension", n, f"<= {self.max_total_dim} (LoGAHConfig.max_total_dim)")

    def basis_chunk(self, c: int, rows: int, base: torch.Tensor | None = None) -> torch.Tensor:
        """Basis rows for indices c*K .. c*K+rows-1: [rows, r].

        `base` (= `self.basis[:n]` sliced once per model, see `prefix`) keeps the backward
        pass from materialising a full [K, r] gradient for every parameter decoded.
        """
        base = self.basis if base is None or base.shape[0] < rows else base
        m = base[:rows]
        return m if c == 0 else m * self.chunk_codes[c - 1]

    def prefix(self, n: int) -> torch.Tensor:
        """The basis rows needed for dimensions up to n (one slice, shared by all parameters)."""
        return self.basis[: min(n, self.max_dim)]

    def basis_rows(self, n: int, base: torch.Tensor | None = None) -> torch.Tensor:
        """Basis rows for indices 0..n-1: [n, r] (only small n: in-dims, vectors)."""
        self._check(n)
        k = self.max_dim
        return torch.cat([self.basis_chunk(c, min(k, n - c * k), base) for c in range(math.ceil(n / k))])

    # ---- decoding ----------------------------------------------------------------------------
    def matrix(self, x: torch.Tensor, n_out: int, n_in: int, std: float,
               out: torch.Tensor | None = None, base: torch.Tensor | None = None) -> torch.Tensor:
        """x [2r, r] -> W [n_out, n_in] with RMS exactly `std` (streamed when `out` is given)."""
        self._check(n_out)
        r, k = self.rank, self.max_dim
        with torch.autocast(x.device.type, enabled=False):
            ca, cb = x[:r], x[r:]  # [r, r] coefficients per factor (no ReLU: see module doc)
            b = F.linear(self.basis_rows(n_in, base), cb).T / math.sqrt(r)  # [r, n_in]
            n_chunks = math.ceil(n_out / k)

            def a_chunk(c: int) -> torch.Tensor:  # [rows, r]
                return F.linear(self.basis_chunk(c, min(k, n_out - c * k), base), ca) / math.sqrt(r)

            if n_chunks == 1:  # the common case: A is small, build it once
                a = a_chunk(0)
                sq = ((a.T @ a) * (b @ b.T)).sum()  # ||A B||_F^2 from r x r Gram matrices
                b = b * (std / torch.sqrt(sq / (n_out * n_in) + _EPS))
                return a @ b if out is None else torch.matmul(a, b, out=out.view(n_out, n_in))
            gram_a = sum(a.T @ a for a in map(a_chunk, range(n_chunks)))  # [r, r], one chunk alive at a time
            sq = (gram_a * (b @ b.T)).sum()
            b = b * (std / torch.sqrt(sq / (n_out * n_in) + _EPS))
            if out is None:
                return torch.cat([a_chunk(c) @ b for c in range(n_chunks)])
            flat = out.view(n_out, n_in)
            for c in range(n_chunks):
                torch.matmul(a_chunk(c), b, out=flat[c * k: c * k + min(k, n_out - c * k)])
            return out

    def vector(self, g: torch.Tensor, n: int, base: torch.Tensor | None = None) -> torch.Tensor:
        """g [r] -> raw vector [n]."""
        with torch.autocast(g.device.type, enabled=False):
            return self.basis_rows(n, base) @ g / math.sqrt(self.rank)

    @staticmethod
    def _activate(v: torch.Tensor, role: str) -> torch.Tensor:
        """Role normalisation of raw vectors v [..., n] (last dim = the vector)."""
        if role == Role.LN_WEIGHT:
            return 2 * torch.sigmoid(v)
        if role == Role.CLS_TOKEN:
            return v * (EMBEDDING_STD / torch.sqrt(v.pow(2).mean(-1, keepdim=True) + _EPS))
        return torch.tanh(0.2 * v)  # biases, LayerNorm shift: small

    @staticmethod
    def matrix_std(role: str, n_in: int, depth: int) -> float:
        """Target RMS of a matrix parameter (Linear layout [out, in])."""
        if role in (Role.EMBEDDING, Role.POS_EMBEDDING):
            return EMBEDDING_STD
        if role in (Role.WEIGHT, Role.HEAD):
            return 1 / math.sqrt(n_in)
        if role == Role.RESIDUAL_WEIGHT:
            return 1 / math.sqrt(n_in * 2 * depth)
        raise ValueError(f"unknown parameter role {role!r}: expected one of {Role.ALL}")

    def decode_param(self, x: torch.Tensor, g: torch.Tensor, shape: tuple[int, ...], role: str, depth: int,
                     out: torch.Tensor | None = None, base: torch.Tensor | None = None) -> torch.Tensor:
        """One parameter of a node, normalised for its role. x [2r, r], g [2, r] from `node_features`."""
        if role in Role.VECTOR_SLOT:
            v = self._activate(self.vector(g[Role.VECTOR_SLOT[role]], math.prod(shape), base), role).view(shape)
            return v if out is None else out.copy_(v)
        n_in, n_out = shape[-1], math.prod(shape[:-1])
        w = self.matrix(x, n_out, n_in, self.matrix_std(role, n_in, depth), out=out, base=base)
        return w.view(shape)

    def decode_many(self, x: torch.Tensor, g: torch.Tensor,
                    targets: list[tuple[int, tuple[int, ...], str, int]]) -> list[torch.Tensor]:
        """Batched `decode_param` for training: same-shape parameters share one einsum.

        x [n, 2r, r], g [n, 2, r] for n nodes; `targets` are (node row, shape, role, depth).
        Every output is materialised (with grad), so use `decode_param(out=...)` for big models.
        """
        r = self.rank
        groups: dict[tuple, list[int]] = {}
        for t, (_, shape, role, _) in enumerate(targets):
            if role in Role.VECTOR_SLOT:
                key = ("vector", role, math.prod(shape))
            else:
                key = ("matrix", math.prod(shape[:-1]), shape[-1])
            groups.setdefault(key, []).append(t)
        base = self.prefix(max(max(k[-2:]) if k[0] == "matrix" else k[-1] for k in groups))
        results: list[torch.Tensor | None] = [None] * len(targets)
        with torch.autocast(x.device.type, enabled=False):
            for key, members in groups.items():
                rows = torch.tensor([targets[t][0] for t in members], device=x.device)
                if key[0] == "vector":
                    _, role, n = key
                    coef = g[rows, Role.VECTOR_SLOT[role]]  # [k, r]
                    v = self._activate(coef @ self.basis_rows(n, base).T / math.sqrt(r), role)  # [k, n]
                    outs = v.unbind(0)
                else:
                    _, n_out, n_in = key
                    xs = x[rows]  # [k, 2r, r]
                    a = torch.einsum("os,kts->kot", self.basis_rows(n_out, base), xs[:, :r]) / math.sqrt(r)
                    b = torch.einsum("is,kts->kti", self.basis_rows(n_in, base), xs[:, r:]) / math.sqrt(r)
                    sq = (torch.einsum("kot,kou->ktu", a, a) * torch.einsum("kti,kui->ktu", b, b)).sum((1, 2))
                    std = torch.tensor([self.matrix_std(targets[t][2], n_in, targets[t][3]) for t in members],
                                       device=x.device)
                    scale = std / torch.sqrt(sq / (n_out * n_in) + _EPS)  # [k]: exact RMS per matrix
                    outs = torch.bmm(a, b * scale[:, None, None]).unbind(0)
                for t, o in zip(members, outs):
                    results[t] = o.reshape(targets[t][1])
        return results
