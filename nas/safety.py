"""The safety net of warm trials: a prediction that scores worse than the init it refines is
blended back toward that init, or replaced by it, before the trial trains.

Why: a hypernet (a fresh refit, an unseen shape) can predict parameters that start a trial above
random init, and a warm start settles in the basin it starts in; a few val batches before training
catch that for the price of a handful of forward passes.

What "the init" is: the `strength` -> 0 limit of `LoGAH.apply`, i.e. exactly what the blend
init + s * (prediction - init) converges to, so every blend tried lies on the segment between the
two models compared. For anchored hypernets (the default) that is the anchored W0 for every >= 2-D
parameter and the standard vector inits (LayerNorm gain 1, shifts and biases 0); for fresh-W0 and
pure low-rank hypernets it is the trial's seeded model as built, i.e. the control arm's `random`
start (`RandomInit`). It is not the control's model for anchored hypernets: the control draws its
own N(0, 0.02) weights, which no blend moves toward.

Import-light (torch and the models load inside the functions): the dashboard and the CLI use
`describe_safety`.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from nas import attrs

if TYPE_CHECKING:
    import torch

    from search_spaces import ModelConfig

KEPT, BLENDED, REPLACED = "kept", "blended", "replaced"
OUTCOMES = (KEPT, BLENDED, REPLACED)
FLOOR = 1 / 16  # the weakest blend tried: below it a blend is the init in all but name


def init_model(hn: Any, config: ModelConfig, init_seed: int) -> torch.nn.Module:
    """The model a warm trial's blend converges to as strength -> 0 (see the module docstring)."""
    import torch

    from search_spaces import build_model

    model = build_model(config, seed=init_seed)
    if hn.config.anchored:
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, w0 in hn.base_init(config).items():
                params[name].copy_(w0)
    return model


def blend_strengths(strength: float) -> list[float]:
    """The weaker blends tried, strongest first: strength halved until below `FLOOR`."""
    out, s = [], strength / 2
    while s >= FLOOR:
        out.append(s)
        s /= 2
    return out


def guard(model: torch.nn.Module, hn: Any, strength: float, *, init_seed: int,
          score: Callable[[torch.nn.Module], float]) -> dict[str, Any]:
    """Check the prediction `model` holds (`hn.apply(model, strength)` on the trial's seeded model)
    against its init; on a worse score write the first blend that beats the init, else the init,
    into `model`. Returns the trial's `safety` attr.

    `score(model)` is a val loss (lower is better; the same batches for every call). A tie keeps
    the prediction: an untrained hypernet predicts exactly the init. The init is scored once; each
    blend is a fresh `hn.apply` at the lower strength onto the restored init, i.e. exactly the
    start a trial with that `hypernet.warm_strength` gets.
    """
    import torch

    device = next(model.parameters()).device
    init = init_model(hn, model.config, init_seed).to(device)
    init_loss, predicted_loss = float(score(init)), float(score(model))

    def record(outcome: str, used: float, loss: float) -> dict[str, Any]:  # NaN (a broken hypernet) -> None
        losses = {"init_loss": init_loss, "predicted_loss": predicted_loss, "loss": loss}
        return {"outcome": outcome, "strength": used, **{k: v if math.isfinite(v) else None for k, v in losses.items()}}

    if predicted_loss <= init_loss:
        return record(KEPT, strength, predicted_loss)
    params, start = dict(model.named_parameters()), dict(init.named_parameters())
    blends = blend_strengths(strength) if hn.config.residual else []  # pure low-rank: nothing to blend with
    with torch.no_grad():
        for s in blends:
            for name, p in params.items():
                p.copy_(start[name])
            loss = float(score(hn.apply(model, strength=s)))
            if loss < init_loss:
                return record(BLENDED, s, loss)
        for name, p in params.items():
            p.copy_(start[name])
    return record(REPLACED, 0.0, init_loss)


def outcome_of(user_attrs: Mapping[str, Any]) -> str | None:
    """The safety net's outcome recorded on a trial (None: not checked: a control, or the net off)."""
    record = user_attrs.get(attrs.SAFETY)
    outcome = record.get("outcome") if isinstance(record, Mapping) else None
    return outcome if outcome in OUTCOMES else None


def describe_safety(outcomes: Iterable[str | None]) -> str | None:
    """One line counting the outcomes (`outcome_of` per trial) of a study's checked warm trials,
    e.g. "safety net: 3 blended, 1 replaced of 48 warm trials"; None when none was checked."""
    checked = [o for o in outcomes if o in OUTCOMES]
    if not checked:
        return None
    return (f"safety net: {checked.count(BLENDED)} blended, {checked.count(REPLACED)} replaced of "
            f"{len(checked)} warm trials")


__all__ = ["BLENDED", "FLOOR", "KEPT", "OUTCOMES", "REPLACED", "blend_strengths", "describe_safety", "guard",
           "init_model", "outcome_of"]
