"""The training loop every trial runs: AdamW, linear warmup + cosine decay, grad clipping,
evaluation at step 0 (the warm-start quality) and every `eval_every` steps.

Kept deliberately small and deterministic (seeded batch generator, forked RNG for dropout) so
warm-started and random-init trials differ only in their initial parameters.
"""
from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from search_spaces import ConfigError
from search_spaces.validate import require_positive_int, require_range
from search_spaces.device import DEVICE_CHOICES, parse_device, resolve_device

Report = Callable[[int, dict], None]
MIN_LR_RATIO = 0.1  # cosine decays to 10% of the peak, as in nanoGPT
ADAM_BETAS = (0.9, 0.95)  # the trials' AdamW (nanoGPT's); meta-training's unrolled steps use the same


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 200
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 10
    grad_clip: float | None = 1.0
    eval_every: int = 50
    eval_batches: int = 4
    # Val batches' size (None: batch_size). A study sets it for all trials, so trials with different
    # training batch sizes are scored on the same val examples and their metrics compare.
    eval_batch_size: int | None = None
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_every", "eval_batches"):
            require_positive_int(name, getattr(self, name))
        if self.eval_batch_size is not None:
            require_positive_int("eval_batch_size", self.eval_batch_size)
        require_range("lr", self.lr, 0.0, 1.0, lo_open=True)
        require_range("weight_decay", self.weight_decay, 0.0, 1.0)
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ConfigError("warmup_steps", self.warmup_steps, "an integer >= 0")
        if self.grad_clip is not None:
            require_range("grad_clip", self.grad_clip, 0.0, math.inf, lo_open=True)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError("seed", self.seed, "an integer")
        if not isinstance(self.device, str):
            raise ConfigError("device", self.device, DEVICE_CHOICES)
        parse_device(self.device)

    def lr_at(self, step: int) -> float:
        """Learning rate for update `step` (0-based): linear warmup, then cosine to MIN_LR_RATIO * lr."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / (self.warmup_steps + 1)
        progress = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        min_lr = MIN_LR_RATIO * self.lr
        return min_lr + 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))) * (self.lr - min_lr)


@dataclass
class TrainResult:
    status: str  # "complete" | "diverged"
    reason: str
    history: list[dict[str, float]] = field(default_factory=list)  # one metrics dict per eval, with "step"
    val_loss: float = math.nan  # at the last eval; NaN when diverged
    loss_step0: float = math.nan  # val loss before any update: how good the initial (predicted) parameters are
    seconds: float = 0.0
    steps: int = 0  # updates done

    @property
    def metrics(self) -> dict[str, float]:
        """The last eval's metrics (empty if none ran)."""
        return dict(self.history[-1]) if self.history else {}


def _optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """Decay only matrices (>= 2-D: linear weights, embeddings, pos/cls tables), as nanoGPT does;
    biases and LayerNorm scales are not decayed."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=ADAM_BETAS, fused=device.type == "cuda")


def _check_compatible(model: nn.Module, dataset) -> int | None:
    """The context to cut text into (the model's), and a ConfigError if model and data disagree."""
    config = getattr(model, "config", None)
    space = getattr(config, "space", None)
    expected = {"vit": "image", "gpt2": "text"}.get(space)
    if expected is not None and expected != dataset.kind:
        raise ConfigError("data", dataset.name, f"a dataset of kind '{expected}' for a {space} model")
    if dataset.kind == "text":
        return getattr(config, "context", None)
    return None


@torch.no_grad()
def evaluate(model: nn.Module, dataset, *, batch_size: int, batches: int | None, context: int | None = None,
             device: torch.device | str = "cpu", autocast=nullcontext, split: str = "val") -> dict[str, float]:
    """Mean loss over the same `batches` deterministic batches of `split` for every model (weighted
    by examples; `batches=None`: the whole split), plus accuracy for images. Keys are
    `<split>_loss` / `<split>_accuracy`: studies select on val, exports report test."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    for x, y in dataset.val_batches(batch_size, context=context, limit=batches, split=split):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast():
            logits, loss = model(x, y)
        loss_sum += loss.float().item() * len(y)
        count += len(y)
        if dataset.kind == "image":
            correct += int((logits.argmax(-1) == y).sum())
    model.train(was_training)
    metrics = {f"{split}_loss": loss_sum / max(1, count)}
    if dataset.kind == "image":
        metrics[f"{split}_accuracy"] = correct / max(1, count)
    return metrics


def _autocast_for(device: torch.device):
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext  # fp32 on CPU: no AMP


def train(model: nn.Module, dataset, cfg: TrainConfig, *, report: Report | None = None) -> TrainResult:
    """Train `model` in place on `dataset` (moved to `cfg.device`) and return its eval history.

    `report(step, metrics)` is called after every eval, step 0 included; it may raise
    `optuna.TrialPruned`, which propagates. A non-finite loss ends training with status
    "diverged" instead of an exception, so a study records it and moves on.
    """
    start = time.perf_counter()
    device = resolve_device(cfg.device)
    context = _check_compatible(model, dataset)
    model.to(device)
    autocast = _autocast_for(device)
    generator = torch.Generator().manual_seed(cfg.seed)  # batches: CPU generator, same on every device
    result = TrainResult(status="complete", reason="")
    fork_devices = [device] if device.type == "cuda" else []

    def diverged(step: int, what: str) -> TrainResult:
        result.status, result.reason, result.val_loss = "diverged", f"non-finite {what} at step {step}", math.nan
        result.seconds = time.perf_counter() - start
        return result

    def run_eval(step: int, train_loss: float | None) -> bool:
        metrics = evaluate(model, dataset, batch_size=cfg.eval_batch_size or cfg.batch_size, batches=cfg.eval_batches,
                           context=context, device=device, autocast=autocast)
        if train_loss is not None:
            metrics["train_loss"] = train_loss
        result.history.append({"step": step, **metrics})
        if step == 0:
            result.loss_step0 = metrics["val_loss"]
        if not math.isfinite(metrics["val_loss"]):
            return False
        result.val_loss = metrics["val_loss"]
        if report is not None:
            report(step, dict(metrics))
        return True

    with torch.random.fork_rng(devices=fork_devices):  # dropout is seeded without touching the caller's RNG
        torch.manual_seed(cfg.seed)
        model.train()
        if not run_eval(0, None):
            return diverged(0, "val loss")
        optimizer = _optimizer(model, cfg, device)
        params = [p for g in optimizer.param_groups for p in g["params"]]
        running, n_running = 0.0, 0
        for step in range(cfg.steps):
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr_at(step)
            x, y = dataset.batch("train", cfg.batch_size, generator, context=context)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with autocast():
                _, loss = model(x, y)
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                return diverged(step, "loss")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip is not None:
                norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                if not torch.isfinite(norm):
                    return diverged(step, "gradient norm")
            optimizer.step()
            result.steps = step + 1
            running, n_running = running + loss_value, n_running + 1
            done = step + 1
            if done % cfg.eval_every == 0 or done == cfg.steps:
                if not run_eval(done, running / n_running):
                    return diverged(done, "val loss")
                running, n_running = 0.0, 0
    result.seconds = time.perf_counter() - start
    return result
