"""The fast `predict` / `apply` path gives the same tensors as the reference per-tensor decoder.

Checkpoints are trained with `predict_batch` and shipped for `predict`, so all three paths
(`decode_reference` = the original one-node-at-a-time `decode_param` path, the streamed
`decode_into` path, and the batched-with-grad `decode_many` path) must agree to float rounding.
The reference outputs are computed at test time; nothing is hard-coded. Residual hypernets add
their correction to a random W0: every path gets the same W0 (`base_init` with the generator that
`predict(seed=0)` uses, or the model's own init for `apply`), and the gains are non-zero so the
correction is actually compared.
"""
import pytest
import torch

from hypernet import LoGAH, LoGAHConfig
from hypernet.decoder import GAIN_SCALE, RESIDUAL_ROLES
from _reference_decode import decode_reference
from hypernet.model import node_keys
from search_spaces import GPT2Config, ViTConfig, build_model

CONFIGS = [
    ViTConfig(depth=2),
    ViTConfig(depth=1, class_token=False, learned_pos_embedding=False),
    GPT2Config(depth=2, width=64, heads=4, tied_embeddings=True),
    # vocab 6000 > K = 5120: rows beyond K go through the chunk codes in every path
    GPT2Config(vocab_size=6000, context=32, depth=1, width=32, heads=2, tied_embeddings=False),
]


@pytest.fixture(scope="module")
def hn():
    torch.manual_seed(0)
    hn = LoGAH(LoGAHConfig(variant="tiny"))
    with torch.no_grad():  # non-trivial chunk codes and biases, as after training
        hn.decoder.chunk_codes.mul_(torch.rand_like(hn.decoder.chunk_codes) + 0.5)
        hn.decoder.to_factors.bias.normal_()
        hn.decoder.gain.copy_(torch.linspace(-1.0, 1.0, hn.decoder.gain.numel()) / GAIN_SCALE)
        hn.decoder.key_to_features.weight.normal_(std=0.05)
    return hn


def _w0(hn, config):
    return hn.base_init(config, torch.Generator().manual_seed(0))


def _assert_same(got: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> None:
    assert list(got) == list(ref)
    for k in ref:
        assert got[k].shape == ref[k].shape and got[k].dtype == ref[k].dtype, k
        scale = ref[k].abs().max().item()
        torch.testing.assert_close(got[k].detach(), ref[k], rtol=0, atol=1e-5 * scale, msg=k)


@pytest.fixture(scope="module")
def reference(hn):
    return {c: decode_reference(hn, c, _w0(hn, c)) for c in CONFIGS}


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_predict_matches_reference(hn, reference, config):
    params = hn.predict(config, seed=0)
    _assert_same(params, reference[config])
    ptrs = [t.untyped_storage().data_ptr() for t in params.values()]
    assert len(set(ptrs)) == len(ptrs)  # one storage per tensor (safetensors refuses shared ones)


def test_predict_batch_matches_reference_with_grad(hn, reference):
    batch = hn.predict_batch(CONFIGS, inits=[_w0(hn, c) for c in CONFIGS])  # mixed sizes in one meta-batch
    for config, params in zip(CONFIGS, batch):
        assert all(t.requires_grad for t in params.values())
        _assert_same(params, reference[config])


@pytest.mark.parametrize("config", [CONFIGS[0], CONFIGS[3]], ids=str)
def test_apply_writes_reference_into_model_storage(hn, config):
    model = build_model(config)
    own_init = {k: p.detach().clone() for k, p in model.named_parameters()}
    ptrs = {k: p.data_ptr() for k, p in model.named_parameters()}
    hn.apply(model)  # W0 = the anchored init
    assert not torch.equal(model.head.weight if config.space == "vit" else model.wte.weight,
                           own_init["head.weight" if config.space == "vit" else "wte.weight"])
    assert {k: p.data_ptr() for k, p in model.named_parameters()} == ptrs  # decoded in place, no swap
    _assert_same({k: p.data for k, p in model.named_parameters()}, decode_reference(hn, config, _w0(hn, config)))
    fresh = LoGAH(LoGAHConfig(variant="tiny", anchor_seed=None))
    fresh.load_state_dict(hn.state_dict())
    model = build_model(config)
    own_init = {k: p.detach().clone() for k, p in model.named_parameters()}
    fresh.apply(model)  # fresh W0: the model's own init
    _assert_same({k: p.data for k, p in model.named_parameters()}, decode_reference(fresh, config, own_init))


def test_scratch_limit_does_not_change_results(hn, reference):
    """With a tiny scratch budget every node's factors are built alone: same tensors."""
    config = CONFIGS[2]
    graph = hn.graph(config)
    (h,) = hn.embed([graph])
    nodes = [i for i, names in enumerate(graph.param_names) if names]
    x, g = hn.decoder.node_features(h[nodes], node_keys(graph)[nodes])
    w0 = _w0(hn, config)
    targets, outs, names = [], [], []
    for row, i in enumerate(nodes):
        for name, shape, role in zip(graph.param_names[i], graph.param_shapes[i], graph.param_roles[i]):
            targets.append((row, tuple(shape), role, graph.depth))
            outs.append(w0[name].clone() if role in RESIDUAL_ROLES else torch.full(tuple(shape), float("nan")))
            names.append(name)
    hn.decoder.decode_into(x, g, targets, outs, scratch_bytes=1)
    _assert_same(dict(zip(names, outs)), {n: reference[config][n] for n in names})
