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
block (GPT-2-L: ~47k blocks of 16k numbers), block rows of big tensors spread over torch's
intra-op threads.
"""
from __future__ import annotations

import hashlib
import math
from concurrent.futures import ThreadPoolExecutor

import torch

TILE = 128


def segments(name: str) -> int:
    """Equal row blocks of a parameter that keep their meaning when the width changes."""
    return 3 if name.endswith("attn.c_attn.weight") else 1


def _block_seed(seed: int, name: str, part: int, i: int, j: int) -> int:
    digest = hashlib.blake2b(f"{seed}|{name}|{part}|{i}|{j}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1  # a non-negative int64


@torch.no_grad()
def anchored_normal_(out: torch.Tensor, name: str, std: float, seed: int) -> torch.Tensor:
    """Fill `out` (any device, contiguous, >= 1-D) with the anchored N(0, std^2) init of `name`."""
    if not out.is_contiguous():
        raise ValueError(f"anchored_normal_ needs a contiguous tensor for {name!r}")
    n_in = out.shape[-1] if out.dim() else 1
    n_out = out.numel() // max(1, n_in)
    parts = segments(name)
    if n_out % parts:
        parts = 1
    rows = n_out // parts
    on_cpu = out.device.type == "cpu"
    dest = out.view(n_out, n_in) if on_cpu else torch.empty(n_out, n_in)
    strips = [(part, i) for part in range(parts) for i in range(math.ceil(rows / TILE))]

    n_blocks, full = math.ceil(n_in / TILE), n_in // TILE

    def fill(todo: list[tuple[int, int]]) -> None:
        gen, strip = torch.Generator(), torch.empty(n_blocks, TILE, TILE)  # one block row, drawn block by block
        for part, i in todo:
            r0, h = part * rows + i * TILE, min(TILE, rows - i * TILE)
            for j in range(n_blocks):
                gen.manual_seed(_block_seed(seed, name, part, i, j))
                strip[j].normal_(0.0, std, generator=gen)
            band = dest[r0: r0 + h]  # [h, n_in]
            if full:  # all full-width blocks of the row in one strided copy
                band[:, : full * TILE].view(h, full, TILE).copy_(strip[:full, :h].transpose(0, 1))
            if full < n_blocks:
                band[:, full * TILE:].copy_(strip[full, :h, : n_in - full * TILE])

    workers = min(torch.get_num_threads(), len(strips))
    if workers > 1 and n_out * n_in >= 1 << 20:  # big tensors: strips in parallel (the ops release the GIL)
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(fill, [strips[k::workers] for k in range(workers)]))
    else:
        fill(strips)
    if not on_cpu:
        out.view(n_out, n_in).copy_(dest)
    return out


__all__ = ["TILE", "anchored_normal_", "segments"]
