"""LoGAH: config, variant sizes, predict / apply / predict_batch, functional_forward, residual prediction."""
import math
import time

import pytest
import torch

from hypernet import VARIANTS, LoGAH, LoGAHConfig, functional_forward
from hypernet.decoder import GAIN_SCALE
from search_spaces import GPT2_S, ConfigError, GPT2Config, GPT2Space, ViTConfig, ViTSpace, build_model

from _stats import rms


def _trained_like(hn: LoGAH) -> LoGAH:
    """Non-zero gains and per-key offsets, as after meta-training (a fresh one predicts the init)."""
    with torch.no_grad():
        hn.decoder.gain.copy_(torch.linspace(-0.8, 0.8, hn.decoder.gain.numel()) / GAIN_SCALE)
        hn.decoder.key_to_features.weight.normal_(std=0.05)
    return hn


@pytest.fixture(scope="module", params=["anchored", "fresh"])
def hn(request):
    torch.manual_seed(0)
    anchor = 0 if request.param == "anchored" else None
    return _trained_like(LoGAH(LoGAHConfig(variant="tiny", anchor_seed=anchor)))


def _init_of(model):
    return {k: p.detach().clone() for k, p in model.named_parameters()}


def _w0_of(hn, model):
    """The W0 `apply` adds the correction to: the anchored init, or the model's own values."""
    return None if hn.config.anchored else _init_of(model)


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
    assert LoGAH(LoGAHConfig(variant="tiny", residual=False)).num_params() < n  # no gains, no key offsets
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
    (dict(space_signature=3), "space_signature"), (dict(residual=1), "residual"),
    (dict(correction_cap=0), "correction_cap"), (dict(correction_cap=-1.0), "correction_cap"),
    (dict(correction_cap=True), "correction_cap"), (dict(correction_cap="2"), "correction_cap"),
    (dict(correction_cap=2.0, residual=False), "correction_cap"),
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
    assert LoGAHConfig.from_dict({"variant": "tiny"}).residual is False  # stored before the field existed
    assert LoGAHConfig().residual is True
    capped = LoGAHConfig(correction_cap=2.5)
    assert LoGAHConfig.from_dict(capped.to_dict()) == capped and LoGAHConfig().correction_cap is None


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
    init = _w0_of(hn, model)
    hn.apply(model)  # W0 = the anchored init / the model's own init
    (expected,) = hn.predict_batch([config], inits=[init])
    for k, p in model.named_parameters():
        torch.testing.assert_close(p.data, expected[k].detach(), atol=1e-6, rtol=1e-5)
    if config.space == "gpt2" and config.tied_embeddings:
        assert model.lm_head.weight is model.wte.weight
    x, y = _inputs(config)
    _, loss = model(x, y)
    assert torch.isfinite(loss) and loss.item() < 3 * torch.log(torch.tensor(float(
        config.num_classes if config.space == "vit" else config.vocab_size))).item()


def test_apply_on_non_fp32_model_copies(hn):
    config = ViTConfig(depth=1)
    model = build_model(config).double()
    init = None if hn.config.anchored else {k: v.float() for k, v in _init_of(model).items()}
    hn.apply(model)
    (expected,) = hn.predict_batch([config], inits=[init])
    torch.testing.assert_close(model.head.weight.float(), expected["head.weight"].detach())


@pytest.mark.parametrize("strength", [1.0, 0.5])
def test_predict_batch_matches_predict_and_has_grad(hn, strength):
    """Also at a warm strength < 1: a refit scores what warm trials start from."""
    configs = [GPT2Config(depth=3), GPT2Config(depth=1, tied_embeddings=False), GPT2Config(depth=2, width=64)]
    batch = hn.predict_batch(configs, inits=[hn.base_init(c, torch.Generator().manual_seed(i))
                                             for i, c in enumerate(configs)], strength=strength)
    for i, (c, params) in enumerate(zip(configs, batch)):
        alone = hn.predict(c, seed=i, strength=strength)
        assert list(params) == list(alone)
        for k in alone:
            assert params[k].requires_grad
            torch.testing.assert_close(params[k].detach(), alone[k], atol=1e-5, rtol=1e-4)


def test_functional_forward_trains_the_hypernet(hn):
    torch.manual_seed(0)
    local = _trained_like(LoGAH(LoGAHConfig(variant="tiny", hidden=32, heads=4, rank=8)))
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
        assert local.decoder.gain.grad.abs().sum() > 0
        opt.step()
        losses.append(total.item())
    assert losses[-1] < losses[0]
    assert all(torch.equal(a, b) for a, b in zip(before, models[0].parameters()))  # target untouched


def test_tied_functional_forward_uses_wte_for_lm_head(hn):
    config = GPT2Config(depth=1, width=32, heads=2, tied_embeddings=True)
    model = build_model(config)
    (params,) = hn.predict_batch([config], inits=[_w0_of(hn, model)])
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
    inits = [hn.base_init(c, torch.Generator().manual_seed(0)) for c in configs]
    ref = hn.predict_batch(configs, inits=inits)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = hn.predict_batch(configs, inits=inits)
    for a, b in zip(ref, out):
        for k in a:
            assert b[k].dtype == torch.float32
            assert (a[k] - b[k]).abs().max() <= 0.02 * a[k].abs().max()


def test_streamed_and_batched_paths_agree_beyond_k():
    """A vocabulary larger than K goes through the chunk codes in both decode paths."""
    torch.manual_seed(0)
    local = _trained_like(LoGAH(LoGAHConfig(variant="tiny", hidden=32, heads=4, rank=8, max_dim=256)))
    config = GPT2Config(vocab_size=1000, context=16, depth=1, width=32, heads=2, tied_embeddings=False)
    streamed = local.predict(config, seed=3)
    (batched,) = local.predict_batch([config], inits=[local.base_init(config, torch.Generator().manual_seed(3))])
    for k in streamed:
        torch.testing.assert_close(batched[k].detach(), streamed[k], atol=1e-5, rtol=1e-4)
    wte = streamed["wte.weight"] - local.base_init(config, torch.Generator().manual_seed(3))["wte.weight"]
    for c in (1, 2, 3):  # the correction Delta beyond K
        assert not torch.allclose(wte[c * 256: c * 256 + 232], wte[:232], atol=1e-4)  # not 256-periodic


def test_import_is_light():
    """`import hypernet` must not pull in torch_geometric (~7 s); graphs import it on demand."""
    import subprocess
    import sys

    code = "import sys, hypernet; print('torch_geometric' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---- residual prediction: a fresh hypernet predicts exactly the random init ---------------------

@pytest.fixture(scope="module")
def fresh():
    torch.manual_seed(1)
    return LoGAH(LoGAHConfig(variant="tiny", anchor_seed=None))


@pytest.mark.parametrize("config", [ViTConfig(depth=3, width=96, heads=4), GPT2Config(depth=2, width=64, heads=4)],
                         ids=str)
def test_fresh_hypernet_predicts_the_init_distribution(fresh, config):
    params = fresh.predict(config, seed=0)
    for name, p in params.items():
        if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name == "ln_f.weight":
            assert torch.equal(p, torch.ones_like(p)), name
        elif p.dim() == 1:
            assert torch.equal(p, torch.zeros_like(p)), name
        else:
            std = 0.02 / math.sqrt(2 * config.depth) if name.endswith("c_proj.weight") else 0.02
            assert abs(p.std().item() - std) < 0.15 * std + 4 * std / math.sqrt(p.numel()), name
    again, other = fresh.predict(config, seed=0), fresh.predict(config, seed=1)
    assert all(torch.equal(again[k], params[k]) for k in params)  # deterministic per seed
    assert not torch.equal(other["blocks.0.mlp.c_fc.weight"], params["blocks.0.mlp.c_fc.weight"])


def test_fresh_hypernet_apply_is_the_models_own_init(fresh):
    config = ViTConfig(depth=2, width=64, heads=4)
    torch.manual_seed(5)
    model = build_model(config)
    init = _init_of(model)
    x, y = _inputs(config, b=16)
    loss_init = model(x, y)[1].item()
    fresh.apply(model)
    assert all(torch.equal(p, init[k]) for k, p in model.named_parameters())  # g = 0: nothing changes
    assert model(x, y)[1].item() == loss_init
    (batched,) = fresh.predict_batch([config], inits=[init])
    assert all(torch.equal(batched[k].detach(), init[k]) for k in init)


def test_predicted_matrices_are_full_rank(hn):
    config = ViTConfig(depth=2, width=96, heads=4)
    params = hn.predict(config, seed=0)
    r = hn.config.r
    w = params["blocks.0.attn.c_proj.weight"]  # 96 x 96
    delta = w - hn.base_init(config, torch.Generator().manual_seed(0))["blocks.0.attn.c_proj.weight"]
    assert delta.abs().max() > 0 and torch.linalg.matrix_rank(delta).item() <= r  # low-rank correction ...
    assert torch.linalg.matrix_rank(w).item() > r                                  # ... on a full-rank W0
    pure = LoGAH(LoGAHConfig(variant="tiny", residual=False))
    assert torch.linalg.matrix_rank(pure.predict(config)["blocks.0.attn.c_proj.weight"]).item() <= r


@pytest.mark.parametrize("config", [ViTConfig(depth=2, width=64, heads=4), GPT2Config(depth=2, width=64, heads=4)],
                         ids=["vit", "gpt2"])
def test_strength_blends_the_prediction_with_the_standard_init(hn, config):
    """strength s writes init + s * (prediction - init): W0 + s * g Delta for residual roles, and
    LayerNorm gains / biases s of the way from 1 / 0 to the prediction; s = 1 is the plain prediction."""
    from hypernet.decoder import RESIDUAL_ROLES, ROLE_INIT

    torch.manual_seed(3)
    model = build_model(config)
    init = _init_of(model)
    full = hn.predict(config, seed=5)
    half = hn.predict(config, seed=5, strength=0.5)
    assert all(torch.equal(v, hn.predict(config, seed=5, strength=1.0)[k]) for k, v in full.items())
    graph = hn.graph(config)
    role_of = {n: r for names, roles in zip(graph.param_names, graph.param_roles) for n, r in zip(names, roles)}
    w0 = hn.base_init(config, torch.Generator().manual_seed(5))
    seen = set()
    for name, value in half.items():
        role = role_of[name]
        base = w0[name] if role in RESIDUAL_ROLES else torch.full_like(value, ROLE_INIT[role])
        torch.testing.assert_close(value, base + 0.5 * (full[name] - base), rtol=1e-5, atol=1e-6)
        seen.add(role)
    assert {"ln_weight", "ln_bias", "bias", "weight"} <= seen

    # apply() writes the same blend into a model (anchored: the anchored W0; fresh: the model's own values)
    applied = dict(hn.apply(model, strength=0.5).named_parameters())
    if hn.config.anchored:
        assert all(torch.allclose(applied[k], half[k], atol=1e-6) for k in half)
    else:
        for name, p in applied.items():
            base = init[name] if role_of[name] in RESIDUAL_ROLES else torch.full_like(p, ROLE_INIT[role_of[name]])
            delta = full[name] - (w0[name] if role_of[name] in RESIDUAL_ROLES else base)
            torch.testing.assert_close(p.detach(), base + 0.5 * delta, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("strength", [0.0, -0.5, 1.5, float("nan"), True])
def test_bad_strength_is_refused(hn, strength):
    with pytest.raises(ValueError, match="strength"):
        hn.predict(ViTConfig(depth=1, width=32, heads=2), strength=strength)
    with pytest.raises(ValueError, match="strength"):
        hn.predict_batch([ViTConfig(depth=1, width=32, heads=2)], strength=strength)
    with pytest.raises(ValueError, match=r"strength=.* allowed a number in \(0.0, 1.0\]"):
        hn.apply(build_model(ViTConfig(depth=1, width=32, heads=2)), strength=strength)


def test_strength_needs_a_residual_decoder():
    torch.manual_seed(0)
    pure = LoGAH(LoGAHConfig(variant="tiny", residual=False))
    config = ViTConfig(depth=1, width=32, heads=2)
    assert set(pure.predict(config)) == set(dict(build_model(config).named_parameters()))
    with pytest.raises(ValueError, match="residual"):
        pure.predict(config, strength=0.5)


@pytest.mark.parametrize("config", [ViTConfig(depth=1, width=32, heads=4), ViTConfig(depth=6, width=256),
                                    GPT2Config(depth=2, width=64, tied_embeddings=False)], ids=str)
def test_a_correction_cap_keeps_every_correction_within_that_many_w0_stds(config):
    """With gains far beyond it (g = 50 for every role), every residual-role correction's RMS stays
    below cap x W0's std (the uncapped hypernet's are 2.5-300x that), and the batched and streamed
    paths still agree."""
    from dataclasses import replace

    from hypernet import with_config
    from hypernet.decoder import RESIDUAL_ROLES, init_std

    torch.manual_seed(0)
    free = LoGAH(LoGAHConfig(variant="tiny"))
    with torch.no_grad():
        free.decoder.gain.fill_(50.0 / GAIN_SCALE)
    capped = with_config(free, correction_cap=2.0)
    assert capped.config == replace(free.config, correction_cap=2.0) and capped.decoder.correction_cap == 2.0
    graph = capped.graph(config)
    roles = {n: r for ns, rs in zip(graph.param_names, graph.param_roles) for n, r in zip(ns, rs)}
    w0 = capped.base_init(config)
    beyond = 0
    for hn, cap in ((capped, 2.0), (free, None)):
        params = hn.predict(config)
        (batched,) = hn.predict_batch([config])
        for name, value in params.items():
            torch.testing.assert_close(batched[name].detach(), value, atol=1e-4, rtol=1e-3)  # g = 50: large
            if roles[name] not in RESIDUAL_ROLES:
                continue
            ratio = rms(value - w0[name]) / init_std(roles[name], config.depth)
            if cap is not None:
                assert ratio < cap, (name, ratio)
            else:
                beyond += ratio > 2.5
    assert beyond == sum(r in RESIDUAL_ROLES for r in roles.values())  # without a cap every one is larger


def test_a_gain_far_beyond_the_cap_still_gets_a_gradient():
    """The algebraic cap (not tanh) leaves a gradient Adam can follow, so a checkpoint meta-trained
    without a cap can move its gains back under one."""
    torch.manual_seed(0)
    hn = LoGAH(LoGAHConfig(variant="tiny", correction_cap=2.0))
    with torch.no_grad():
        hn.decoder.gain.fill_(300.0 / GAIN_SCALE)
    config = ViTConfig(depth=1, width=32, heads=4)
    (params,) = hn.predict_batch([config])
    sum(p.pow(2).sum() for p in params.values()).backward()
    assert hn.decoder.gain.grad is not None and bool((hn.decoder.gain.grad.abs() > 1e-6).sum() >= 3)
