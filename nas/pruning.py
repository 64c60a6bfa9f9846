"""Pruning that compares like with like: a trial is judged only against trials that started the
same way (hypernet warm start vs random-init control).

Why: a median made of warm trials, which start far lower, prunes random-init controls early, and the
study then compares many warm trials with the few controls that survived (a biased measurement of
what the hypernet is worth).
"""
from __future__ import annotations

from typing import Any

import optuna
from optuna.pruners import BasePruner, HyperbandPruner
from optuna.trial import FrozenTrial

from nas import attrs


class SameInitPruner(BasePruner):
    """Wraps a percentile pruner (median): the percentile is taken over trials of the trial's own
    init strategy (`init` attr). Hyperband's brackets read the storage directly, so under Hyperband
    controls are not pruned at all and warm trials are pruned as Hyperband decides."""

    def __init__(self, base: BasePruner) -> None:
        self.base = base

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        if isinstance(self.base, HyperbandPruner):
            return False if trial.user_attrs.get(attrs.WARM_START) is False else self.base.prune(study, trial)
        return self.base.prune(_SameInit(study, init_of(trial)), trial)  # type: ignore[arg-type]


def init_of(trial: FrozenTrial) -> Any:
    """The trial's init strategy (`init` attr), or for trials written before it, whether it was warm."""
    return trial.user_attrs.get(attrs.INIT, trial.user_attrs.get(attrs.WARM_START))


class _SameInit:
    """A read-only view of a study whose trials are those of one init strategy."""

    def __init__(self, study: optuna.Study, init: Any) -> None:
        self._study, self._init = study, init

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[FrozenTrial]:
        return [t for t in self._study.get_trials(deepcopy=deepcopy, states=states) if init_of(t) == self._init]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)


__all__ = ["SameInitPruner", "init_of"]
