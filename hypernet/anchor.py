"""Anchored initialisation: one random init W0 that every architecture of a space shares.

A residual hypernet predicts W = W0 + g * Delta. When W0 is a fresh random draw, the features a
correction would have to work with differ at every draw, so the correction that helps for *any*
W0 is close to zero: ViT/digits meta-training stays at chance (bench/RESULTS.md). Anchoring makes
W0 a fixed function of (seed, parameter name, segment, row, column):

* the width-64 model's W0 is the top-left block of the width-96 model's, and block 3 of a
  4-layer model equals block 3 of a 6-layer one, so all architectures share their leading
  features and one learned correction transfers across widths and depths;
* every W0 is still exactly i.i.d. N(0, std^2) entrywise: for any single model it is a standard
  random initialisation (`init_weights`' distribution), full rank, just not a fresh one.

Layout: a >= 2-D parameter is viewed as a matrix [out, in] (leading dims flattened) and split
along `out` into `segments(name)` equal parts (3 for the fused q/k/v projection, so the q rows
of a narrow model are the q rows of a wide one, not its k rows). Each part is covered by
TILE x TILE blocks; block (i, j) is drawn on the CPU from its own generator, seeded by a hash of
(seed, name, part, i, j), and cropped at the edges. Values therefore do not depend on the device,
the thread count or which other parameters are drawn, and a parameter costs one small draw per
block (GPT-2-L: ~47k blocks of 16k numbers); `anchored_fill_` deals the block rows of all the
parameters it is given over torch's intra-op threads.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

TILE = 128


def segments(name: str) -> int:
    """Equal row blocks of a parameter that keep their meaning when the width changes: 3 for the
    fused q/k/v projection (its weight and its bias: q, k, v rows), else 1."""
    return 3 if name.endswith(("attn.c_attn.weight", "attn.c_attn.bias")) else 1


def _block_seed(seed: int, name: str, part: int, i: int, j: int) -> int:
    digest = hashlib.blake2b(f"{seed}|{name}|{part}|{i}|{j}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1  # a non-negative int64


@dataclass(frozen=True, eq=False)
class _Strip:
    """One band of TILE rows of one parameter part: the unit of work (drawn block by block)."""
    dest: torch.Tensor  # [n_out, n_in] view of the output (or its CPU stand-in)
    name: str
    std: float
    part: int
    i: int
    r0: int  # first row of the band in `dest`
    h: int  # rows in the band (< TILE at a part's edge)


def _strips(dest: torch.Tensor, name: str, std: float) -> list[_Strip]:
    n_out = dest.shape[0]
    parts = segments(name)
    if n_out % parts:
        parts = 1
    rows = n_out // parts
    return [_Strip(dest, name, std, part, i, part * rows + i * TILE, min(TILE, rows - i * TILE))
            for part in range(parts) for i in range(math.ceil(rows / TILE))]


def _fill(strips: list[_Strip], seed: int) -> None:
    """Draw `strips` in order on this thread, one generator re-seeded per block."""
    gen, buffers = torch.Generator(), {}
    for s in strips:
        n_in = s.dest.shape[1]
        n_blocks, full = math.ceil(n_in / TILE), n_in // TILE
        if n_blocks not in buffers:  # one block row, drawn block by block
            buffers[n_blocks] = torch.empty(n_blocks, TILE, TILE)
        strip = buffers[n_blocks]
        for j in range(n_blocks):
            gen.manual_seed(_block_seed(seed, s.name, s.part, s.i, j))
            strip[j].normal_(0.0, s.std, generator=gen)
        band = s.dest[s.r0: s.r0 + s.h]  # [h, n_in]
        if full:  # all full-width blocks of the row in one strided copy
            band[:, : full * TILE].view(s.h, full, TILE).copy_(strip[:full, : s.h].transpose(0, 1))
        if full < n_blocks:
            band[:, full * TILE:].copy_(strip[full, : s.h, : n_in - full * TILE])


def _draw(targets: list[tuple[torch.Tensor, str, float]], seed: int) -> None:
    """Draw into CPU `[n_out, n_in]` views: one pass, block rows dealt over torch's intra-op threads."""
    strips = [s for dest, name, std in targets for s in _strips(dest, name, std)]
    workers = min(torch.get_num_threads(), len(strips))
    if workers > 1 and sum(s.h * s.dest.shape[1] for s in strips) >= 1 << 20:  # the ops release the GIL
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(_fill, [strips[k::workers] for k in range(workers)], [seed] * workers))
    else:
        _fill(strips, seed)


@torch.no_grad()
def anchored_fill_(targets: Sequence[tuple[torch.Tensor, str, float]], seed: int) -> None:
    """Fill each `(out, name, std)` (any device, contiguous, >= 1-D) with the anchored N(0, std^2) init of `name`.

    The CPU targets' strips go through one pass over torch's intra-op threads, dealt out in turn,
    so a model with many mid-sized parameters keeps both threads busy to the end instead of joining
    after every parameter (values never depend on the split). Targets on another device are drawn
    on the CPU one at a time and copied over, so the CPU holds one parameter's draw at most."""
    on_cpu, elsewhere = [], []
    for out, name, std in targets:
        if not out.is_contiguous():
            raise ValueError(f"anchored_fill_ needs a contiguous tensor for {name!r}")
        n_in = out.shape[-1] if out.dim() else 1
        view = out.view(out.numel() // max(1, n_in), n_in)
        (on_cpu if out.device.type == "cpu" else elsewhere).append((view, name, std))
    _draw(on_cpu, seed)
    for view, name, std in elsewhere:
        dest = torch.empty(view.shape)
        _draw([(dest, name, std)], seed)
        view.copy_(dest)


def anchored_normal_(out: torch.Tensor, name: str, std: float, seed: int) -> torch.Tensor:
    """`anchored_fill_` for one tensor; returns `out`."""
    anchored_fill_([(out, name, std)], seed)
    return out


__all__ = ["TILE", "anchored_fill_", "anchored_normal_", "segments"]
