"""The baselines' initialisations do what their papers say, on our parameter layout."""
from __future__ import annotations

import math

import torch

from search_spaces import GPT2Config, ViTConfig, build_model
from search_spaces.inits import MIMETIC_QK, MIMETIC_VO, inherit_weights, mimetic_init, pytorch_default_init


def test_mimetic_attention_is_identity_like_for_qk_and_minus_identity_for_vo():
    model = build_model(ViTConfig(depth=2, width=64, heads=4, patch_size=2)).requires_grad_(False)
    before = {k: v.clone() for k, v in model.named_parameters()}
    assert mimetic_init(model, torch.Generator().manual_seed(0)) == 2
    c, d = 64, 16
    for block in model.blocks:
        w = block.attn.c_attn.weight
        for h in range(4):
            qk = w[h * d:(h + 1) * d].T @ w[c + h * d:c + (h + 1) * d]  # [C, C], rank d
            assert qk.diagonal().mean() > 0.15 and qk.diagonal().mean() > 3 * (qk - torch.diag(qk.diagonal())).abs().mean()
        vo = w[2 * c:].T @ block.attn.c_proj.weight.T  # full rank: alpha2 Z - beta2 I
        assert abs(float(vo.diagonal().mean()) + MIMETIC_VO[1]) < 0.1
    unchanged = [k for k in before if "c_attn.weight" not in k and "attn.c_proj.weight" not in k]
    assert all(torch.equal(before[k], dict(model.named_parameters())[k]) for k in unchanged)
    assert MIMETIC_QK == (0.7, 0.7)


def test_pytorch_default_init_matches_the_constructors_bounds():
    model = build_model(GPT2Config(depth=2, width=32, heads=2, tied_embeddings=False))
    counts = pytorch_default_init(model, torch.Generator().manual_seed(0))
    assert counts["linear"] == 9 and counts["layernorm"] == 5
    fc = model.blocks[0].mlp.c_fc.weight
    bound = 1 / math.sqrt(32)
    assert fc.abs().max() <= bound and fc.std() > 0.5 * bound / math.sqrt(3)  # uniform(-b, b), std b/sqrt(3)
    assert abs(model.wpe.weight.detach().std().item() - 1.0) < 0.1  # nn.Embedding: N(0, 1)


def test_inherit_copies_the_leading_block_and_crops_q_k_v_separately():
    source = dict(build_model(ViTConfig(depth=1, width=32, heads=2, patch_size=2)).named_parameters())
    model = build_model(ViTConfig(depth=2, width=64, heads=4, patch_size=2))
    init = {k: v.clone() for k, v in model.named_parameters()}
    counts = inherit_weights(model, source)
    p = dict(model.named_parameters())
    qkv = p["blocks.0.attn.c_attn.weight"]
    for i in range(3):  # each of q, k, v takes its own source segment
        assert torch.equal(qkv[i * 64:i * 64 + 32, :32], source["blocks.0.attn.c_attn.weight"][i * 32:(i + 1) * 32])
        assert torch.equal(qkv[i * 64 + 32:(i + 1) * 64], init["blocks.0.attn.c_attn.weight"][i * 64 + 32:(i + 1) * 64])
    assert torch.equal(p["blocks.1.mlp.c_fc.weight"], init["blocks.1.mlp.c_fc.weight"])  # no source block 1
    assert counts["kept"] >= 8 and counts["partial"] > 0
    same = build_model(ViTConfig(depth=1, width=32, heads=2, patch_size=2), seed=5)
    assert inherit_weights(same, source)["whole"] == len(source)
    assert all(torch.equal(v, source[k]) for k, v in same.named_parameters())
