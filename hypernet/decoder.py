"""Low-rank parameter decoder: node embedding -> every parameter tensor of that node.

Residual low-rank prediction (default, `residual=True`): the decoder predicts a gated low-rank
CORRECTION on top of the standard random initialisation,

    W = W0 + g_role * Delta            (matrices and every >= 2-D parameter)
    LayerNorm scale = 2 sigmoid(g_role * v),  bias / LayerNorm shift = tanh(0.2 g_role * v)

where W0 ~ init_weights' distribution (N(0, 0.02); c_proj N(0, 0.02 / sqrt(2 L))), Delta is the
low-rank A @ B below with its per-role RMS (1/sqrt(fan_in) for Linear weights, 0.02 for
embeddings; so g = 1 is the magnitude of the pure low-rank prediction, which learns when W0 is held
fixed), and g_role = GAIN_SCALE * gain[role] with one learnable scalar per role, zero at
initialisation. A fresh hypernet therefore predicts exactly the random-init distribution (scale 1,
bias 0, full-rank W0), and meta-training moves away from it only where that lowers the loss. This
removes the two failures of pure low-rank prediction (bench/RESULTS.md): every matrix of every
layer confined to one shared r-dim subspace, and a fixed 1/sqrt(fan_in) weight scale. GAIN_SCALE
multiplies the gains' Adam step (~lr per step on `gain`), so g can reach O(1) within a few hundred
meta-steps. An optional `correction_cap` bounds each correction's RMS to about that many times W0's
std (see `_capped`). The caller supplies W0 (`LoGAH` uses the anchored init of hypernet/anchor.py, shared
by all architectures, or for fresh-W0 hypernets a seeded draw / the model's own init). Residual decoders also learn an
offset of X and g per (op, layer) key (`node_keys`, zero at init): a linear path around the MLP,
so layers whose encoder embeddings h barely differ can still get different corrections.

`residual=False` is the previous pure low-rank prediction (W = Delta with RMS 1/sqrt(fan_in),
vectors without gains), kept for ablations and old checkpoints. The rest of this docstring
describes Delta.

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
Rows of different chunks are therefore different, non-periodic functions of the node. The
factor A of a vocabulary matrix is only [vocab, r] (6 MB for GPT-2), so W itself is one GEMM
written straight into its destination.

Vectors (LayerNorm scale/shift, biases, class token): v = M[:n] @ g_slot / sqrt(r) with
g = Linear(8d -> 2r)(MLP features); slot 0 = weight / scale / token, slot 1 = bias / shift.

Normalisation (explicit per role, the same in every decode path; with `residual=True` the matrix
RMS below is multiplied by the signed gain g_role):
- Linear weights (Linear layout [out, in]): exact RMS 1/sqrt(fan_in); c_proj output
  projections additionally / sqrt(2 L); the RMS of A @ B is computed analytically from the
  r x r Gram matrices (||AB||_F^2 = sum(A^T A * B B^T)), so no pass over W is needed.
- embeddings, positional embeddings, class token: RMS 0.02.
- LayerNorm scale 2*sigmoid(v) in (0, 2); biases and LayerNorm shift tanh(0.2 v).

Three code paths share these rules. `decode_into` (no grad; `LoGAH.predict` / `apply`) and
`decode_many` (with grad; `LoGAH.predict_batch`) build the factors of all same-shape tensors
together (`_factors`: one matmul per factor, Gram matrices from the r x r basis Gram); then
`decode_into` writes each matrix with a single GEMM into its preallocated output, while
`decode_many` materialises them with one bmm. The original one-tensor-at-a-time path lives in the
tests (tests/hypernet/_reference_decode.py) as the reference the fast
path is tested against). Everything runs in fp32 outside autocast.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .graph import Role

EMBEDDING_STD = 0.02
INIT_STD = 0.02  # search_spaces._transformer.init_weights: N(0, 0.02), c_proj / sqrt(2 L)
GAIN_SCALE = 10.0  # g_role = GAIN_SCALE * gain[role]: see the module docstring
# Roles predicted as W0 + g * Delta (every >= 2-D parameter); the others are gated vectors.
RESIDUAL_ROLES = frozenset({Role.WEIGHT, Role.RESIDUAL_WEIGHT, Role.HEAD, Role.EMBEDDING, Role.POS_EMBEDDING,
                            Role.CLS_TOKEN})
# The standard init of the fully predicted (non-residual) vector roles, what `strength` < 1 blends with.
ROLE_INIT = {Role.LN_WEIGHT: 1.0, Role.LN_BIAS: 0.0, Role.BIAS: 0.0}
_EPS = 1e-12


def init_std(role: str, depth: int) -> float:
    """Std of the standard initialisation W0 of a residual-role parameter (as init_weights)."""
    if role not in RESIDUAL_ROLES:
        raise ValueError(f"role {role!r} has no random init: expected one of {sorted(RESIDUAL_ROLES)}")
    return INIT_STD / math.sqrt(2 * depth) if role == Role.RESIDUAL_WEIGHT else INIT_STD


class LowRankDecoder(nn.Module):
    def __init__(self, d: int, rank: int, max_dim: int = 5120, max_total_dim: int = 131072,
                 residual: bool = True, node_keys: int = 0, correction_cap: float | None = None) -> None:
        super().__init__()
        self.rank = rank
        self.correction_cap = correction_cap
        self.residual = residual
        self.max_dim = max_dim
        self.max_total_dim = max_total_dim
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.ReLU(), nn.Linear(4 * d, 8 * d), nn.ReLU())
        self.to_factors = nn.Linear(8 * d, 2 * rank * rank)  # X: r^2 coefficients for A and for B
        self.to_vectors = nn.Linear(8 * d, 2 * rank)         # g: two vector slots
        self.basis = nn.Parameter(torch.randn(max_dim, rank))  # M: one learned row per index < K
        n_codes = math.ceil(max_total_dim / max_dim) - 1
        signs = torch.randint(0, 2, (n_codes, rank)).float() * 2 - 1
        self.chunk_codes = nn.Parameter(signs)  # s_1..s_C for indices >= K
        # 1 + the largest basis index meta-training used (0: not recorded): see `chunk`.
        self.register_buffer("rows_seen", torch.zeros((), dtype=torch.long))
        if residual:  # one gain per role (Role.ALL order), 0: predict exactly the random init
            self.gain = nn.Parameter(torch.zeros(len(Role.ALL)))
        if node_keys:  # per-(op, layer) offsets of X and g, a linear path around the MLP (zero at init)
            self.key_embed = nn.Embedding(node_keys, d)
            self.key_to_features = nn.Linear(d, 2 * rank * rank + 2 * rank)
            nn.init.zeros_(self.key_to_features.weight)
            nn.init.zeros_(self.key_to_features.bias)

    # ---- residual gating ---------------------------------------------------------------------
    def role_gain(self, roles: str | list[str]) -> torch.Tensor:
        """g_role for one role (scalar) or a list of roles ([k]); residual decoders only."""
        if isinstance(roles, str):
            return GAIN_SCALE * self.gain[Role.ALL.index(roles)]
        idx = torch.tensor([Role.ALL.index(r) for r in roles], device=self.gain.device)
        return GAIN_SCALE * self.gain[idx]

    # ---- per-node features ------------------------------------------------------------------
    def node_features(self, h: torch.Tensor, keys: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """h [n, d] (+ per-node (op, layer) keys [n]) -> (X [n, 2r, r], g [n, 2, r]), in fp32."""
        with torch.autocast(h.device.type, enabled=False):
            f = self.mlp(h.float())
            x, g = self.to_factors(f), self.to_vectors(f)
            if keys is not None and hasattr(self, "key_embed"):
                offset = self.key_to_features(self.key_embed(keys))
                x, g = x + offset[:, : x.shape[1]], g + offset[:, x.shape[1]:]
            x = rearrange(x, "n (two_r r) -> n two_r r", r=self.rank)
            g = rearrange(g, "n (slot r) -> n slot r", slot=2)
        return x, g

    # ---- the basis ---------------------------------------------------------------------------
    @property
    def chunk(self) -> int:
        """K: indices >= K reuse the basis rows, chunk by chunk, with the chunk codes.

        `max_dim`, or once meta-training has recorded its reach (`rows_seen`), the smaller of the
        two: rows no architecture of meta-training reached were never trained, so a dimension
        wider than any trained one reuses the trained rows (times a chunk code) instead of
        reading untrained ones."""
        seen = int(self.rows_seen)
        return min(self.max_dim, seen) if seen > 0 else self.max_dim

    def _check(self, n: int) -> None:
        limit = min(self.max_total_dim, self.chunk * (1 + self.chunk_codes.shape[0]))
        if n > limit:
            from search_spaces import ConfigError

            raise ConfigError("dimension", n, f"<= {limit} (LoGAHConfig.max_total_dim, or the chunk codes "
                                              f"times the {self.chunk} basis rows meta-training reached)")

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
        return self.basis[: min(n, self.chunk)]

    def basis_rows(self, n: int, base: torch.Tensor | None = None) -> torch.Tensor:
        """Basis rows for indices 0..n-1: [n, r] (a view of the basis when n <= K)."""
        self._check(n)
        k = self.chunk
        if n <= k:
            return self.basis_chunk(0, n, base)  # a view: no copy
        return torch.cat([self.basis_chunk(c, min(k, n - c * k), base) for c in range(math.ceil(n / k))])

    # ---- decoding ----------------------------------------------------------------------------
    def matrix(self, x: torch.Tensor, n_out: int, n_in: int, std: float | torch.Tensor,
               out: torch.Tensor | None = None, base: torch.Tensor | None = None) -> torch.Tensor:
        """x [2r, r] -> W [n_out, n_in] with RMS exactly |std| (streamed when `out` is given).

        `std` may be a signed, differentiable tensor (g_role times the role's RMS).
        """
        self._check(n_out)
        r, k = self.rank, self.chunk
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

    def _activate(self, v: torch.Tensor, role: str) -> torch.Tensor:
        """Role normalisation of raw vectors v [..., n] (last dim = the vector).

        Residual decoders gate v with g_role, so at g = 0: LayerNorm scale 1, biases 0, and the
        class token's correction 0 (the caller adds it to the token's W0).
        """
        if role == Role.CLS_TOKEN:  # RMS 0.02 (= W0's std), then gated
            v = v * (EMBEDDING_STD / torch.sqrt(v.pow(2).mean(-1, keepdim=True) + _EPS))
            return v * self._capped(self.role_gain(role), 1.0) if self.residual else v  # v has W0's RMS
        if self.residual:
            v = v * self.role_gain(role)
        if role == Role.LN_WEIGHT:
            return 2 * torch.sigmoid(v)
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

    # ---- batched decoding (predict and predict_batch) ----------------------------------------
    @staticmethod
    def _group_key(shape: tuple[int, ...], role: str) -> tuple:
        """Targets with equal keys are decoded by one batched op."""
        if role in Role.VECTOR_SLOT:
            return ("vector", role, math.prod(shape))
        return ("matrix", math.prod(shape[:-1]), shape[-1])

    def _groups(self, targets: list[tuple[int, tuple[int, ...], str, int]]
                ) -> tuple[dict[tuple, list[int]], torch.Tensor]:
        """(group key -> target indices, the basis prefix every group needs)."""
        groups: dict[tuple, list[int]] = {}
        for t, (_, shape, role, _) in enumerate(targets):
            groups.setdefault(self._group_key(tuple(shape), role), []).append(t)
        reach = max(max(k[-2:]) if k[0] == "matrix" else k[-1] for k in groups)
        return groups, self.prefix(reach)

    def _vectors(self, g: torch.Tensor, rows: torch.Tensor, role: str, n: int, base: torch.Tensor) -> torch.Tensor:
        """Normalised vectors of `role` for the nodes `rows`: [k, n]."""
        coef = g[rows, Role.VECTOR_SLOT[role]]  # [k, r]
        return self._activate(coef @ self.basis_rows(n, base).T / math.sqrt(self.rank), role)

    def _factors(self, x: torch.Tensor, rows: torch.Tensor, n_out: int, n_in: int, std: torch.Tensor,
                 base: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Factors of the nodes `rows` (k of them): A [k, n_out, r] and B [k, r, n_in], B scaled
        so that A @ B has RMS exactly `std` [k].

        Each factor is ONE matmul for all k nodes: A = M_out X_A^T / sqrt(r) is computed as
        [n_out, r] @ [r, k r] and returned as a strided view (A[j] has row stride k r, which
        BLAS takes as is). ||A B||_F^2 = sum(A^T A * B B^T) with A^T A = X_A (M^T M) X_A^T / r:
        only the r x r Gram matrix of the basis rows touches n_out / n_in, never A, B or W.
        """
        r = self.rank
        k = rows.shape[0]
        xs = x[rows] / math.sqrt(r)  # [k, 2r, r]; the 1/sqrt(r) of both factors, on the small side
        xa, xb = xs[:, :r], xs[:, r:]  # [k, r (t), r (s)]
        m_out, m_in = self.basis_rows(n_out, base), self.basis_rows(n_in, base)  # [n, r]
        a = (m_out @ xa.reshape(k * r, r).T).view(n_out, k, r).permute(1, 0, 2)  # [k, n_out, r]
        b = (xb.reshape(k * r, r) @ m_in.T).view(k, r, n_in)                     # [k, r, n_in]
        gram_a = xa @ (m_out.T @ m_out) @ xa.transpose(1, 2)  # [k, r, r] = A^T A
        gram_b = xb @ (m_in.T @ m_in) @ xb.transpose(1, 2)    # [k, r, r] = B B^T
        sq = (gram_a * gram_b).sum((1, 2))  # [k]: ||A B||_F^2
        scale = std / torch.sqrt(sq / (n_out * n_in) + _EPS)  # [k]: exact RMS per matrix
        return a, b * scale[:, None, None]

    def _stds(self, targets: list[tuple[int, tuple[int, ...], str, int]], members: list[int], n_in: int,
              device: torch.device) -> torch.Tensor:
        """Target (signed) RMS of each matrix in a group: [k]; times g_role when residual."""
        stds = torch.tensor([self.matrix_std(targets[t][2], n_in, targets[t][3]) for t in members], device=device)
        if not self.residual:
            return stds
        stds = stds * self.role_gain([targets[t][2] for t in members])
        if self.correction_cap is None:  # the usual case: no W0 stds to build on the prediction path
            return stds
        return self._capped(stds, torch.tensor([init_std(targets[t][2], targets[t][3]) for t in members],
                                               device=device))

    def _capped(self, std: torch.Tensor, w0_std: float | torch.Tensor) -> torch.Tensor:
        """A correction's signed RMS `std`, smoothly held below `correction_cap` times W0's std
        `w0_std`: std / sqrt(1 + (std / bound)^2) with bound = cap * w0; unchanged without a cap.

        Why: an uncapped gain, one per role for every width and depth, grows to whatever lowers the
        step-0 loss on average, and on the narrowest models the corrections it gives are many times
        W0 (bench/RESULTS.md, section 2: what a cap does to the starts' training). The algebraic
        form (not tanh) keeps a gradient Adam can follow when a gain starts far beyond the cap (a
        checkpoint meta-trained without one)."""
        if self.correction_cap is None:
            return std
        bound = self.correction_cap * w0_std
        return std / torch.sqrt(1 + (std / bound) ** 2)

    def _plan(self, targets: list[tuple[int, tuple[int, ...], str, int]], strength: float):
        """`_groups(targets)`, after checking that `strength` can be honoured (both decode paths)."""
        if strength != 1.0 and not self.residual:
            raise ValueError("strength < 1 needs a residual decoder (a pure low-rank one has no init to blend with)")
        return self._groups(targets)

    def decode_many(self, x: torch.Tensor, g: torch.Tensor, targets: list[tuple[int, tuple[int, ...], str, int]],
                    inits: list[torch.Tensor | None] | None = None, strength: float = 1.0) -> list[torch.Tensor]:
        """Batched `decode_param` for training: same-shape parameters share one bmm.

        x [n, 2r, r], g [n, 2, r] for n nodes; `targets` are (node row, shape, role, depth);
        `inits[t]` is W0 of target t (needed for `RESIDUAL_ROLES` when residual; W0 + g Delta is
        one `baddbmm`). Every output is materialised (with grad), so use `decode_into` for big models.
        `strength` < 1 gives the same blend as `decode_into`'s (what a warm trial starts from).
        """
        groups, base = self._plan(targets, strength)
        results: list[torch.Tensor | None] = [None] * len(targets)

        def init_of(t: int) -> torch.Tensor:
            if inits is None or inits[t] is None:
                raise ValueError(f"a residual decoder needs init (W0) for role {targets[t][2]!r}")
            return inits[t]

        with torch.autocast(x.device.type, enabled=False):
            for key, members in groups.items():
                rows = torch.tensor([targets[t][0] for t in members], device=x.device)
                residual = self.residual and targets[members[0]][2] in RESIDUAL_ROLES
                if key[0] == "vector":
                    outs = self._vectors(g, rows, key[1], key[2], base)
                    if residual:
                        outs = torch.stack([init_of(t).reshape(-1) for t in members]) + strength * outs
                    elif strength != 1.0:
                        init = ROLE_INIT.get(key[1], 0.0)
                        outs = init + strength * (outs - init)
                    outs = outs.unbind(0)
                else:
                    _, n_out, n_in = key
                    a, b = self._factors(x, rows, n_out, n_in, self._stds(targets, members, n_in, x.device), base)
                    if self.residual:  # every matrix role is residual
                        w0 = torch.stack([init_of(t).reshape(n_out, n_in) for t in members])
                        outs = torch.baddbmm(w0, a, b, alpha=strength).unbind(0)
                    else:
                        outs = torch.bmm(a, b).unbind(0)
                for t, o in zip(members, outs):
                    results[t] = o.reshape(targets[t][1])
        return results

    @torch.no_grad()
    def decode_into(self, x: torch.Tensor, g: torch.Tensor, targets: list[tuple[int, tuple[int, ...], str, int]],
                    outs: list[torch.Tensor], scratch_bytes: int = 16 * 2**20, strength: float = 1.0) -> None:
        """`decode_many` without grad, written straight into the contiguous fp32 tensors `outs`.

        The same batched factor math as `decode_many` (so `predict` == `predict_batch`), but
        each matrix is one GEMM whose output is its destination: `matmul(out=)`, or, when
        residual, `addmm_` onto the W0 that `outs` must already hold (so W0 + g Delta costs no
        temporary). No [n, out, in] intermediate, no copy. Factors are built for as many
        same-shape nodes at a time as fit in `scratch_bytes` (A and B are O((out + in) r), tiny
        next to W), which bounds the peak memory to the outputs plus that scratch and keeps the
        op count (and, on a busy CPU, the thread synchronisation) per parameter at one.

        `strength` < 1 (residual only) writes the blend init + strength * (prediction - init):
        W0 + strength * g Delta for residual roles, and for the fully predicted vectors the
        standard init (`ROLE_INIT`: LayerNorm gain 1, shifts and biases 0) moved that fraction of
        the way to the prediction.
        """
        groups, base = self._plan(targets, strength)
        with torch.autocast(x.device.type, enabled=False):
            for key, members in groups.items():
                if key[0] == "vector":
                    rows = torch.tensor([targets[t][0] for t in members], device=x.device)
                    add = self.residual and key[1] in RESIDUAL_ROLES  # the class token: W0 + g Delta
                    init = ROLE_INIT.get(key[1], 0.0)
                    for t, v in zip(members, self._vectors(g, rows, key[1], key[2], base)):
                        if add:
                            outs[t].view(-1).add_(v, alpha=strength)
                        elif strength == 1.0:
                            outs[t].view(-1).copy_(v)
                        else:
                            outs[t].view(-1).copy_(v.sub(init).mul_(strength).add_(init))
                    continue
                _, n_out, n_in = key
                per_node = (n_out + 2 * n_in) * self.rank * 4  # A, B and the scaled B, fp32
                step = max(1, scratch_bytes // per_node)
                for start in range(0, len(members), step):
                    part = members[start: start + step]
                    rows = torch.tensor([targets[t][0] for t in part], device=x.device)
                    a, b = self._factors(x, rows, n_out, n_in, self._stds(targets, part, n_in, x.device), base)
                    for j, t in enumerate(part):
                        w = outs[t].view(n_out, n_in)
                        w.addmm_(a[j], b[j], alpha=strength) if self.residual else torch.matmul(a[j], b[j], out=w)
                    del a, b
