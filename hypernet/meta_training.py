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

The library knows nothing of data sets or studies: batches come from any `BatchSource` (the
application passes its data set), architectures from `sample_arch`, the device from the caller's spec.

Resumable: every `checkpoint_every` steps `checkpoint_path` (a normal hypernet checkpoint) and its
train state (hypernet.trainstate) are written atomically. A run that is killed and restarted with the
same config continues bit-for-bit like one that never stopped (on CPU; CUDA kernels are not all
deterministic).
"""
from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from search_spaces import ConfigError
from search_spaces.device import resolve_device

from .meta_config import BatchSource, ExtraLoss, InitFor, MetaTrainConfig, SampleArch
from .meta_losses import ModelCache, meta_objective
from .trainstate import load_trainstate, save_trainstate, trainstate_path

log = logging.getLogger(__name__)


@dataclass
class MetaTrainResult:
    steps: int  # total updates done (including those of a resumed run)
    start_step: int  # > 0 when the run resumed from a checkpoint
    losses: list[float] = field(default_factory=list)  # mean task loss (CE) of every step, from step 0
    seconds: float = 0.0  # wall time of this call
    device: str = "cpu"
    checkpoint_path: str | None = None


def meta_train(
    hn: nn.Module,
    space: Any,
    dataset: BatchSource,
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
    models = ModelCache(device)
    losses: list[float] = []
    start = 0
    t0 = time.perf_counter()

    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(cfg.seed)  # the caller's global RNG is restored on exit
        state_file = trainstate_path(checkpoint_path) if checkpoint_path is not None else None
        if resume and state_file is not None and state_file.exists():
            start, losses = load_trainstate(state_file, hn, optimizer, arch_rng, data_gen, cfg, device,
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
                objective, task = meta_objective(hn, models, configs, x, y, cfg, extra_loss, init_for, draw)

                optimizer.zero_grad(set_to_none=True)
                if torch.isfinite(objective):
                    objective.backward()
                    if cfg.grad_clip > 0:
                        nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                    optimizer.step()
                    if hasattr(hn, "record_coverage"):  # what this step trained (LoGAH.record_coverage)
                        hn.record_coverage(configs)
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
                    save_trainstate(checkpoint_path, hn, optimizer, arch_rng, data_gen, cfg, done, losses,
                          checkpoint_meta, device, resume_must_match or {})

    return MetaTrainResult(steps=max(start, cfg.steps), start_step=start, losses=losses,
                           seconds=time.perf_counter() - t0, device=str(device),
                           checkpoint_path=str(checkpoint_path) if checkpoint_path is not None else None)


def _batch(dataset: BatchSource, configs: list, batch_size: int, gen: torch.Generator, input_noise: float = 0.0):
    """One batch shared by all models of the step; text is drawn at the longest context, images get
    `input_noise` (drawn from `gen`, so a resumed run sees the same noise)."""
    if getattr(dataset, "kind", None) == "text":
        context = max(c.context for c in configs)
        return dataset.batch("train", batch_size, gen, context=context)
    x, y = dataset.batch("train", batch_size, gen)
    if input_noise > 0:
        x = x + input_noise * torch.randn(x.shape, generator=gen, dtype=x.dtype)
    return x, y


def _progress_bar(start: int, total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, desc="meta-train", unit="step", disable=not enabled,
                dynamic_ncols=True)


__all__ = ["BatchSource", "ExtraLoss", "InitFor", "MetaTrainConfig", "MetaTrainResult", "SampleArch", "meta_train",
           "trainstate_path"]
