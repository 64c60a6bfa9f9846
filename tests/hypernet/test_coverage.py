"""What meta-training covered: shape rows interpolated between trained ones, models wider or deeper
than any trained grown from their covered twin, old checkpoints unchanged."""
import math
import pytest
import torch

from hypernet import LoGAH, LoGAHConfig, load_checkpoint, meta_train, save_checkpoint
from hypernet.anchor import anchored_normal_
from hypernet.decoder import GAIN_SCALE, init_std
from hypernet.encoder import NodeEmbedding
from hypernet.graph import Role
from hypernet.meta_training import MetaTrainConfig
from search_spaces import GPT2Config, ViTConfig, get_space

from _stats import rms


def _vit(depth=2, width=32, heads=4, mlp_ratio=2.0):
    return ViTConfig(image_size=8, channels=1, num_classes=10, patch_size=4, depth=depth, width=width, heads=heads,
                     mlp_ratio=mlp_ratio)


def _trained_like(hn: LoGAH) -> LoGAH:
    with torch.no_grad():
        hn.decoder.gain.copy_(torch.linspace(-0.8, 0.8, hn.decoder.gain.numel()) / GAIN_SCALE)
        hn.decoder.key_to_features.weight.normal_(std=0.05)
    return hn.eval()


def _covering(configs) -> LoGAH:
    torch.manual_seed(0)
    hn = _trained_like(LoGAH(LoGAHConfig(variant="tiny", hidden=32, layers=1, heads=4, rank=8)))
    hn.record_coverage(configs)
    return hn


def test_an_unused_shape_row_is_the_interpolation_of_its_trained_neighbours():
    torch.manual_seed(0)
    emb = NodeEmbedding(8, cutoff=4, max_degree=4).eval()
    emb.out_seen[[0, 10, 20]] = True
    table = emb.out_dim.weight
    got = emb._dim(emb.out_dim, emb.out_seen, torch.tensor([10, 14, 20, 5, 30, 0]))
    torch.testing.assert_close(got[0], table[10])  # a trained row is itself
    torch.testing.assert_close(got[1], 0.6 * table[10] + 0.4 * table[20])  # 4/10 of the way
    torch.testing.assert_close(got[2], table[20])
    torch.testing.assert_close(got[3], table[10])  # below the first trained row: clamped
    torch.testing.assert_close(got[4], table[20])  # beyond the last: clamped
    torch.testing.assert_close(got[5], table[0])  # "no dimension" is its own row


def test_recording_a_row_starts_it_from_its_interpolation():
    torch.manual_seed(0)
    emb = NodeEmbedding(8, cutoff=4, max_degree=4)
    emb.out_seen[[0, 10, 20]] = True
    expected = 0.5 * emb.out_dim.weight[10] + 0.5 * emb.out_dim.weight[20]
    emb.mark(torch.tensor([[0, 15, 0, 0]]))
    assert bool(emb.out_seen[15]) and bool(emb.in_seen[0])
    torch.testing.assert_close(emb.out_dim.weight[15], expected.detach())
    torch.testing.assert_close(emb._dim(emb.out_dim, emb.out_seen, torch.tensor([15]))[0], expected.detach())


def test_train_mode_forwards_record_nothing_outside_meta_training():
    """Only meta_train records coverage: predict_batch in train mode (tests, probes) leaves it alone."""
    hn = _covering([_vit(depth=1, width=32)]).train()
    before = {k: v.clone() for k, v in hn.state_dict().items() if k.endswith("_seen")}
    hn.predict_batch([_vit(depth=2, width=48)])
    assert all(torch.equal(hn.state_dict()[k], v) for k, v in before.items())


def test_a_hypernet_without_a_record_looks_rows_up_as_before():
    torch.manual_seed(0)
    emb = NodeEmbedding(8, cutoff=4, max_degree=4).eval()
    ids = torch.tensor([3, 17, 40])
    torch.testing.assert_close(emb._dim(emb.out_dim, emb.out_seen, ids), emb.out_dim(ids))  # nothing recorded
    emb.out_seen.fill_(True)  # an old checkpoint: every row counts as trained
    torch.testing.assert_close(emb._dim(emb.out_dim, emb.out_seen, ids), emb.out_dim(ids))


def test_meta_training_records_what_it_covered():
    space = get_space("vit", image_size=8, channels=1, num_classes=10, depth=(1, 2), width=(16, 32, 16),
                      heads=(2,), patch_sizes=(4,), mlp_ratios=(2.0,))
    torch.manual_seed(0)
    hn = LoGAH(LoGAHConfig(variant="tiny", hidden=16, layers=1, heads=2, rank=4))
    assert not hn.coverage_recorded()

    class Data:
        kind = "image"

        def batch(self, split, batch_size, generator, context=None):
            return torch.randn(batch_size, 1, 8, 8, generator=generator), torch.randint(0, 10, (batch_size,))

    meta_train(hn, space, Data(), MetaTrainConfig(steps=6, batch_size=4, device="cpu"), progress=False)
    assert hn.coverage_recorded()
    assert int(hn.width_seen) == 32 and int(hn.layers_seen) == 2 and int(hn.decoder.rows_seen) == 96  # q, k, v: 3 x 32


def _without_record(path):
    """Rewrite a checkpoint as written before coverage was recorded: no `*_seen` tensors."""
    import hashlib

    from safetensors.torch import load_file, save

    from hypernet.checkpoint import _split

    header, _ = _split(path.read_bytes(), path)
    metadata = dict(header["__metadata__"])
    tensors = {k: v for k, v in load_file(path).items() if not k.endswith("_seen")}
    _, payload = _split(save(tensors, metadata=metadata), path)
    metadata["sha256"] = hashlib.sha256(payload).hexdigest()
    path.write_bytes(save(tensors, metadata=metadata))


def test_an_old_checkpoint_predicts_exactly_as_before(tmp_path):
    hn = _covering([_vit(width=32)])
    hn.reset_coverage()
    hn.encoder.embed.out_seen.fill_(True)
    hn.encoder.embed.in_seen.fill_(True)  # what loading a file without the record must restore
    path = tmp_path / "old.safetensors"
    save_checkpoint(hn, path)
    _without_record(path)
    old, _ = load_checkpoint(path)
    assert not old.coverage_recorded() and old.covered_config(_vit(width=256)) is None
    wide = _vit(width=64)
    expected = hn.predict(wide)
    for name, value in old.predict(wide).items():
        torch.testing.assert_close(value, expected[name])


def test_the_record_survives_a_checkpoint_round_trip(tmp_path):
    hn = _covering([_vit(depth=2, width=32)])
    save_checkpoint(hn, tmp_path / "new.safetensors")
    back, _ = load_checkpoint(tmp_path / "new.safetensors")
    assert back.coverage_recorded() and int(back.width_seen) == 32 and int(back.layers_seen) == 2
    assert back.encoder.embed.out_seen.dtype == torch.bool
    assert torch.equal(back.encoder.embed.out_seen, hn.encoder.embed.out_seen)


def test_within_coverage_nothing_is_grown():
    hn = _covering([_vit(depth=2, width=32)])
    assert hn.covered_config(_vit(depth=1, width=24)) is None and hn.covered_config(_vit(depth=2, width=32)) is None


def test_a_wider_model_is_its_twin_grown_in_the_leading_blocks():
    hn = _covering([_vit(depth=2, width=32, heads=4)])
    wide = _vit(depth=2, width=64, heads=8)  # head dim 8: the twin keeps it with 4 heads
    twin = hn.covered_config(wide)
    assert (twin.width, twin.heads, twin.depth, twin.mlp_ratio) == (32, 4, 2, 2.0)
    big, small = hn.predict(wide), hn.predict(twin)
    for name, s in small.items():
        b = big[name]
        if ".attn.c_attn." in name:  # q, k, v parts each grown into their own part
            for k in range(3):
                part = b[k * 64: k * 64 + 32]
                torch.testing.assert_close(part[:, :32] if b.dim() > 1 else part, s[k * 32: (k + 1) * 32])
        elif name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):  # LayerNorm gains: rescaled
            torch.testing.assert_close(b[:32], s * _norm_factor(big, 32))
        else:
            torch.testing.assert_close(b[tuple(slice(0, n) for n in s.shape)], s)
    # outside the block: the standard init (anchored W0 for weights, 1 / 0 for LayerNorm and biases)
    w0 = anchored_normal_(torch.empty(128, 64), "blocks.0.mlp.c_fc.weight", init_std(Role.WEIGHT, 2), 0)
    torch.testing.assert_close(big["blocks.0.mlp.c_fc.weight"][64:], w0[64:])
    assert torch.all(big["blocks.0.ln_1.weight"][32:] == 1) and torch.all(big["blocks.0.mlp.c_fc.bias"][64:] == 0)


def _norm_factor(params, lead):
    """r_all / r_lead of the embedding tables (the ViT's positional table and class token)."""
    rows = torch.cat([params["pos_embed"].reshape(-1, params["pos_embed"].shape[-1]),
                      params["cls_token"].reshape(1, -1)])
    return float(rows.pow(2).mean().sqrt() / rows[:, :lead].pow(2).mean().sqrt())


def test_grown_layernorms_keep_the_twins_scale_on_the_leading_features():
    """A leading block larger than the rest would come out of every LayerNorm larger than in the
    twin; the gains undo it (and are left alone when block and rest have one scale)."""
    hn = _covering([_vit(depth=1, width=32)])
    with torch.no_grad():
        hn.decoder.gain[Role.ALL.index(Role.POS_EMBEDDING)] = 20.0 / GAIN_SCALE  # a large positional correction
    wide, twin = _vit(depth=1, width=128, heads=16), _vit(depth=1, width=32, heads=4)
    big, small = hn.predict(wide), hn.predict(twin)
    factor = _norm_factor(big, 32)
    assert factor < 0.7  # the block dominates: the gains shrink
    torch.testing.assert_close(big["blocks.0.ln_1.weight"][:32], small["blocks.0.ln_1.weight"] * factor)
    assert torch.all(big["blocks.0.ln_1.weight"][32:] == 1)
    with torch.no_grad():
        hn.decoder.gain.zero_()
    same = hn.predict(wide)
    # block and rest drawn alike: the gains stay at 1 up to the sampling noise of the tables' RMS
    assert torch.allclose(same["blocks.0.ln_1.weight"], torch.ones(128), atol=0.1)


def test_a_deeper_model_stacks_its_twins_blocks_with_scaled_residual_branches():
    hn = _covering([_vit(depth=2, width=32)])
    deep = _vit(depth=4, width=32)
    twin = hn.covered_config(deep)
    assert twin.depth == 2 and twin.width == 32
    big, small = hn.predict(deep), hn.predict(twin)
    for i in range(4):
        j = i * 2 // 4
        torch.testing.assert_close(big[f"blocks.{i}.attn.c_attn.weight"], small[f"blocks.{j}.attn.c_attn.weight"])
        torch.testing.assert_close(big[f"blocks.{i}.mlp.c_proj.weight"], 0.5 * small[f"blocks.{j}.mlp.c_proj.weight"])
        torch.testing.assert_close(big[f"blocks.{i}.attn.c_proj.bias"], 0.5 * small[f"blocks.{j}.attn.c_proj.bias"])
    torch.testing.assert_close(big["head.weight"], small["head.weight"])


def test_apply_and_strength_grow_the_same_way():
    hn = _covering([_vit(depth=2, width=32)])
    from search_spaces import build_model
    wide = _vit(depth=3, width=48, heads=4)
    model = hn.apply(build_model(wide), strength=0.5)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), hn.predict(wide, strength=0.5)[name])


@pytest.mark.slow
@pytest.mark.parametrize("space,data", [("vit", "digits"), ("gpt2", "pytext")])
def test_shipped_predictions_keep_every_role_in_a_good_inits_range_at_any_size(space, data):
    """From the smallest model to ViT-L / GPT-2-L sizes, every predicted tensor's RMS stays within the
    range common inits span, widened 4x either way: for weights from 1/4 of the smaller of GPT-2's
    N(0, 0.02) (c_proj: / sqrt(2L)) and PyTorch's default 1/sqrt(3 fan_in), to 4x the larger of 0.02
    and He's sqrt(2 / fan_in); embeddings between 0.005 and 4 (timm's 0.02 to PyTorch's N(0, 1),
    widened); LayerNorm gains in [0, 2]; biases and shifts in [-1, 1]. The learned hypernet sits well
    above the standard init at trained sizes (its positional corrections and output projections
    are large); what must not happen is a blow-up or collapse with size."""
    from hypernet import pretrained_path

    sizes = [(1, 32), (6, 128), (12, 384), (24, 1024)] if space == "vit" else [(1, 32), (6, 128), (12, 768),
                                                                                 (36, 1280)]
    hn = None
    for depth, width in sizes:
        config = (ViTConfig(image_size=8, channels=1, num_classes=10, patch_size=2, depth=depth, width=width,
                            heads=8 if width % 8 == 0 else 4)
                  if space == "vit" else GPT2Config(vocab_size=256, context=64, depth=depth, width=width,
                                                    heads=8 if width % 8 == 0 else 4))
        if hn is None:
            hn, _ = load_checkpoint(pretrained_path(get_space(space, **({"image_size": 8, "channels": 1,
                                                                          "num_classes": 10} if space == "vit"
                                                                         else {"vocab_size": 256,
                                                                               "context": 64})).signature()))
            hn.eval()
        graph = hn.graph(config)
        roles = {n: (r, s) for ns, ss, rs in zip(graph.param_names, graph.param_shapes, graph.param_roles)
                 for n, s, r in zip(ns, ss, rs)}
        for name, value in hn.predict(config).items():
            role, shape = roles[name]
            size = rms(value)
            if role in (Role.WEIGHT, Role.HEAD, Role.RESIDUAL_WEIGHT):
                fan_in = shape[-1]
                res = 1 / math.sqrt(2 * depth) if role == Role.RESIDUAL_WEIGHT else 1.0
                lo = 0.25 * min(0.02 * res, 1 / math.sqrt(3 * fan_in))
                hi = 4 * max(0.02, math.sqrt(2 / fan_in))
                assert lo <= size <= hi, (config, name, size, lo, hi)
            elif role in (Role.EMBEDDING, Role.POS_EMBEDDING, Role.CLS_TOKEN):
                assert 0.005 <= size <= 4.0, (config, name, size)
            elif role == Role.LN_WEIGHT:
                assert 0 <= float(value.min()) and float(value.max()) <= 2, (config, name)  # 2 sigmoid(v)
            else:
                assert float(value.abs().max()) <= 1.0, (config, name)  # tanh(0.2 g v)
        del graph
