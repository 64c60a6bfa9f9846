"""LoGAH: config, variant sizes, predict / apply / predict_batch, functional_forward."""
import time

import pytest
import torch

from hypernet import VARIANTS, LoGAH, LoGAHConfig, functional_forward
from search_spaces import GPT2_S, ConfigError, GPT2Config, GPT2Space, ViTConfig, ViTSpace, build_model


@pytest.fixture(scope="module")
def hn():
    torch.manual_seed(0)
    return LoGAH(LoGAHConfig(variant="tiny"))


def _inputs(config, b=2):
    g = torch.Generator().manual_seed(0)
    if isinstance(config, ViTConfig):
        x = torch.randn(b, config.channels, config.image_size, config.image_size, generator=g)
        return x, torch.randint(0, config.num_classes, (b,), generator=g)
    x = torch.randint(0, config.vocab_size, (b, 12), generator=g)
    return x, torch.randint(0, config.vocab_size, (b, 12), generator=g)


def test_tiny_size_and_variants():
    assert LoGAH().config == LoGAHConfig(variant="tiny")
    n = LoGAH(LoGAHConfig(variant="tiny")).num_params()
    assert 1_000_000 < n <= 2_600_000
    counts = {}
    for v in VARIANTS:
        with torch.device("meta"):  # counts without allocating LoGAH-Large
            counts[v] = LoGAH(LoGAHConfig(variant=v)).num_params()
    assert counts["tiny"] < counts["small"] < counts["base"] < counts["large"]
    c = LoGAHConfig(variant="small", rank=16)
    assert (c.d, c.n_layers, c.n_heads, c.r) == (128, 5, 16, 16)


@pytest.mark.parametrize("kwargs, field", [
    (dict(variant="huge"), "variant"), (dict(rank=0), "rank"), (dict(hidden=60, heads=8), "heads"),
    (dict(max_dim=0), "max_dim"), (dict(max_total_dim=10), "max_total_dim"),
    (dict(space_signature=3), "space_signature"),
])
def test_bad_config_names_field(kwargs, field):
    with pytest.raises(ConfigError) as err:
        LoGAHConfig(**kwargs)
    assert err.value.field == field


def test_config_round_trip():
    c = LoGAHConfig(variant="base", rank=7, space_signature={"space": "vit", "image_size": 8})
    assert LoGAHConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ConfigError):
        LoGAHConfig.from_dict({"variant": "tiny", "bogus": 1})


@pytest.mark.parametrize("config", [
    ViTConfig(depth=2), ViTConfig(depth=1, class_token=False, learned_pos_embedding=False),
    GPT2Config(depth=2, tied_embeddings=True), GPT2Config(depth=2, tied_embeddings=False),
], ids=str)
def test_predict_keys_shapes_and_apply(hn, config):
    model = build_model(config)
    ref = dict(model.named_parameters())
    params = hn.predict(config)
    assert list(params) == list(ref)
    assert all(params[k].shape == ref[k].shape and not params[k].requires_grad for k in ref)
    assert all(torch.isfinite(v).all() for v in params.values())
    hn.apply(model)
    for k, p in model.named_parameters():
        torch.testing.assert_close(p.data, params[k])
    if config.space == "gpt2" and config.tied_embeddings:
        assert model.lm_head.weight is model.wte.weight
    x, y = _inputs(config)
    _, loss = model(x, y)
    assert torch.isfinite(loss) and loss.item() < 3 * torch.log(torch.tensor(float(
        config.num_classes if config.space == "vit" else config.vocab_size))).item()


def test_apply_on_non_fp32_model_copies(hn):
    config = ViTConfig(depth=1)
    model = build_model(config).double()
    hn.apply(model)
    torch.testing.assert_close(model.head.weight.float(), hn.predict(config)["head.weight"])


def test_predict_batch_matches_predict_and_has_grad(hn):
    configs = [GPT2Config(depth=3), GPT2Config(depth=1, tied_embeddings=False), GPT2Config(depth=2, width=64)]
    batch = hn.predict_batch(configs)
    for c, params in zip(configs, batch):
        alone = hn.predict(c)
        assert list(params) == list(alone)
        for k in alone:
            assert params[k].requires_grad
            torch.testing.assert_close(params[k].detach(), alone[k], atol=1e-5, rtol=1e-4)


def test_functional_forward_trains_the_hypernet(hn):
    torch.manual_seed(0)
    local = LoGAH(LoGAHConfig(variant="tiny", hidden=32, heads=4, rank=8))
    configs = [GPT2Config(depth=1, width=32, heads=2, tied_embeddings=True), ViTConfig(depth=1, width=32)]
    models = [build_model(c) for c in configs]
    before = [p.detach().clone() for p in models[0].parameters()]
    opt = torch.optim.Adam(local.parameters(), lr=1e-3)
    losses = []
    for _ in range(3):
        total = 0
        for m, params in zip(models, local.predict_batch(configs)):
            _, loss = functional_forward(m, params, *_inputs(m.config))
            total = total + loss
        opt.zero_grad()
        total.backward()
        assert local.decoder.basis.grad.abs().sum() > 0
        assert local.encoder.embed.op.weight.grad.abs().sum() > 0
        opt.step()
        losses.append(total.item())
    assert losses[-1] < losses[0]
    assert all(torch.equal(a, b) for a, b in zip(before, models[0].parameters()))  # target untouched


def test_tied_functional_forward_uses_wte_for_lm_head(hn):
    config = GPT2Config(depth=1, width=32, heads=2, tied_embeddings=True)
    model = build_model(config)
    (params,) = hn.predict_batch([config])
    x, _ = _inputs(config)
    logits, _ = functional_forward(model, params, x)
    hn.apply(model)
    torch.testing.assert_close(logits, model(x)[0], atol=1e-5, rtol=1e-4)


def test_space_signature_is_enforced():
    space = ViTSpace()
    hn = LoGAH(LoGAHConfig(space_signature=space.signature()))
    hn.predict(space.sample(__import__("random").Random(0)))
    with pytest.raises(ConfigError) as err:
        hn.predict(ViTConfig(num_classes=3))
    assert err.value.field == "num_classes"
    with pytest.raises(ConfigError) as err:
        hn.predict(GPT2Space().sample(__import__("random").Random(0)))
    assert err.value.field == "space"


def test_predict_gpt2_small_is_streamed_and_fast(hn):
    t = time.perf_counter()
    params = hn.predict(GPT2_S)
    seconds = time.perf_counter() - t
    assert sum(v.numel() for v in params.values()) == 124_439_808
    wte = params["wte.weight"]
    assert wte.shape == (50257, 768)
    assert not torch.allclose(wte[:5120], wte[5120:10240], atol=1e-4)
    assert seconds < 30  # generous: about 1.3 s on one CPU thread; the bench measures it properly


def test_predict_batch_under_autocast_decodes_in_fp32(hn):
    configs = [GPT2Config(depth=1), ViTConfig(depth=2)]
    ref = hn.predict_batch(configs)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = hn.predict_batch(configs)
    for a, b in zip(ref, out):
        for k in a:
            assert b[k].dtype == torch.float32
            assert (a[k] - b[k]).abs().max() <= 0.02 * a[k].abs().max()


def test_streamed_and_batched_paths_agree_beyond_k():
    """A vocabulary larger than K goes through the chunk codes in both decode paths."""
    torch.manual_seed(0)
    local = LoGAH(LoGAHConfig(variant="tiny", hidden=32, heads=4, rank=8, max_dim=256))
    config = GPT2Config(vocab_size=1000, context=16, depth=1, width=32, heads=2, tied_embeddings=False)
    streamed = local.predict(config)
    (batched,) = local.predict_batch([config])
    for k in streamed:
        torch.testing.assert_close(batched[k].detach(), streamed[k], atol=1e-5, rtol=1e-4)
    wte = streamed["wte.weight"]
    for c in (1, 2, 3):
        assert not torch.allclose(wte[c * 256: c * 256 + 232], wte[:232], atol=1e-4)  # not 256-periodic


def test_import_is_light():
    """`import hypernet` must not pull in torch_geometric (~7 s); graphs import it on demand."""
    import subprocess
    import sys

    code = "import sys, hypernet; print('torch_geometric' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
