"""Hypernet-screened startup trials: the study's first architectures are the best of many
candidates, ranked by the val loss of their *predicted* parameters (no training).

Why: a sampler's startup trials are random architectures, and a small study spends a large share
of its budget on them. The hypernet scores an architecture for the price of one prediction and a
few val batches (GHN-style zero-cost ranking). Measured (`bench/screen_quality.py`): Spearman 0.54
between that score and the val loss after 150 warm-started training steps on 32 ViTs (GPT-2: 0.84
on 16, 100 steps); the 4 best-scored ViTs ended at 0.154 on average against 0.288 for 4 random ones.
16 candidates (the default) get most of that: in a one-off resampling of 35 scored ViTs, the best 4
of 16 ended at 0.174 on average, of 32 at 0.158, of 4 (no screening) at 0.291.

Only the architecture is fixed (`enqueue_trial` with the space's params); the training
hyperparameters are still drawn by the sampler. Screening happens once, when a study with warm
trials is created; the enqueued trials carry the score as user attr `screen_loss`.
"""
from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna

from nas import attrs

if TYPE_CHECKING:
    from search_spaces import ModelConfig
# Kept import-light (torch and the models load inside the functions): the dashboard reads
# `describe_screening`.

_log = logging.getLogger(__name__)



@dataclass(frozen=True)
class Scored:
    config: ModelConfig
    loss: float  # val loss of the predicted parameters


def candidate_architectures(space, n: int, *, seed: int, max_params: int) -> list[ModelConfig]:
    """Up to `n` distinct architectures drawn from `space` (seeded), none above `max_params`."""
    from nas.trial_recipe import count_params

    rng, seen, out = random.Random(seed), set(), []
    for _ in range(50 * n):  # a space with fewer than n small architectures gives fewer
        if len(out) == n:
            break
        config = space.sample(rng)
        if config in seen:
            continue
        seen.add(config)  # counted once, kept or not
        if count_params(config) <= max_params:
            out.append(config)
    return out


def score_architectures(hn, configs: list[ModelConfig], dataset, *, batch_size: int, batches: int,
                        init_seed: int = 0) -> list[Scored]:
    """Each config's predicted-parameter val loss, best first (ties keep the input order)."""
    from nas.hypernets import predicted_val_loss

    scored = [Scored(c, predicted_val_loss(hn, c, dataset, init_seed=init_seed, batch_size=batch_size,
                                           batches=batches)) for c in configs]
    return sorted(scored, key=lambda s: s.loss)


def pick(scored: list[Scored], top: int, how: str = "best") -> list[Scored]:
    """The `top` startup architectures from `scored` (best first), best first.

    `best`: the best-scored of all. Predicted loss favours big models, and a big model takes longer to
    train, so `best_per_size` keeps the sizes a random startup would draw: the candidates, ordered by
    parameter count, are cut into `top` strata of (nearly) equal count and the best of each is taken."""
    if how == "best" or len(scored) <= top:
        return scored[:top]
    from nas.trial_recipe import count_params

    by_size = sorted(scored, key=lambda s: count_params(s.config))  # stable: equal sizes keep score order
    bounds = [round(i * len(by_size) / top) for i in range(top + 1)]
    chosen = [min(by_size[a:b], key=lambda s: s.loss) for a, b in zip(bounds, bounds[1:])]
    return sorted(chosen, key=lambda s: s.loss)


def enqueue_screened(study: optuna.Study, hn, space, dataset, cfg) -> list[Scored]:
    """Enqueue the `study.n_startup_trials` (at most `n_trials`) best of `hypernet.screen_candidates`
    architectures (`pick` by `hypernet.screen_pick`).

    Does nothing when screening is off (0 candidates), when the study has only control trials
    (`control_fraction` 1: a random-init baseline must not profit from the hypernet), when it
    already has trials, or when it was screened before (a resumed or joined study). Two `search`
    commands creating the same study at the same instant may both enqueue: more screened trials.
    """
    from nas.trial_recipe import eval_batch_size

    n, top = cfg.hypernet.screen_candidates, min(cfg.study.n_startup_trials, cfg.n_trials)
    if n == 0 or top == 0 or cfg.study.control_fraction >= 1.0 or attrs.STUDY_SCREENED in study.user_attrs \
            or study.get_trials(deepcopy=False):  # last: on a resumed study this reads every trial
        return []
    t0 = time.perf_counter()
    configs = candidate_architectures(space, n, seed=cfg.seed, max_params=cfg.study.max_params)
    best = pick(score_architectures(hn, configs, dataset, batch_size=eval_batch_size(cfg.study),
                                    batches=cfg.study.eval_batches), top, cfg.hypernet.screen_pick)
    for s in best:
        study.enqueue_trial(space.params_of(s.config), user_attrs={attrs.SCREEN_LOSS: s.loss})
    info = {"candidates": len(configs), "enqueued": len(best), "seconds": time.perf_counter() - t0,
            "losses": [s.loss for s in best], "pick": cfg.hypernet.screen_pick}
    study.set_user_attr(attrs.STUDY_SCREENED, info)
    if best:
        _log.info("%s: %s", study.study_name, describe_screening({attrs.STUDY_SCREENED: info}))
    return best


def describe_screening(study_attrs: dict[str, Any]) -> str | None:
    """One line on what screening enqueued (study attr `screened`), or None if it enqueued nothing."""
    info = study_attrs.get(attrs.STUDY_SCREENED)
    if not isinstance(info, dict) or not info.get("enqueued"):
        return None
    losses = [x for x in info.get("losses", []) if isinstance(x, (int, float))]
    span = f", predicted val loss {min(losses):.3f}-{max(losses):.3f}" if losses else ""
    which = (f"the best of each of {info['enqueued']} size strata" if info.get("pick") == "best_per_size"
             else f"the best {info['enqueued']}")
    return (f"startup trials: {which} of {info.get('candidates', '?')} architectures scored by "
            f"hypernet v0 before any training{span}, {float(info.get('seconds', 0.0)):.1f} s "
            f"(trial attr {attrs.SCREEN_LOSS})")


__all__ = ["Scored", "candidate_architectures", "describe_screening",
           "enqueue_screened", "pick", "score_architectures"]
