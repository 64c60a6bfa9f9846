"""Does the closed loop help as the study goes on? The warm-vs-control gain per hypernet version.

Each warm trial records the hypernet version it started from; controls start from random init
whatever the version. So the gain of version v is what its warm trials did against the controls of
the same period (trial numbers from its first to its last warm trial): the sampler proposes better
architectures as the study goes on, and a late version compared with every control would be
credited with the sampler's progress. Both sides: the median final val loss (completed trials) and
the mean step-0 loss (every trial that trained). A version no trial used yet (or one not promoted)
has no warm trials and no gain; one without a control in its period has none either. The
dashboard, `search`'s summary and `bench/closed_loop.py` read the same rows.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from optuna.trial import FrozenTrial, TrialState

from nas import attrs
from nas.versions import HypernetVersion


@dataclass(frozen=True)
class VersionGain:
    version: int
    promoted: bool
    refit_seconds: float  # the refit that made it (version 0: setting it up)
    note: str  # where it came from and why it was (not) promoted
    warm_trials: int  # completed or pruned warm trials that started from it
    warm_final: float  # median final val loss of its completed warm trials (nan: none)
    warm_step0: float  # mean step-0 val loss of its warm trials (nan: none)
    control_final: float  # the same for the control trials of its period
    control_step0: float
    controls: int = 0  # control trials (completed or pruned) in its period

    @property
    def gain(self) -> float:
        """control_final - warm_final: > 0 when this version's warm starts ended lower (nan: unknown)."""
        return self.control_final - self.warm_final

    @property
    def step0_gain(self) -> float:
        return self.control_step0 - self.warm_step0


def _summary(trials: Sequence[FrozenTrial]) -> tuple[float, float]:
    finals = [t.value for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    step0 = [t.user_attrs[attrs.LOSS_STEP0] for t in trials if attrs.LOSS_STEP0 in t.user_attrs
             and math.isfinite(t.user_attrs[attrs.LOSS_STEP0])]
    return (statistics.median(finals) if finals else math.nan, statistics.fmean(step0) if step0 else math.nan)


def gain_per_version(trials: Iterable[FrozenTrial], versions: Sequence[HypernetVersion]) -> list[VersionGain]:
    """One row per hypernet version, oldest first."""
    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    controls = [t for t in done if t.user_attrs.get(attrs.WARM_START) is False]
    rows = []
    for v in versions:
        warm = [t for t in done
                if t.user_attrs.get(attrs.WARM_START) and t.user_attrs.get(attrs.HYPERNET_VERSION) == v.version]
        first, last = (min(t.number for t in warm), max(t.number for t in warm)) if warm else (0, -1)
        peers = [t for t in controls if first <= t.number <= last]
        warm_final, warm_step0 = _summary(warm)
        control_final, control_step0 = _summary(peers)
        rows.append(VersionGain(v.version, v.promoted, v.seconds, v.note, len(warm), warm_final, warm_step0,
                                control_final, control_step0, len(peers)))
    return rows


__all__ = ["VersionGain", "gain_per_version"]
