"""The trial training loop: schedule, evals, determinism, divergence, pruning, devices."""
import math

import optuna
import pytest
import torch

from nas.data import load_dataset
from nas.train_loop import TrainConfig, TrainResult, _optimizer, evaluate, resolve_device, train
from search_spaces import ConfigError, GPT2Config, ViTConfig, build_model


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def pytext():
    return load_dataset("pytext", max_bytes=100_000, context=16)


def _vit(seed=0, **kw):
    torch.manual_seed(seed)
    return build_model(ViTConfig(depth=1, width=32, heads=2, patch_size=4, **kw))


def _gpt(seed=0):
    torch.manual_seed(seed)
    return build_model(GPT2Config(depth=1, width=32, heads=2, context=16))


CPU = dict(device="cpu", batch_size=32, eval_batches=2)


def test_vit_learns_and_history_has_every_eval(digits):
    calls = []
    result = train(_vit(), digits, TrainConfig(steps=60, eval_every=25, lr=3e-3, **CPU),
                   report=lambda step, m: calls.append((step, m)))
    assert isinstance(result, TrainResult) and result.status == "complete" and result.reason == ""
    assert [h["step"] for h in result.history] == [0, 25, 50, 60]  # step 0, every eval_every, the end
    assert [s for s, _ in calls] == [0, 25, 50, 60]
    assert all("val_loss" in m and "val_accuracy" in m and "step" not in m for _, m in calls)
    assert result.loss_step0 == result.history[0]["val_loss"] and abs(result.loss_step0 - math.log(10)) < 0.3
    assert result.val_loss == result.history[-1]["val_loss"] < result.loss_step0 - 0.2
    assert result.history[-1]["val_accuracy"] > 0.3 and result.steps == 60 and result.seconds > 0
    assert "train_loss" not in result.history[0] and "train_loss" in result.history[1]


def test_gpt2_uses_the_model_context(pytext):
    result = train(_gpt(), pytext, TrainConfig(steps=30, eval_every=30, lr=3e-3, **CPU))
    assert result.status == "complete" and set(result.history[0]) == {"step", "val_loss"}
    assert abs(result.loss_step0 - math.log(256)) < 0.3
    assert result.val_loss < result.loss_step0 - 1.0  # bytes of Python are far from uniform


def test_same_seed_same_result_on_cpu(digits):
    cfg = TrainConfig(steps=15, eval_every=5, seed=3, **CPU)
    a = train(_vit(dropout=0.1), digits, cfg)
    b = train(_vit(dropout=0.1), digits, cfg)  # dropout draws are seeded too
    assert [h["val_loss"] for h in a.history] == [h["val_loss"] for h in b.history]
    c = train(_vit(dropout=0.1), digits, TrainConfig(steps=15, eval_every=5, seed=4, **CPU))
    assert [h["val_loss"] for h in c.history] != [h["val_loss"] for h in a.history]


def test_training_does_not_touch_the_global_rng(digits):
    torch.manual_seed(123)
    expected = torch.rand(3)
    model = _vit()
    torch.manual_seed(123)
    train(model, digits, TrainConfig(steps=2, eval_every=1, **CPU))
    assert torch.equal(torch.rand(3), expected)


def test_eval_is_the_same_for_every_call(digits):
    model = _vit()
    a = evaluate(model, digits, batch_size=64, batches=3)
    b = evaluate(model, digits, batch_size=64, batches=3)
    assert a == b and set(a) == {"val_loss", "val_accuracy"}


def test_eval_batch_size_fixes_the_val_examples_whatever_the_training_batch(digits):
    """Trials of one study train with different batch sizes but must be scored on the same examples."""
    def step0(**kw):
        return train(_vit(), digits, TrainConfig(steps=1, eval_every=1, device="cpu", eval_batches=2, **kw)).loss_step0

    expected = evaluate(_vit(), digits, batch_size=64, batches=2)["val_loss"]
    assert step0(batch_size=16, eval_batch_size=64) == step0(batch_size=64, eval_batch_size=64) == expected
    assert step0(batch_size=16) != expected  # without it: 2 val batches of 16 examples


def test_pruning_propagates(digits):
    def report(step, metrics):
        if step >= 5:
            raise optuna.TrialPruned(f"pruned at {step}")

    with pytest.raises(optuna.TrialPruned, match="pruned at 5"):
        train(_vit(), digits, TrainConfig(steps=20, eval_every=5, **CPU), report=report)


def test_pruning_with_a_real_trial(digits):
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=0.1))

    def objective(trial):
        def report(step, metrics):
            trial.report(metrics["val_loss"], step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return train(_vit(), digits, TrainConfig(steps=10, eval_every=5, **CPU), report=report).val_loss

    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED and list(trial.intermediate_values) == [0]


def test_non_finite_loss_is_diverged_not_an_exception(digits):
    model = _vit()
    with torch.no_grad():
        model.head.weight.fill_(float("nan"))
    result0 = train(model, digits, TrainConfig(steps=5, **CPU))
    assert result0.status == "diverged" and result0.reason == "non-finite val loss at step 0"
    assert math.isnan(result0.val_loss) and math.isnan(result0.loss_step0) and result0.steps == 0

    class Explodes(torch.nn.Module):  # finite at step 0, then the loss overflows
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(64, 10))
            self.calls = 0

        def forward(self, x, y):
            self.calls += 1
            logits = x.flatten(1) @ self.w
            if self.training and self.calls > 5:
                logits = logits * float("inf")
            return logits, torch.nn.functional.cross_entropy(logits, y)

    result = train(Explodes(), digits, TrainConfig(steps=10, eval_every=2, **CPU))
    assert result.status == "diverged" and result.reason.startswith("non-finite loss at step ")
    assert result.steps == int(result.reason.rsplit(" ", 1)[1]) and math.isnan(result.val_loss)
    assert math.isfinite(result.loss_step0)


def test_schedule_warmup_cosine_to_ten_percent():
    cfg = TrainConfig(steps=110, warmup_steps=10, lr=1e-3)
    lrs = [cfg.lr_at(s) for s in range(cfg.steps)]
    assert lrs[0] == pytest.approx(1e-3 / 11) and lrs[9] == pytest.approx(1e-3 * 10 / 11)
    assert lrs[10] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert cfg.lr_at(110) == pytest.approx(1e-4) and lrs[60] == pytest.approx(0.55e-3)
    assert TrainConfig(steps=5, warmup_steps=0, lr=0.5).lr_at(0) == 0.5


def test_weight_decay_only_on_matrices():
    model = _gpt()
    opt = _optimizer(model, TrainConfig(weight_decay=0.1), torch.device("cpu"))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_grad_clip_is_applied(digits):
    """Clipped to 1e-12, gradients fall far below Adam's eps (1e-8), so the first step barely moves."""
    def first_step_change(grad_clip):
        model = _vit()
        before = [p.detach().clone() for p in model.parameters()]
        train(model, digits, TrainConfig(steps=1, eval_every=1, lr=0.1, warmup_steps=0, grad_clip=grad_clip,
                                         weight_decay=0.0, **CPU))
        return max(float((a - b.detach()).abs().max()) for a, b in zip(before, model.parameters()))

    assert first_step_change(None) > 0.05
    assert first_step_change(1.0) > 0.05  # Adam's first step is ~lr * sign(g) whatever the scale
    assert 0 < first_step_change(1e-12) < 1e-4


def test_model_and_data_must_match(digits, pytext):
    with pytest.raises(ConfigError) as err:
        train(_gpt(), digits, TrainConfig(steps=1, **CPU))
    assert err.value.field == "data"


@pytest.mark.parametrize("kwargs, field", [
    (dict(steps=0), "steps"), (dict(batch_size=0), "batch_size"), (dict(lr=0.0), "lr"), (dict(lr=1.5), "lr"),
    (dict(weight_decay=-0.1), "weight_decay"), (dict(weight_decay=2.0), "weight_decay"),
    (dict(warmup_steps=-1), "warmup_steps"), (dict(grad_clip=0.0), "grad_clip"), (dict(grad_clip=-1.0), "grad_clip"),
    (dict(eval_every=0), "eval_every"), (dict(eval_batches=0), "eval_batches"), (dict(steps=2.5), "steps"),
    (dict(seed="a"), "seed"), (dict(device=3), "device"), (dict(device="gpu"), "device"),
    (dict(device="meta"), "device"), (dict(eval_batch_size=0), "eval_batch_size"),
])
def test_train_config_validation(kwargs, field):
    with pytest.raises(ConfigError) as err:
        TrainConfig(**kwargs)
    assert err.value.field == field


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("gpu", "tpu:0", "", "cuda:99"):
        with pytest.raises(ConfigError) as err:
            resolve_device(bad)
        assert err.value.field == "device"
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")
    assert TrainConfig(device="cuda:1").device == "cuda:1"  # syntax only: the config may be for another machine


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_training_moves_model_and_batches(digits):
    model = _vit()
    result = train(model, digits, TrainConfig(steps=20, eval_every=10, batch_size=32, device="cuda"))
    assert result.status == "complete" and next(model.parameters()).device.type == "cuda"
    assert result.val_loss < result.loss_step0


def test_meta_training_unrolls_with_the_trials_adamw_recipe():
    """The hypernet library's unrolled steps default to the trials' AdamW betas and grad clip (the
    application passes them; the defaults must not drift from what trials run)."""
    from hypernet import MetaTrainConfig
    from nas.train_loop import ADAM_BETAS

    assert MetaTrainConfig().unroll_betas == ADAM_BETAS
    assert MetaTrainConfig().unroll_grad_clip == TrainConfig().grad_clip
