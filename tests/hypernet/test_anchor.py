"""Anchored init: one W0 shared by all architectures (nested across widths and depths)."""
import math

import pytest
import torch

from hypernet import LoGAH, LoGAHConfig
from hypernet.anchor import TILE, anchored_fill_, anchored_normal_
from search_spaces import ConfigError, GPT2Config, ViTConfig, build_model


@pytest.fixture(scope="module")
def hn():
    return LoGAH(LoGAHConfig(variant="tiny"))


def test_narrow_model_is_the_leading_block_of_a_wide_one(hn):
    narrow = hn.base_init(ViTConfig(depth=2, width=64, heads=4, mlp_ratio=2.0))
    wide = hn.base_init(ViTConfig(depth=4, width=TILE + 48, heads=4, mlp_ratio=4.0))  # crosses a block edge
    for name, w in narrow.items():
        big = wide[name]
        if name.endswith("c_proj.weight"):  # std 0.02 / sqrt(2 depth): checked below
            continue
        if name.endswith("c_attn.weight"):  # q, k and v rows are nested separately
            w, big = w.view(3, -1, w.shape[-1]), big.view(3, -1, big.shape[-1])
        torch.testing.assert_close(w, big[tuple(slice(0, n) for n in w.shape)], rtol=0, atol=0, msg=name)
    ratio = narrow["blocks.1.mlp.c_proj.weight"] / wide["blocks.1.mlp.c_proj.weight"][:64, :128]
    torch.testing.assert_close(ratio, torch.full_like(ratio, math.sqrt(4 / 2)))  # same draw, depth scale


def test_same_features_in_gpt2_embeddings(hn):
    a = hn.base_init(GPT2Config(depth=1, width=64, heads=2))
    b = hn.base_init(GPT2Config(depth=3, width=96, heads=4, tied_embeddings=False))
    assert torch.equal(a["wte.weight"], b["wte.weight"][:, :64]) and torch.equal(a["wpe.weight"], b["wpe.weight"][:, :64])


def test_distribution_and_seed():
    w = anchored_normal_(torch.empty(300, 700), "blocks.0.mlp.c_fc.weight", 0.02, seed=0)
    assert abs(w.mean().item()) < 1e-3 and abs(w.std().item() - 0.02) < 5e-4
    again = anchored_normal_(torch.empty(300, 700), "blocks.0.mlp.c_fc.weight", 0.02, seed=0)
    other_seed = anchored_normal_(torch.empty(300, 700), "blocks.0.mlp.c_fc.weight", 0.02, seed=1)
    other_name = anchored_normal_(torch.empty(300, 700), "blocks.1.mlp.c_fc.weight", 0.02, seed=0)
    assert torch.equal(w, again) and not torch.equal(w, other_seed) and not torch.equal(w, other_name)
    blocks = w[:TILE, :TILE].flatten(), w[:TILE, TILE: 2 * TILE].flatten()
    assert abs(torch.corrcoef(torch.stack(blocks))[0, 1].item()) < 0.05  # blocks are independent draws


def test_threads_do_not_change_values():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = anchored_normal_(torch.empty(1100, 1000), "wte.weight", 0.02, seed=3)
        torch.set_num_threads(2)
        two = anchored_normal_(torch.empty(1100, 1000), "wte.weight", 0.02, seed=3)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)


def test_prediction_is_a_function_of_the_architecture(hn):
    config = ViTConfig(depth=2, width=64, heads=4)
    a, b = build_model(config, seed=1), build_model(config, seed=2)
    hn.apply(a), hn.apply(b)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    predicted = hn.predict(config, seed=5)
    assert all(torch.equal(predicted[k], p) for k, p in a.named_parameters())


def test_config_field():
    assert LoGAHConfig().anchored and not LoGAHConfig(anchor_seed=None).anchored
    assert not LoGAHConfig(residual=False).anchored
    assert LoGAHConfig.from_dict({"variant": "tiny", "residual": True}).anchor_seed is None  # older checkpoints
    with pytest.raises(ConfigError, match="anchor_seed"):
        LoGAHConfig(anchor_seed=-1)


def _reference(shape, name, std, seed):
    """The definition, one block at a time: what the batched strip copies must reproduce exactly."""
    from hypernet.anchor import _block_seed, segments

    n_in = shape[-1]
    n_out = math.prod(shape[:-1])
    parts = segments(name) if n_out % segments(name) == 0 else 1
    rows = n_out // parts
    out = torch.empty(n_out, n_in)
    for part in range(parts):
        for i in range(math.ceil(rows / TILE)):
            for j in range(math.ceil(n_in / TILE)):
                block = torch.empty(TILE, TILE).normal_(
                    0.0, std, generator=torch.Generator().manual_seed(_block_seed(seed, name, part, i, j)))
                r0, c0 = part * rows + i * TILE, j * TILE
                h, w = min(TILE, rows - i * TILE), min(TILE, n_in - c0)
                out[r0: r0 + h, c0: c0 + w] = block[:h, :w]
    return out.view(shape)


@pytest.mark.parametrize("shape, name", [((17, 64), "pos_embed"), ((300, 700), "blocks.0.mlp.c_fc.weight"),
                                         ((3 * 200, 200), "blocks.2.attn.c_attn.weight"), ((1, 1, 112), "cls_token"),
                                         ((1100, 1000), "wte.weight"), ((5, 4), "patch_embed.weight")], ids=str)
def test_matches_the_block_by_block_definition(shape, name):
    torch.testing.assert_close(anchored_normal_(torch.empty(shape), name, 0.03, seed=11),
                               _reference(shape, name, 0.03, 11), rtol=0, atol=0)


def test_many_targets_in_one_pass_equal_one_at_a_time():
    targets = [((300, 700), "blocks.0.mlp.c_fc.weight", 0.02), ((3 * 200, 200), "blocks.2.attn.c_attn.weight", 0.01),
               ((1, 1, 112), "cls_token", 0.02), ((1100, 1000), "wte.weight", 0.03)]
    outs = [torch.empty(shape) for shape, _, _ in targets]
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # big enough for the threaded path
        anchored_fill_([(out, name, std) for out, (_, name, std) in zip(outs, targets)], seed=4)
    finally:
        torch.set_num_threads(before)
    for out, (shape, name, std) in zip(outs, targets):
        torch.testing.assert_close(out, _reference(shape, name, std, 4), rtol=0, atol=0, msg=name)
    with pytest.raises(ValueError, match="contiguous"):
        anchored_fill_([(torch.empty(8, 8).t(), "wte.weight", 0.02)], seed=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_targets_get_the_cpu_values():
    shape, name = (300, 700), "blocks.0.mlp.c_fc.weight"
    on_gpu, on_cpu = torch.empty(shape, device="cuda"), torch.empty(shape)
    anchored_fill_([(on_gpu, name, 0.02), (on_cpu, name, 0.02)], seed=2)
    assert torch.equal(on_gpu.cpu(), on_cpu)
