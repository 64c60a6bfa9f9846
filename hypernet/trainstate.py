"""Meta-training state on disk, so a killed run resumes bit-for-bit (on CPU).

Beside a hypernet checkpoint `X.safetensors` lives `X.trainstate.safetensors`: hypernet weights,
AdamW moments, the step, the loss history and every RNG state (Python `random` for architectures,
the data `torch.Generator`, torch's global RNG). One file, so a crash can never pair weights of
step k with moments of step k-1; safetensors tensors + JSON metadata, nothing is pickled.
"""
from __future__ import annotations

import json
import random
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from search_spaces import ConfigError
from search_spaces.files import atomic_write_bytes

if TYPE_CHECKING:
    from .meta_config import MetaTrainConfig

TRAINSTATE_FORMAT = "logah-nas/meta-train-state/v1"
# Changing one of these between a crash and the restart would silently change the run.
RESUME_MUST_MATCH = ("meta_batch", "lr", "weight_decay", "warmup_steps", "grad_clip", "param_norm_reg", "lookahead",
                     "unroll_steps", "unroll_lr", "input_noise", "strength", "batch_size", "seed")


def trainstate_path(checkpoint_path: str | Path) -> Path:
    """Where the optimizer/RNG state that goes with a hypernet checkpoint lives."""
    p = Path(checkpoint_path)
    return p.with_name(p.name.removesuffix(".safetensors") + ".trainstate.safetensors")


def save_trainstate(checkpoint_path: str | Path, hn: nn.Module, optimizer: torch.optim.Optimizer, arch_rng: random.Random,
          data_gen: torch.Generator, cfg: MetaTrainConfig, step: int, losses: list[float],
          extra_meta: dict[str, Any] | None, device: torch.device, must_match: dict[str, Any]) -> None:
    from safetensors.torch import save

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


def load_trainstate(path: Path, hn: nn.Module, optimizer: torch.optim.Optimizer, arch_rng: random.Random,
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
    pairs = [(name, getattr(cfg, name), saved.get(name, type(cfg).__dataclass_fields__[name].default))
             for name in RESUME_MUST_MATCH]
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


__all__ = ["TRAINSTATE_FORMAT", "load_trainstate", "save_trainstate", "trainstate_path"]
