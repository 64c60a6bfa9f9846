"""Meta-training: teach the hypernet to predict parameters that already have a low task loss.

One step (LOGAH_NOTES §4): sample `meta_batch` architectures and one data batch, predict every
parameter of every architecture *with* gradients, run each model functionally on the batch
(`torch.func.functional_call`, so the models own no trainable state), and backpropagate

    loss = mean_over_models( CE + gamma * sum_p ||p||_F  [+ extra_loss(config, params)] )

into the hypernet only. AdamW with linear warmup + cosine decay and gradient clipping.
Residual hypernets (the default) add their correction to a random init W0: the anchored init
(hypernet/anchor.py, one draw shared by all architectures, so the correction can rely on the
features W0 computes), or for fresh-W0 hypernets (`anchor_seed=None`) a new draw for every
architecture at every step from torch's global RNG (seeded with `cfg.seed`, saved in the train
state). `init_for` overrides W0 per architecture.

Resumable: every `checkpoint_every` steps two files are written atomically,
- `checkpoint_path` itself via `save_checkpoint` (a normal hypernet checkpoint anyone can load), and
- `<checkpoint_path>.trainstate.safetensors`: hypernet weights, AdamW moments, the step, the
  loss history and every RNG state (Python `random` for architectures, the data `torch.Generator`,
  torch's global RNG). One file, so a crash can never pair weights of step k with moments of step k-1.
A run that is killed and restarted with the same config continues bit-for-bit like one that never stopped
(on CPU; CUDA kernels are not all deterministic).
"""
from __future__ import annotations

import json
import logging
import math
import random
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from search_spaces import ConfigError, build_model
from search_spaces._errors import require_positive_int, require_range

log = logging.getLogger(__name__)

TRAINSTATE_FORMAT = "logah-nas/meta-train-state/v1"
# Changing one of these between a crash and the restart would silently change the run.
_RESUME_MUST_MATCH = ("meta_batch", "lr", "weight_decay", "warmup_steps", "grad_clip", "param_norm_reg", "lookahead",
                      "unroll_steps", "unroll_lr", "input_noise", "batch_size", "seed")

SampleArch = Callable[[random.Random], Any]
ExtraLoss = Callable[[Any, dict[str, torch.Tensor]], torch.Tensor]
InitFor = Callable[[Any], "dict[str, torch.Tensor] | None"]


@dataclass(frozen=True)
class MetaTrainConfig:
    steps: int = 1000
    meta_batch: int = 1  # architectures per step (paper: m = 1 for ViT, 2 for GPT-2)
    lr: float = 3e-4
    weight_decay: float = 1e-2
    warmup_steps: int = 50
    grad_clip: float = 5.0  # max global grad norm; 0 disables clipping
    param_norm_reg: float = 3e-5  # gamma in gamma * sum ||p||_F
    lookahead: float = 0.0  # rho: also score the model after one Adam-like step of size U(0, rho); 0: off
    unroll_steps: int = 0  # K: also score the model after K real AdamW steps of fine-tuning (first order); 0: off
    unroll_lr: float = 1e-3  # peak lr of those steps, drawn log-uniformly in [lr / sqrt(10), lr * sqrt(10)]
    # std of Gaussian noise added to every meta-training image (normalised units); 0: off; images only.
    # Why: thousands of meta-steps show each image of a small train split hundreds of times, and the
    # predictions (and the fine-tuning that starts from them) then fit the train split better than val.
    input_noise: float = 0.0
    batch_size: int = 32
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 0  # 0: only at the end (when checkpoint_path is given)
    log_every: int = 10

    def __post_init__(self) -> None:
        for name in ("steps", "meta_batch", "batch_size", "log_every"):
            require_positive_int(name, getattr(self, name))
        for name in ("warmup_steps", "checkpoint_every", "seed", "unroll_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(name, value, "an integer >= 0")
        require_range("lr", self.lr, 0.0, 1.0, lo_open=True)
        require_range("weight_decay", self.weight_decay, 0.0, 1.0)
        require_range("grad_clip", self.grad_clip, 0.0, 1e6)
        require_range("param_norm_reg", self.param_norm_reg, 0.0, 1.0)
        require_range("lookahead", self.lookahead, 0.0, 1.0)
        require_range("unroll_lr", self.unroll_lr, 0.0, 0.3, lo_open=True)  # drawn up to x sqrt(10), still < 1
        require_range("input_noise", self.input_noise, 0.0, 10.0)
        if not isinstance(self.device, str) or not self.device:
            raise ConfigError("device", self.device, "'auto', 'cpu', 'cuda' or 'cuda:N'")

    def lr_at(self, step: int) -> float:
        """Learning rate for update number `step` (0-based): linear warmup, then cosine to 0."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@dataclass
class MetaTrainResult:
    steps: int  # total updates done (including those of a resumed run)
    start_step: int  # > 0 when the run resumed from a checkpoint
    losses: list[float] = field(default_factory=list)  # mean task loss (CE) of every step, from step 0
    seconds: float = 0.0  # wall time of this call
    device: str = "cpu"
    checkpoint_path: str | None = None


def trainstate_path(checkpoint_path: str | Path) -> Path:
    """Where the optimizer/RNG state that goes with a hypernet checkpoint lives."""
    p = Path(checkpoint_path)
    return p.with_name(p.name.removesuffix(".safetensors") + ".trainstate.safetensors")


def meta_train(
    hn: nn.Module,
    space: Any,
    dataset: Any,
    cfg: MetaTrainConfig,
    *,
    sample_arch: SampleArch | None = None,
    extra_loss: ExtraLoss | None = None,
    init_for: InitFor | None = None,
    checkpoint_path: str | Path | None = None,
    checkpoint_meta: dict[str, Any] | None = None,
    resume_must_match: dict[str, Any] | None = None,
    resume: bool = True,
    progress: bool = True,
) -> MetaTrainResult:
    """Meta-train `hn` in place on architectures of `space` and batches of `dataset`.

    `sample_arch(rng)` replaces `space.sample(rng)` (e.g. to exclude held-out architectures or to
    replay the trials of a study). `extra_loss(config, params)` is added to each model's loss (the
    study's refit uses it for distillation towards trained weights). `init_for(config)` may return
    the W0 a residual hypernet adds its correction to for that architecture (e.g. a trial's own
    initial weights, so that distilling towards its trained weights learns the training update);
    None, or no `init_for`, draws W0 fresh. With `checkpoint_path` the run
    is checkpointed every `cfg.checkpoint_every` steps and at the end, and, if `resume`, continues
    from an existing train state. `checkpoint_meta` is merged into the checkpoint's metadata.
    `resume_must_match` names what the caller decides outside `cfg` (its data, space, architecture
    sampling): it is stored in the train state, and a resume with other values is a ConfigError.
    The hypernet is left on `cfg.device` in train mode.
    """
    from nas.training import resolve_device  # nas.training imports nothing from hypernet

    if not isinstance(cfg, MetaTrainConfig):
        raise ConfigError("cfg", type(cfg).__name__, "a MetaTrainConfig")
    if cfg.input_noise > 0 and getattr(dataset, "kind", None) != "image":
        raise ConfigError("input_noise", cfg.input_noise, "0 for text data (the noise is added to images)")
    device = resolve_device(cfg.device)
    sample = sample_arch if sample_arch is not None else space.sample
    hn.to(device).train()
    params = [p for p in hn.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the hypernet has no trainable parameters")
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    arch_rng = random.Random(cfg.seed)
    data_gen = torch.Generator().manual_seed(cfg.seed)
    models = _ModelCache(device)
    losses: list[float] = []
    start = 0
    t0 = time.perf_counter()

    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(cfg.seed)  # the caller's global RNG is restored on exit
        state_file = trainstate_path(checkpoint_path) if checkpoint_path is not None else None
        if resume and state_file is not None and state_file.exists():
            start, losses = _load_trainstate(state_file, hn, optimizer, arch_rng, data_gen, cfg, device,
                                             resume_must_match or {})
            log.info("resuming meta-training from step %d (%s)", start, state_file)

        def draw(configs: list) -> tuple[torch.Tensor, torch.Tensor]:  # the next batch for `configs`, on device
            return tuple(t.to(device) for t in _batch(dataset, configs, cfg.batch_size, data_gen, cfg.input_noise))

        bad_in_a_row = 0
        with _progress_bar(start, cfg.steps, progress) as bar:
            for step in range(start, cfg.steps):
                for group in optimizer.param_groups:
                    group["lr"] = cfg.lr_at(step)
                configs = [sample(arch_rng) for _ in range(cfg.meta_batch)]
                x, y = draw(configs)
                objective, task = _objective(hn, models, configs, x, y, cfg, extra_loss, init_for, draw)

                optimizer.zero_grad(set_to_none=True)
                if torch.isfinite(objective):
                    objective.backward()
                    if cfg.grad_clip > 0:
                        nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                    optimizer.step()
                    bad_in_a_row = 0
                else:  # one diverging architecture must not poison the hypernet: skip the update
                    bad_in_a_row += 1
                    log.warning("step %d: non-finite loss for %s, update skipped", step, configs)
                    if bad_in_a_row >= 10:
                        raise FloatingPointError(f"meta-training diverged: 10 non-finite losses in a row "
                                                 f"at step {step}")
                losses.append(task)

                done = step + 1
                bar.update(1)
                if done % cfg.log_every == 0 or done == cfg.steps:
                    recent = losses[-cfg.log_every:]
                    bar.set_postfix(loss=f"{sum(recent) / len(recent):.4f}", lr=f"{cfg.lr_at(step):.2e}")
                    log.info("meta-train step %d/%d loss %.4f", done, cfg.steps, sum(recent) / len(recent))
                if checkpoint_path is not None and (
                    done == cfg.steps or (cfg.checkpoint_every and done % cfg.checkpoint_every == 0)
                ):
                    _save(checkpoint_path, hn, optimizer, arch_rng, data_gen, cfg, done, losses,
                          checkpoint_meta, device, resume_must_match or {})

    return MetaTrainResult(steps=max(start, cfg.steps), start_step=start, losses=losses,
                           seconds=time.perf_counter() - t0, device=str(device),
                           checkpoint_path=str(checkpoint_path) if checkpoint_path is not None else None)


def _objective(hn: nn.Module, models: _ModelCache, configs: list, x: torch.Tensor, y: torch.Tensor,
               cfg: MetaTrainConfig, extra_loss: ExtraLoss | None,
               init_for: InitFor | None, draw: Callable[[list], tuple]) -> tuple[torch.Tensor, float]:
    """mean over models of (CE + gamma * sum ||p||_F + extra); also the plain mean CE, for logging."""
    objective = torch.zeros((), device=x.device)
    task = 0.0
    inits = [init_for(c) for c in configs] if init_for is not None else None
    for config, p in zip(configs, hn.predict_batch(configs, inits=inits)):
        xi, yi = _fit_context(config, x, y)
        _, ce = models.forward(config, p, xi, yi)
        loss = ce + cfg.param_norm_reg * sum(t.norm() for t in p.values())
        if cfg.lookahead > 0:
            loss = loss + _lookahead_loss(models, config, p, ce, xi, yi, cfg.lookahead)
        if cfg.unroll_steps > 0:
            loss = loss + _unrolled_loss(models, config, p, draw, cfg.unroll_steps, cfg.unroll_lr)
        if extra_loss is not None:
            extra = extra_loss(config, p)
            if not isinstance(extra, torch.Tensor) or extra.dim() != 0:
                raise TypeError("extra_loss must return a scalar tensor")
            loss = loss + extra
        objective = objective + loss / len(configs)
        task += float(ce.detach()) / len(configs)
    return objective, task


def _lookahead_loss(models: _ModelCache, config: Any, params: dict[str, torch.Tensor], ce: torch.Tensor,
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


def _unrolled_loss(models: _ModelCache, config: Any, params: dict[str, torch.Tensor],
                   draw: Callable[[list], tuple], steps: int, peak_lr: float) -> torch.Tensor:
    """CE on a fresh batch after `steps` real AdamW steps from the predicted parameters (first order).

    Why: what a trial sees is the loss *while* it is trained with AdamW from the prediction, and a
    prediction in a sharp minimum loses its step-0 gain within a few steps. The steps follow the
    trial's recipe (betas 0.9/0.95, linear warmup, grad clip 1) at a peak lr drawn log-uniformly
    around `peak_lr`; the gradient reaches the hypernet first order, through p + stopgrad(p_K - p).
    """
    from nas.training import ADAM_BETAS, TrainConfig  # the trials' recipe; nas.training imports nothing from hypernet

    names = list(params)
    inner = {k: params[k].detach().clone().requires_grad_(True) for k in names}
    recipe = TrainConfig(steps=steps, warmup_steps=steps, weight_decay=0.0,  # the K steps are all warmup
                         lr=peak_lr * 10 ** float(torch.empty(()).uniform_(-0.5, 0.5)))
    opt = torch.optim.AdamW(list(inner.values()), lr=recipe.lr, betas=ADAM_BETAS, weight_decay=0.0)
    for k in range(steps):
        x, y = _fit_context(config, *draw([config]))
        for group in opt.param_groups:
            group["lr"] = recipe.lr_at(k)
        opt.zero_grad(set_to_none=True)
        models.forward(config, inner, x, y)[1].backward()
        nn.utils.clip_grad_norm_(list(inner.values()), recipe.grad_clip)
        opt.step()
    moved = {k: params[k] + (inner[k].detach() - params[k].detach()) for k in names}
    x, y = _fit_context(config, *draw([config]))
    return models.forward(config, moved, x, y)[1]


def _batch(dataset: Any, configs: list, batch_size: int, gen: torch.Generator, input_noise: float = 0.0):
    """One batch shared by all models of the step; text is drawn at the longest context, images get
    `input_noise` (drawn from `gen`, so a resumed run sees the same noise)."""
    if getattr(dataset, "kind", None) == "text":
        context = max(c.context for c in configs)
        return dataset.batch("train", batch_size, gen, context=context)
    x, y = dataset.batch("train", batch_size, gen)
    if input_noise > 0:
        x = x + input_noise * torch.randn(x.shape, generator=gen, dtype=x.dtype)
    return x, y


def _fit_context(config: Any, x: torch.Tensor, y: torch.Tensor):
    context = getattr(config, "context", None)
    if context is not None and x.dim() == 2 and x.shape[1] > context:
        return x[:, :context], y[:, :context]
    return x, y


class _ModelCache:
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


def _progress_bar(start: int, total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, desc="meta-train", unit="step", disable=not enabled,
                dynamic_ncols=True)


# --- train state (safetensors tensors + JSON metadata; nothing is pickled) -------------------------

def _save(checkpoint_path: str | Path, hn: nn.Module, optimizer: torch.optim.Optimizer, arch_rng: random.Random,
          data_gen: torch.Generator, cfg: MetaTrainConfig, step: int, losses: list[float],
          extra_meta: dict[str, Any] | None, device: torch.device, must_match: dict[str, Any]) -> None:
    from safetensors.torch import save

    from nas.io import atomic_write_bytes

    from .checkpoint import save_checkpoint

    tensors: dict[str, torch.Tensor] = {f"hn.{k}": v.detach().to("cpu").contiguous()
                                         for k, v in hn.state_dict().items()}
    opt = optimizer.state_dict()
    for idx, state in opt["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{key}"] = value.detach().to("cpu").contiguous()
    tensors["rng.data"] = data_gen.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    if device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    version, internal, gauss = arch_rng.getstate()
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in opt["param_groups"]]
    meta = {"format": TRAINSTATE_FORMAT, "step": step, "config": asdict(cfg), "losses": losses,
            "param_groups": groups, "arch_rng": [version, list(internal), gauss], "must_match": must_match}
    # Train state first: if we die between the two writes, the resumable state is the newer one.
    atomic_write_bytes(trainstate_path(checkpoint_path), save(tensors, metadata={"logah_trainstate": json.dumps(meta)}))
    ckpt_meta = dict(extra_meta or {})
    ckpt_meta.update({"meta_train": {"step": step, "steps": cfg.steps, "seed": cfg.seed,
                                     "meta_batch": cfg.meta_batch, "batch_size": cfg.batch_size, "lr": cfg.lr,
                                     "final_loss": (sum(losses[-50:]) / len(losses[-50:])) if losses else None,
                                     "device": str(device)}})
    save_checkpoint(hn, checkpoint_path, ckpt_meta)


def _load_trainstate(path: Path, hn: nn.Module, optimizer: torch.optim.Optimizer, arch_rng: random.Random,
                     data_gen: torch.Generator, cfg: MetaTrainConfig, device: torch.device,
                     must_match: dict[str, Any]):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as f:
        header = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    try:
        meta = json.loads(header["logah_trainstate"])
        if meta.get("format") != TRAINSTATE_FORMAT:
            raise KeyError("format")
    except (KeyError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not a meta-training state file ({TRAINSTATE_FORMAT}); delete it or pass "
                         f"resume=False") from err
    saved, saved_run = meta["config"], meta.get("must_match", {})
    # (name, value now, value the run started with). A state written before a config field existed was
    # written with its default; a caller setting the state does not hold (written before it was stored)
    # is not checked. Caller settings are compared as stored: JSON, so tuples become lists.
    pairs = [(name, getattr(cfg, name), saved.get(name, MetaTrainConfig.__dataclass_fields__[name].default))
             for name in _RESUME_MUST_MATCH]
    pairs += [(name, json.loads(json.dumps(value)), saved_run[name])
              for name, value in must_match.items() if name in saved_run]
    for name, now, was in pairs:
        if was != now:
            raise ConfigError(name, now, f"{was!r}, the value the run in {path} was started with "
                                         "(or pass resume=False to start over)")

    weights = {k[3:]: v for k, v in tensors.items() if k.startswith("hn.")}
    own = hn.state_dict()
    if set(weights) != set(own) or any(weights[k].shape != own[k].shape for k in own):
        raise ValueError(f"{path} holds weights of a different hypernet architecture; pass resume=False")
    hn.load_state_dict(weights)

    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})

    data_gen.set_state(tensors["rng.data"])
    torch.set_rng_state(tensors["rng.torch"])
    if device.type == "cuda" and "rng.cuda" in tensors:
        torch.cuda.set_rng_state(tensors["rng.cuda"], device)
    version, internal, gauss = meta["arch_rng"]
    arch_rng.setstate((version, tuple(internal), gauss))
    return int(meta["step"]), [float(v) for v in meta["losses"]]


__all__ = ["InitFor", "MetaTrainConfig", "MetaTrainResult", "meta_train", "trainstate_path"]
