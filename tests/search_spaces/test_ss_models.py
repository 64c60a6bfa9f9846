"""Model construction: reference parameter counts, shapes, tied embeddings, parameter names."""
import dataclasses

import pytest
import torch

from search_spaces import (GPT2, GPT2_L, GPT2_M, GPT2_S, VIT_B, VIT_L, VIT_S, GPT2Config, ViT, ViTConfig,
                           build_model)


def _meta_params(config) -> int:
    with torch.device("meta"):  # shapes only: GPT-2 L would need 3 GB otherwise
        return build_model(config).num_params()


@pytest.mark.parametrize("config, expected", [
    (GPT2_S, 124_439_808), (GPT2_M, 354_823_168), (GPT2_L, 774_030_080),  # Hugging Face gpt2, gpt2-medium, -large
    (VIT_S, 22_050_664), (VIT_B, 86_567_656), (VIT_L, 304_326_632),  # timm/torchvision vit_{s,b,l}_16 at 224 px
])
def test_reference_parameter_counts(config, expected):
    assert _meta_params(config) == expected


def test_untied_gpt2_adds_one_output_matrix():
    untied = dataclasses.replace(GPT2_S, tied_embeddings=False)
    assert _meta_params(untied) - _meta_params(GPT2_S) == 50257 * 768


def test_tied_lm_head_is_wte_and_named_once():
    tied = GPT2(GPT2Config(depth=1, width=16, heads=2, context=8))
    assert tied.lm_head.weight is tied.wte.weight
    names = [n for n, _ in tied.named_parameters()]
    assert "wte.weight" in names and "lm_head.weight" not in names
    untied = GPT2(GPT2Config(depth=1, width=16, heads=2, context=8, tied_embeddings=False))
    assert untied.lm_head.weight is not untied.wte.weight
    assert "lm_head.weight" in dict(untied.named_parameters())


def test_parameter_names_follow_the_contract():
    vit = dict(ViT(ViTConfig(depth=2, width=16, heads=2)).named_parameters())
    for key in ["patch_embed.weight", "patch_embed.bias", "cls_token", "pos_embed", "blocks.1.ln_1.weight",
                "blocks.1.attn.c_attn.weight", "blocks.1.attn.c_proj.bias", "blocks.1.ln_2.bias",
                "blocks.1.mlp.c_fc.weight", "blocks.1.mlp.c_proj.weight", "ln_f.weight", "head.weight", "head.bias"]:
        assert key in vit, key
    assert vit["cls_token"].shape == (1, 1, 16)
    assert vit["pos_embed"].shape == (1, 17, 16)  # 16 patches of 2x2 in 8x8, plus the class token
    assert vit["blocks.0.attn.c_attn.weight"].shape == (48, 16)
    gpt = dict(GPT2(GPT2Config(depth=1, width=16, heads=2, context=8, vocab_size=11)).named_parameters())
    assert gpt["wte.weight"].shape == (11, 16) and gpt["wpe.weight"].shape == (8, 16)


def test_vit_without_class_token_and_with_fixed_pos_embedding():
    c = ViTConfig(depth=1, width=16, heads=2, class_token=False, learned_pos_embedding=False)
    model = ViT(c)
    names = dict(model.named_parameters())
    assert "cls_token" not in names and "pos_embed" not in names
    logits, _ = model(torch.randn(3, 1, 8, 8))
    assert logits.shape == (3, 10)


def test_forward_shapes_and_loss():
    torch.manual_seed(0)
    vit = ViT(ViTConfig(image_size=8, channels=3, patch_size=4, depth=2, width=32, heads=4, num_classes=7))
    logits, loss = vit(torch.randn(5, 3, 8, 8), torch.randint(7, (5,)))
    assert logits.shape == (5, 7) and loss.shape == () and torch.isfinite(loss)
    assert vit(torch.randn(5, 3, 8, 8))[1] is None
    gpt = GPT2(GPT2Config(vocab_size=50, context=16, depth=2, width=32, heads=4))
    tokens = torch.randint(50, (2, 12))
    logits, loss = gpt(tokens, tokens)
    assert logits.shape == (2, 12, 50)
    assert abs(loss.item() - torch.log(torch.tensor(50.0)).item()) < 0.5  # near-uniform at init


def test_gpt2_is_causal():
    torch.manual_seed(0)
    gpt = GPT2(GPT2Config(vocab_size=20, context=8, depth=2, width=16, heads=2)).eval()
    a = torch.randint(20, (1, 8))
    b = a.clone()
    b[0, 5:] = (b[0, 5:] + 1) % 20
    la, lb = gpt(a)[0], gpt(b)[0]
    assert torch.allclose(la[0, :5], lb[0, :5], atol=1e-6)
    assert not torch.allclose(la[0, 5:], lb[0, 5:])


def test_wrong_inputs_are_explained():
    vit = ViT(ViTConfig(depth=1, width=16, heads=2))
    with pytest.raises(ValueError, match="shape"):
        vit(torch.randn(2, 3, 8, 8))
    gpt = GPT2(GPT2Config(depth=1, width=16, heads=2, context=4))
    with pytest.raises(ValueError, match="context=4"):
        gpt(torch.zeros(1, 5, dtype=torch.long))


def test_seeded_build_is_reproducible_and_leaves_the_global_rng_alone():
    import torch

    from search_spaces import GPT2Config, build_model

    config = GPT2Config(vocab_size=32, context=8, depth=1, width=16, heads=2)
    state = torch.get_rng_state()
    a, b = build_model(config, seed=7), build_model(config, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(build_model(config, seed=8).wte.weight, a.wte.weight)
