"""Meta-training: it learns, the hooks work, a crashed run resumes bit-for-bit, bad configs are refused."""
from __future__ import annotations

import dataclasses
import math
import random

import pytest
import torch

from hypernet import LoGAH, LoGAHConfig
from hypernet.meta_training import MetaTrainConfig, meta_train, trainstate_path
from nas.data import load_dataset
from search_spaces import ConfigError, ViTConfig, build_model, get_space


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def space(digits):
    # Tiny models keep a meta-step in the tens of milliseconds.
    return get_space("vit", depth=(1, 2), width=(16, 32, 16), heads=(2,), patch_sizes=(4,), mlp_ratios=(2.0,),
                     **digits.space_options())


def _hn(seed: int = 0) -> LoGAH:
    torch.manual_seed(seed)
    return LoGAH(LoGAHConfig(variant="tiny"))


def _cfg(**kw) -> MetaTrainConfig:
    base = dict(steps=4, batch_size=16, lr=1e-3, warmup_steps=1, device="cpu", log_every=1)
    return MetaTrainConfig(**{**base, **kw})


def _val_loss(hn: LoGAH, configs, dataset) -> float:
    """Mean val loss of the predicted (untrained) models: what a warm start starts from.
    The same W0 (seeded `build_model`) before and after meta-training, so only the correction differs."""
    context = getattr(configs[0], "context", None)
    x, y = next(iter(dataset.val_batches(256, context=context) if context else dataset.val_batches(256)))
    losses = []
    for i, config in enumerate(configs):
        torch.manual_seed(1000 + i)
        model = hn.apply(build_model(config)).eval()
        with torch.no_grad():
            losses.append(float(model(x, y)[1]))
    return sum(losses) / len(losses)


def test_anchored_meta_training_learns_images_on_unseen_architectures(space, digits):
    """The anchored W0 is what makes images learnable fast: the step-0 val loss of architectures
    never sampled in meta-training drops well below chance, and further than the same run with W0
    redrawn every step, which has to learn a correction to every draw at once."""
    probe = [ViTConfig(image_size=8, channels=1, num_classes=10, patch_size=4, depth=d, width=w, heads=2,
                       mlp_ratio=2.0) for d, w in ((1, 24), (2, 40))]  # widths outside the space's 16/32
    results = {}
    for anchor in (0, None):
        torch.manual_seed(0)
        hn = LoGAH(LoGAHConfig(variant="tiny", anchor_seed=anchor))
        before = _val_loss(hn, probe, digits)
        meta_train(hn, space, digits, _cfg(steps=300, lr=3e-3, warmup_steps=10, batch_size=64), progress=False)
        results[anchor] = (before, _val_loss(hn, probe, digits))
    (before, after), (_, fresh_after) = results[0], results[None]
    assert before > 2.2 and after < before - 0.2, results
    assert after < fresh_after - 0.1, results  # the same run with W0 redrawn every step learns less


def _weights(hn: LoGAH) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in hn.state_dict().items()}


def test_meta_training_lowers_the_loss_of_predicted_models():
    """Text: the byte statistics are learnable whatever the random base W0 is."""
    text = load_dataset("pytext")
    space = get_space("gpt2", depth=(1, 2), width=(16, 32, 16), heads=(2,), mlp_ratios=(2.0,), context=16,
                      **text.space_options())
    hn = _hn()
    probe = [space.sample(random.Random(123 + i)) for i in range(3)]
    before = _val_loss(hn, probe, text)
    assert hn.decoder.gain.abs().sum() == 0  # a fresh hypernet predicts the random init ...
    result = meta_train(hn, space, text, _cfg(steps=40, lr=5e-3, warmup_steps=2), progress=False)
    after = _val_loss(hn, probe, text)
    assert result.steps == 40 and result.start_step == 0 and len(result.losses) == 40
    assert result.device == "cpu" and all(p.device.type == "cpu" for p in hn.parameters())
    assert hn.decoder.gain.abs().sum() > 0  # ... and moves away from it
    assert after < before - 0.05, (before, after)
    first, last = sum(result.losses[:3]) / 3, sum(result.losses[-3:]) / 3
    assert last < first, result.losses


def test_meta_batch_two_and_extra_loss_hook(space, digits):
    calls = []

    def extra(config, params):
        calls.append((config, sorted(params)))
        return 10.0 * params["head.bias"].pow(2).sum()

    plain, hooked = _hn(), _hn()
    meta_train(plain, space, digits, _cfg(steps=2, meta_batch=2), progress=False)
    meta_train(hooked, space, digits, _cfg(steps=2, meta_batch=2), extra_loss=extra, progress=False)
    assert len(calls) == 4  # 2 steps x 2 architectures
    for config, names in calls:
        assert space.contains(config)
        assert names == sorted(dict(build_model(config).named_parameters()))
    a, b = _weights(plain), _weights(hooked)
    assert any(not torch.equal(a[k], b[k]) for k in a), "extra_loss did not change the update"


def test_init_for_sets_the_random_base_of_chosen_architectures(space, digits):
    """`init_for(config)` -> W0 for that architecture (a trial's own init in the study's refit);
    None -> a fresh draw. Seen through extra_loss at step 0, where the gains are still 0."""
    fixed = space.sample(random.Random(5))
    own = {k: torch.full_like(p, 0.5) for k, p in build_model(fixed).named_parameters() if p.dim() > 1}
    seen, asked = [], []
    meta_train(_hn(), space, digits, _cfg(steps=1, meta_batch=2), sample_arch=lambda rng: fixed,
               init_for=lambda c: (asked.append(c), own if len(asked) == 1 else None)[1],
               extra_loss=lambda c, p: (seen.append({k: v.detach().clone() for k, v in p.items()}),
                                        torch.zeros(()))[1], progress=False)
    assert asked == [fixed, fixed] and len(seen) == 2
    assert all(torch.equal(seen[0][k], own[k]) for k in own)  # g = 0: exactly the given W0
    assert all(not torch.equal(seen[1][k], own[k]) for k in own)  # None: drawn fresh


def test_non_finite_loss_skips_the_update(space, digits):
    hn = _hn()
    before = _weights(hn)
    result = meta_train(hn, space, digits, _cfg(steps=1), extra_loss=lambda c, p: torch.tensor(float("nan")),
                        progress=False)
    assert len(result.losses) == 1
    after = _weights(hn)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_sample_arch_is_used(space, digits):
    fixed = space.sample(random.Random(5))
    seen = []
    meta_train(_hn(), space, digits, _cfg(steps=2), sample_arch=lambda rng: fixed,
               extra_loss=lambda c, p: (seen.append(c), torch.zeros(()))[1], progress=False)
    assert seen == [fixed, fixed]


class _Crash(RuntimeError):
    pass


def test_resume_after_crash_equals_uninterrupted_run(space, digits, tmp_path):
    from hypernet.checkpoint import load_checkpoint

    cfg = _cfg(steps=4, checkpoint_every=2)
    straight = _hn()
    meta_train(straight, space, digits, cfg, progress=False)

    path = tmp_path / "hn.safetensors"
    step = {"n": 0}

    def crash_at_third_step(config, params):
        step["n"] += 1
        if step["n"] == 3:
            raise _Crash
        return torch.zeros(())

    with pytest.raises(_Crash):
        meta_train(_hn(), space, digits, cfg, extra_loss=crash_at_third_step, checkpoint_path=path, progress=False)
    assert path.exists() and trainstate_path(path).exists()
    _, meta = load_checkpoint(path)
    assert meta["meta_train"]["step"] == 2

    resumed = _hn(seed=99)  # a new process: its own random weights are overwritten by the train state
    result = meta_train(resumed, space, digits, cfg, checkpoint_path=path, progress=False)
    assert result.start_step == 2 and len(result.losses) == 4
    a, b = _weights(straight), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed run diverged from the uninterrupted one"
    loaded, meta = load_checkpoint(path)
    assert meta["meta_train"]["step"] == 4
    assert all(torch.equal(v, b[k]) for k, v in loaded.state_dict().items())


def test_resume_refuses_a_changed_config(space, digits, tmp_path):
    path = tmp_path / "hn.safetensors"
    meta_train(_hn(), space, digits, _cfg(steps=1), checkpoint_path=path, progress=False)
    with pytest.raises(ConfigError, match="seed"):
        meta_train(_hn(), space, digits, _cfg(steps=2, seed=1), checkpoint_path=path, progress=False)
    # resume=False starts over instead
    result = meta_train(_hn(), space, digits, _cfg(steps=1, seed=1), checkpoint_path=path, resume=False,
                        progress=False)
    assert result.start_step == 0


def test_resume_refuses_changed_caller_settings(space, digits, tmp_path):
    path = tmp_path / "hn.safetensors"
    run = {"data": "digits", "space_ranges": {"depth": (1, 2)}}
    meta_train(_hn(), space, digits, _cfg(steps=1), checkpoint_path=path, resume_must_match=run, progress=False)
    with pytest.raises(ConfigError, match=r"data='pytext' is invalid: allowed 'digits', the value the run"):
        meta_train(_hn(), space, digits, _cfg(steps=2), checkpoint_path=path,
                   resume_must_match={**run, "data": "pytext"}, progress=False)
    result = meta_train(_hn(), space, digits, _cfg(steps=2), checkpoint_path=path, resume_must_match=run,
                        progress=False)  # the same settings (tuples stored as JSON lists) resume
    assert result.start_step == 1


@pytest.mark.parametrize("field, value", [
    ("steps", 0), ("meta_batch", 0), ("lr", 0.0), ("lr", 2.0), ("weight_decay", -0.1), ("warmup_steps", -1),
    ("grad_clip", -1.0), ("param_norm_reg", -1e-5), ("batch_size", 0), ("seed", -1), ("checkpoint_every", -5),
    ("log_every", 0), ("meta_batch", 1.5), ("lookahead", -1e-3), ("lookahead", 2.0),
    ("unroll_steps", -1), ("unroll_steps", 2.5), ("unroll_lr", 0.0), ("unroll_lr", 3.0),
    ("input_noise", -0.1), ("input_noise", 11.0), ("strength", 0.0), ("strength", 1.5),
])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ConfigError) as err:
        MetaTrainConfig(**{field: value})
    assert err.value.field == field and field in str(err.value)


def test_bad_device_is_a_config_error(space, digits):
    with pytest.raises(ConfigError, match="device"):
        meta_train(_hn(), space, digits, _cfg(device="tpu"), progress=False)


def test_learning_rate_schedule():
    cfg = MetaTrainConfig(steps=100, lr=1e-3, warmup_steps=10)
    assert cfg.lr_at(0) == pytest.approx(1e-4) and cfg.lr_at(9) == pytest.approx(1e-3)
    assert cfg.lr_at(10) == pytest.approx(1e-3) and cfg.lr_at(99) < 1e-5
    lrs = [cfg.lr_at(s) for s in range(10, 100)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_gpt2_meta_batch_with_tied_and_untied_models():
    text = load_dataset("pytext")
    space = get_space("gpt2", depth=(1, 2), width=(16, 32, 16), heads=(2,), mlp_ratios=(2.0,), context=16,
                      **text.space_options())
    base = space.sample(random.Random(0))
    pairs = ((True, 1), (False, 2), (False, 1), (True, 2))  # (tied, depth): padding + both embeddings
    configs = iter([dataclasses.replace(base, tied_embeddings=t, depth=d) for t, d in pairs])
    hn = _hn()
    before = _weights(hn)
    result = meta_train(hn, space, text, _cfg(steps=2, meta_batch=2), sample_arch=lambda rng: next(configs),
                        progress=False)
    assert len(result.losses) == 2 and all(math.isfinite(v) and v > 1.0 for v in result.losses)
    after = _weights(hn)
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_lookahead_scores_the_model_after_one_sign_step(space, digits):
    """The lookahead term is the CE at p - s * sign(dCE/dp), s ~ U(0, rho), and its gradient
    reaches the hypernet through p."""
    from hypernet.meta_losses import ModelCache, lookahead_loss

    hn, config = _hn(), space.sample(random.Random(3))
    models = ModelCache(torch.device("cpu"))
    x, y = digits.batch("train", 16, torch.Generator().manual_seed(0))
    (p,) = hn.predict_batch([config])
    _, ce = models.forward(config, p, x, y)
    torch.manual_seed(7)
    got = lookahead_loss(models, config, p, ce, x, y, rho=0.01)
    torch.manual_seed(7)
    s = float(torch.rand(())) * 0.01
    grads = torch.autograd.grad(ce, list(p.values()), retain_graph=True)
    moved = {k: (v - s * g.sign()).detach() for (k, v), g in zip(p.items(), grads)}
    torch.testing.assert_close(got.detach(), models.forward(config, moved, x, y)[1])
    assert not torch.allclose(got.detach(), ce.detach())
    got.backward()
    assert any(t.grad is not None and t.grad.abs().sum() > 0 for t in hn.parameters())
    result = meta_train(_hn(), space, digits, _cfg(steps=3, lookahead=0.01), progress=False)
    assert len(result.losses) == 3 and all(math.isfinite(v) for v in result.losses)


def test_unrolled_term_is_the_loss_after_real_adamw_steps(space, digits):
    """The unrolled term is the CE (on a fresh batch) of the model after K steps of the trials' AdamW
    recipe from the predicted parameters, and its gradient is first order: dCE/dp at the moved point,
    passed straight to the prediction."""
    from hypernet.meta_losses import ModelCache, unrolled_loss

    hn, config = _hn(), space.sample(random.Random(3))
    models = ModelCache(torch.device("cpu"))
    (p,) = hn.predict_batch([config])
    p = {k: v.detach().requires_grad_(True) for k, v in p.items()}  # leaves, to read their gradient

    def draws(seed):
        gen = torch.Generator().manual_seed(seed)
        return lambda cs: digits.batch("train", 16, gen)

    torch.manual_seed(5)
    got = unrolled_loss(models, config, p, draws(0), steps=3, peak_lr=1e-3, betas=(0.9, 0.95), grad_clip=1.0)
    got.backward()

    # the same three steps by hand, with an independent AdamW
    torch.manual_seed(5)
    lr = 1e-3 * 10 ** float(torch.empty(()).uniform_(-0.5, 0.5))
    draw = draws(0)
    ref = {k: v.detach().clone().requires_grad_(True) for k, v in p.items()}
    opt = torch.optim.AdamW(list(ref.values()), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    for k in range(3):
        x, y = draw([config])
        opt.param_groups[0]["lr"] = lr * (k + 1) / 4
        opt.zero_grad()
        models.forward(config, ref, x, y)[1].backward()
        torch.nn.utils.clip_grad_norm_(list(ref.values()), 1.0)
        opt.step()
    x, y = draw([config])
    moved = {k: v.detach().requires_grad_(True) for k, v in ref.items()}
    want = models.forward(config, moved, x, y)[1]
    want.backward()
    torch.testing.assert_close(got.detach(), want.detach())
    for k in p:
        torch.testing.assert_close(p[k].grad, moved[k].grad)
    assert any(not torch.equal(ref[k].detach(), p[k].detach()) for k in p), "the steps moved nothing"


def test_meta_training_with_unrolled_steps_reaches_the_hypernet_and_resumes(space, digits, tmp_path):
    cfg = _cfg(steps=2, unroll_steps=2, checkpoint_every=1)
    hn = _hn()
    before = _weights(hn)
    path = tmp_path / "hn.safetensors"
    result = meta_train(hn, space, digits, cfg, checkpoint_path=path, progress=False)
    assert len(result.losses) == 2 and all(math.isfinite(v) for v in result.losses)
    assert any(not torch.equal(before[k], v) for k, v in _weights(hn).items())
    with pytest.raises(ConfigError, match="unroll_steps"):
        meta_train(_hn(), space, digits, _cfg(steps=3, unroll_steps=3, checkpoint_every=1), checkpoint_path=path,
                   progress=False)


def test_input_noise_perturbs_the_meta_training_images_reproducibly(digits):
    from hypernet.meta_training import _batch

    clean, labels = _batch(digits, [None], 64, torch.Generator().manual_seed(0))
    noisy, noisy_labels = _batch(digits, [None], 64, torch.Generator().manual_seed(0), input_noise=0.5)
    again, _ = _batch(digits, [None], 64, torch.Generator().manual_seed(0), input_noise=0.5)
    assert torch.equal(labels, noisy_labels) and torch.equal(noisy, again)  # same images, same noise
    assert (noisy - clean).std().item() == pytest.approx(0.5, rel=0.1)


def test_input_noise_changes_meta_training_and_resumes(space, digits, tmp_path):
    plain, noisy = _hn(), _hn()
    meta_train(plain, space, digits, _cfg(steps=2), progress=False)
    path = tmp_path / "hn.safetensors"
    meta_train(noisy, space, digits, _cfg(steps=2, input_noise=0.5, checkpoint_every=1), checkpoint_path=path,
               progress=False)
    a, b = _weights(plain), _weights(noisy)
    assert any(not torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ConfigError, match="input_noise"):  # a resumed run must keep its noise
        meta_train(_hn(), space, digits, _cfg(steps=3, checkpoint_every=1), checkpoint_path=path, progress=False)


def test_input_noise_is_refused_for_text():
    text = load_dataset("pytext")
    gpt_space = get_space("gpt2", **text.space_options())
    with pytest.raises(ConfigError, match="input_noise"):
        meta_train(_hn(), gpt_space, text, _cfg(input_noise=0.1), progress=False)
