"""Low-rank decoder: exact shapes, rank <= r, no tiling / periodicity, per-role normalisation,
and the residual gating (W0 + g Delta; exactly the init at g = 0)."""
import math
import random

import pytest
import torch
from _reference_decode import decode_param

from hypernet.decoder import EMBEDDING_STD, GAIN_SCALE, RESIDUAL_ROLES, LowRankDecoder, init_std
from hypernet.graph import Role, build_graph
from search_spaces import GPT2Space, ViTSpace

R = 8


@pytest.fixture(scope="module")
def dec():
    """The pure low-rank decoder (residual=False): what Delta is made of."""
    torch.manual_seed(0)
    return LowRankDecoder(d=16, rank=R, max_dim=5120, residual=False)


@pytest.fixture(scope="module")
def res():
    torch.manual_seed(0)
    return LowRankDecoder(d=16, rank=R, max_dim=5120)


@pytest.fixture(scope="module")
def feats(dec):
    torch.manual_seed(1)
    x, g = dec.node_features(torch.randn(3, 16))
    return x, g


def test_large_matrix_not_periodic_and_low_rank(dec, feats):
    x, _ = feats
    with torch.no_grad():
        w = dec.matrix(x[0], 3840, 1280, std=1.0)
    assert w.shape == (3840, 1280)
    top, bottom = w[:1920], w[1920:]
    assert (top - bottom).abs().mean() > 0.5 * w.abs().mean()  # not a repetition of the first half
    for period in (256, 1024, 1280, 1920):  # incl. the released code's tiles
        assert not torch.allclose(w[:period], w[period: 2 * period], atol=1e-3)
    assert not torch.allclose(w[2048:], w[: 3840 - 2048], atol=1e-3)  # LoGAH's max_shape=2048 tiling
    assert torch.linalg.matrix_rank(w[:512, :512]).item() <= R
    assert abs(w.pow(2).mean().sqrt().item() - 1.0) < 1e-4  # RMS normalised exactly


def test_vocabulary_rows_beyond_k_are_not_periodic(dec, feats):
    x, _ = feats
    with torch.no_grad():
        w = dec.matrix(x[1], 50257, 16, std=EMBEDDING_STD)
    k = dec.max_dim
    assert w.shape == (50257, 16)
    for c in range(1, 9):
        chunk = w[c * k: (c + 1) * k]
        assert not torch.allclose(chunk, w[: chunk.shape[0]], atol=1e-4)
    assert (w[k:2 * k] - w[:k]).abs().mean() > 0.5 * w.abs().mean()
    assert abs(w.std().item() - EMBEDDING_STD) < 1e-3


def test_streamed_output_equals_materialised(dec, feats):
    x, _ = feats
    with torch.no_grad():
        ref = dec.matrix(x[2], 12000, 24, std=0.1)
        out = torch.full((12000, 24), float("nan"))
        got = dec.matrix(x[2], 12000, 24, std=0.1, out=out)
    assert got.data_ptr() == out.data_ptr()
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)


def test_too_large_dimension_names_the_limit(dec, feats):
    from search_spaces import ConfigError

    with pytest.raises(ConfigError, match="max_total_dim"):
        dec.matrix(feats[0][0], dec.max_total_dim + 1, 4, std=1.0)


@pytest.mark.parametrize("role, check", [
    (Role.LN_WEIGHT, lambda v: bool(((v > 0) & (v < 2)).all())),
    (Role.LN_BIAS, lambda v: v.abs().max() < 1.0 and v.abs().mean() < 0.5),
    (Role.BIAS, lambda v: v.abs().max() < 1.0 and v.abs().mean() < 0.5),
    (Role.CLS_TOKEN, lambda v: abs(v.pow(2).mean().sqrt().item() - EMBEDDING_STD) < 1e-4),
])
def test_vector_roles(dec, feats, role, check):
    x, g = feats
    v = decode_param(dec, x[0], g[0], (64,), role, depth=2)
    assert v.shape == (64,) and check(v)


def test_matrix_roles_fan_in_and_residual_scaling(dec, feats):
    x, g = feats
    rms = lambda t: t.pow(2).mean().sqrt().item()  # noqa: E731
    w = decode_param(dec, x[0], g[0], (96, 32), Role.WEIGHT, depth=3)
    assert math.isclose(rms(w), 1 / math.sqrt(32), rel_tol=1e-4)
    p = decode_param(dec, x[0], g[0], (32, 96), Role.RESIDUAL_WEIGHT, depth=3)
    assert math.isclose(rms(p), 1 / math.sqrt(96 * 6), rel_tol=1e-4)
    e = decode_param(dec, x[0], g[0], (1, 17, 32), Role.POS_EMBEDDING, depth=3)
    assert e.shape == (1, 17, 32) and math.isclose(rms(e), EMBEDDING_STD, rel_tol=1e-4)


def test_exact_shapes_for_every_param_of_sampled_configs(dec, feats):
    x, g = feats
    rng = random.Random(0)
    for space in (ViTSpace(), GPT2Space(), ViTSpace.vits_1k()):
        for _ in range(3):
            graph = build_graph(space.sample(rng))
            for shapes, roles in zip(graph.param_shapes, graph.param_roles):
                for shape, role in zip(shapes, roles):
                    out = decode_param(dec, x[0], g[0], tuple(shape), role, depth=graph.depth)
                    assert tuple(out.shape) == tuple(shape) and torch.isfinite(out).all()


def test_decoder_runs_in_fp32_under_autocast(dec, feats):
    x, g = feats
    with torch.autocast("cpu", dtype=torch.bfloat16):
        xa, ga = dec.node_features(torch.randn(2, 16))
        w = decode_param(dec, xa[0], ga[0], (40, 24), Role.WEIGHT, depth=1)
    assert xa.dtype == torch.float32 and w.dtype == torch.float32


def _w0(shape, role, depth, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * init_std(role, depth)


@pytest.mark.parametrize("shape, role", [
    ((96, 32), Role.WEIGHT), ((32, 96), Role.RESIDUAL_WEIGHT), ((10, 32), Role.HEAD), ((300, 32), Role.EMBEDDING),
    ((1, 17, 32), Role.POS_EMBEDDING), ((1, 1, 32), Role.CLS_TOKEN),
])
def test_residual_at_zero_gain_returns_w0_exactly(res, feats, shape, role):
    x, g = feats
    assert res.gain.abs().sum() == 0  # fresh decoder
    w0 = _w0(shape, role, depth=3)
    w = decode_param(res, x[0], g[0], shape, role, depth=3, init=w0)
    assert torch.equal(w, w0)
    out = w0.clone()  # the streamed path adds onto W0 in place
    res.decode_into(x[:1], g[:1], [(0, shape, role, 3)], [out])
    assert torch.equal(out, w0)


def test_residual_vectors_at_zero_gain_are_the_init(res, feats):
    x, g = feats
    assert torch.equal(decode_param(res, x[0], g[0], (64,), Role.LN_WEIGHT, depth=2), torch.ones(64))
    for role in (Role.LN_BIAS, Role.BIAS):
        assert torch.equal(decode_param(res, x[0], g[0], (64,), role, depth=2), torch.zeros(64))


def test_residual_correction_is_gated_and_full_rank(feats):
    torch.manual_seed(0)
    local = LowRankDecoder(d=16, rank=R, max_dim=5120)
    x, g = feats
    with torch.no_grad():
        local.gain.fill_(0.5 / GAIN_SCALE)  # g_role = 0.5 for every role
    rms = lambda t: t.pow(2).mean().sqrt().item()  # noqa: E731
    for shape, role in (((96, 32), Role.WEIGHT), ((32, 96), Role.RESIDUAL_WEIGHT), ((300, 32), Role.EMBEDDING)):
        w0 = _w0(shape, role, depth=3)
        w = decode_param(local, x[0], g[0], shape, role, depth=3, init=w0)
        delta = w - w0
        assert math.isclose(rms(delta), 0.5 * local.matrix_std(role, shape[-1], 3), rel_tol=1e-3)
        assert torch.linalg.matrix_rank(delta).item() <= R  # the correction is low rank ...
    w0 = _w0((96, 96), Role.WEIGHT, depth=3)
    w = decode_param(local, x[0], g[0], (96, 96), Role.WEIGHT, depth=3, init=w0)
    assert torch.linalg.matrix_rank(w).item() > R  # ... the prediction is not
    ln = decode_param(local, x[0], g[0], (64,), Role.LN_WEIGHT, depth=2)
    assert not torch.equal(ln, torch.ones(64)) and bool(((ln > 0) & (ln < 2)).all())


def test_residual_needs_init_and_gain_gets_gradient(feats):
    torch.manual_seed(0)
    local = LowRankDecoder(d=16, rank=R, max_dim=5120)
    x, g = feats
    with pytest.raises(ValueError, match="init"):
        decode_param(local, x[0], g[0], (8, 8), Role.WEIGHT, depth=1)
    assert set(RESIDUAL_ROLES) == {Role.WEIGHT, Role.RESIDUAL_WEIGHT, Role.HEAD, Role.EMBEDDING,
                                   Role.POS_EMBEDDING, Role.CLS_TOKEN}
    w = decode_param(local, x[0].detach(), g[0].detach(), (8, 8), Role.WEIGHT, depth=1, init=torch.zeros(8, 8))
    (w * torch.randn(8, 8)).sum().backward()
    assert local.gain.grad[Role.ALL.index(Role.WEIGHT)] != 0  # at g = 0 the gain is what learns first
