"""What meta-training minimises for one step: the task loss of each predicted model, plus optional
terms that score the prediction *while it is trained* (lookahead, unrolled AdamW steps).

Models own no trainable state: each runs its predicted parameters through
`torch.func.functional_call` (`ModelCache`), so gradients reach the hypernet only.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from search_spaces import build_model

if TYPE_CHECKING:
    from .meta_config import ExtraLoss, InitFor, MetaTrainConfig


def meta_objective(hn: nn.Module, models: ModelCache, configs: list, x: torch.Tensor, y: torch.Tensor,
                   cfg: MetaTrainConfig, extra_loss: ExtraLoss | None,
                   init_for: InitFor | None, draw: Callable[[list], tuple]) -> tuple[torch.Tensor, float]:
    """mean over models of (CE + gamma * sum ||p||_F + extra); also the plain mean CE, for logging."""
    objective = torch.zeros((), device=x.device)
    task = 0.0
    inits = [init_for(c) for c in configs] if init_for is not None else None
    for config, p in zip(configs, hn.predict_batch(configs, inits=inits, strength=cfg.strength)):
        xi, yi = fit_context(config, x, y)
        _, ce = models.forward(config, p, xi, yi)
        loss = ce + cfg.param_norm_reg * sum(t.norm() for t in p.values())
        if cfg.lookahead > 0:
            loss = loss + lookahead_loss(models, config, p, ce, xi, yi, cfg.lookahead)
        if cfg.unroll_steps > 0:
            loss = loss + unrolled_loss(models, config, p, draw, cfg.unroll_steps, cfg.unroll_lr,
                                        betas=cfg.unroll_betas, grad_clip=cfg.unroll_grad_clip)
        if extra_loss is not None:
            extra = extra_loss(config, p)
            if not isinstance(extra, torch.Tensor) or extra.dim() != 0:
                raise TypeError("extra_loss must return a scalar tensor")
            loss = loss + extra
        objective = objective + loss / len(configs)
        task += float(ce.detach()) / len(configs)
    return objective, task


def lookahead_loss(models: ModelCache, config: Any, params: dict[str, torch.Tensor], ce: torch.Tensor,
                   x: torch.Tensor, y: torch.Tensor, rho: float) -> torch.Tensor:
    """CE after one Adam-like step from the predicted parameters: p - s * sign(dCE/dp), s ~ U(0, rho).

    Why: the step-0 loss alone rewards predictions that sit in sharp minima, where the first
    optimiser steps of the trial throw the gain away (measured: a ViT warm start at 0.88 went to 1.6
    after 10 AdamW steps). Adam's first steps move every entry by ~lr in the sign direction of its
    gradient, so scoring the model after such a step (first order: the step direction is a constant)
    teaches the hypernet predictions that stay good while they are trained.
    """
    names = list(params)
    grads = torch.autograd.grad(ce, [params[k] for k in names], retain_graph=True, allow_unused=True)
    step = float(torch.rand(())) * rho
    moved = {k: params[k] if g is None else params[k] - step * g.sign() for k, g in zip(names, grads)}
    return models.forward(config, moved, x, y)[1]


def unrolled_loss(models: ModelCache, config: Any, params: dict[str, torch.Tensor],
                  draw: Callable[[list], tuple], steps: int, peak_lr: float, *,
                  betas: tuple[float, float], grad_clip: float) -> torch.Tensor:
    """CE on a fresh batch after `steps` real AdamW steps from the predicted parameters (first order).

    Why: what a trial sees is the loss *while* it is trained with AdamW from the prediction, and a
    prediction in a sharp minimum loses its step-0 gain within a few steps. The steps follow the
    trials' recipe (the caller passes their `betas` and `grad_clip`; linear warmup) at a peak lr drawn
    log-uniformly around `peak_lr`; the gradient reaches the hypernet first order, through
    p + stopgrad(p_K - p).
    """
    names = list(params)
    inner = {k: params[k].detach().clone().requires_grad_(True) for k in names}
    lr = peak_lr * 10 ** float(torch.empty(()).uniform_(-0.5, 0.5))
    opt = torch.optim.AdamW(list(inner.values()), lr=lr, betas=betas, weight_decay=0.0)
    for k in range(steps):
        x, y = fit_context(config, *draw([config]))
        for group in opt.param_groups:
            group["lr"] = lr * (k + 1) / (steps + 1)  # the K steps are all linear warmup, as a trial's first
        opt.zero_grad(set_to_none=True)
        models.forward(config, inner, x, y)[1].backward()
        nn.utils.clip_grad_norm_(list(inner.values()), grad_clip)
        opt.step()
    moved = {k: params[k] + (inner[k].detach() - params[k].detach()) for k in names}
    x, y = fit_context(config, *draw([config]))
    return models.forward(config, moved, x, y)[1]


def fit_context(config: Any, x: torch.Tensor, y: torch.Tensor):
    context = getattr(config, "context", None)
    if context is not None and x.dim() == 2 and x.shape[1] > context:
        return x[:, :context], y[:, :context]
    return x, y


class ModelCache:
    """Parameter-free models to run predictions through with `functional_call`.

    Models are built on the `meta` device (no allocation, no init cost); buffers (only the fixed
    sin-cos table of a ViT without learned positions) come from one real build, moved to `device`.
    """

    def __init__(self, device: torch.device, size: int = 64) -> None:
        self.device = device
        self.size = size
        self._cache: OrderedDict[Any, tuple[nn.Module, dict[str, torch.Tensor]]] = OrderedDict()

    def get(self, config: Any) -> tuple[nn.Module, dict[str, torch.Tensor]]:
        if config in self._cache:
            self._cache.move_to_end(config)
            return self._cache[config]
        with torch.device("meta"):
            model = build_model(config)
        buffers: dict[str, torch.Tensor] = {}
        if any(True for _ in model.buffers()):
            real = build_model(config)
            buffers = {k: b.to(self.device) for k, b in real.named_buffers()}
        model.train()
        self._cache[config] = (model, buffers)
        if len(self._cache) > self.size:
            self._cache.popitem(last=False)
        return model, buffers

    def forward(self, config: Any, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor):
        from .model import functional_forward

        model, buffers = self.get(config)
        return functional_forward(model, {**params, **buffers}, x, y)


__all__ = ["ModelCache", "fit_context", "lookahead_loss", "meta_objective", "unrolled_loss"]
