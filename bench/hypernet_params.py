"""Parameter count of every LoGAH variant, split into graph encoder (GNN) and parameter decoder.

    python bench/hypernet_params.py

Reference (the paper / released code, LOGAH_NOTES §2): 2.54M / 21.41M / 78.23M / 289.42M for
tiny / small / base / large, of which the decoder is 2.28M (tiny) and 20.19M (small). The released
decoder spends r * 32768 parameters on its basis layer (K = 16 * 2048); ours has a K = 5120 basis
(GPT-2-L's widest dimension) plus per-chunk codes for larger ones and no dead `l1` layer, so it is
smaller while predicting every dimension <= 5120 without tiling. The baseline measured here is
the same hypernet with the released decoder's parameter formula, computed for our d and r.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, table  # noqa: E402

PAPER = {"tiny": 2_540_380, "small": 21_410_000, "base": 78_230_000, "large": 289_420_000}
PAPER_DECODER = {"tiny": 2_280_000, "small": 20_190_000}
RELEASED_K = 16 * 2048


def released_decoder_params(d: int, r: int, k: int = RELEASED_K) -> int:
    """ConvDecoder3LoRA (LOGAH_NOTES §3): MLP d->4d->8d->2r^2, Linear r->K, dead Linear r->r, biases."""
    mlp = (d * 4 * d + 4 * d) + (4 * d * 8 * d + 8 * d) + (8 * d * 2 * r * r + 2 * r * r)
    return mlp + (r * k + k) + (r * r + r)


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def main() -> None:
    from hypernet import LoGAH, LoGAHConfig
    from hypernet.model import VARIANTS

    rows = []
    for variant in VARIANTS:
        cfg = LoGAHConfig(variant=variant)
        hn = LoGAH(cfg)
        total, gnn, dec = count(hn), count(hn.encoder), count(hn.decoder)
        assert gnn + dec == total, "parameters outside encoder and decoder"
        released_dec = released_decoder_params(cfg.d, cfg.r)
        rows.append({
            "variant": variant, "d": cfg.d, "layers": cfg.n_layers, "heads": cfg.n_heads, "rank": cfg.r,
            "total": total, "gnn": gnn, "decoder": dec, "decoder_share": dec / total,
            "released_decoder_same_d_r": released_dec, "paper_total": PAPER[variant],
            "paper_decoder": PAPER_DECODER.get(variant), "ratio_to_paper": total / PAPER[variant],
        })
        del hn
    human = table(rows, [("variant", "variant"), ("d", "d"), ("layers", "L"), ("heads", "H"), ("rank", "r"),
                         ("total", "params"), ("gnn", "GNN"), ("decoder", "decoder"),
                         ("decoder_share", "dec share"), ("released_decoder_same_d_r", "released dec (same d,r)"),
                         ("paper_total", "paper params"), ("paper_decoder", "paper dec"),
                         ("ratio_to_paper", "ours/paper")])
    emit("hypernet_params", {"rows": rows}, human)


if __name__ == "__main__":
    main()
