"""The refitter: a process of its own that refits a study's hypernet while workers train trials.

A refit inside a worker's trial callback (`hypernet.refit_in=worker`) pauses that worker's
trials, and a GPU helps only if that worker has one. A refitter
(`logah-nas refitter`, on any machine that reaches the storage and artifacts; `device=cuda` on a
GPU box) polls the study, refits when due (`nas.refit.refit_due`) under the study's refit lease and
publishes the version; workers pick up the newest promoted version at their next trial start.
Several refitters may watch one study: the lease lets one refit at a time, and a refitter killed
mid-refit loses only that refit (its lease expires after `hypernet.lease_ttl_s` and another one
redoes it; versions are written atomically). `logah-nas search` starts one beside its workers
(`hypernet.refit_in=refitter`, the default) and restarts it if it dies.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from nas.lease import hold_lease
from nas.refit import lease_name, refit, refit_due
from nas.storage import is_transient

if TYPE_CHECKING:
    from nas.session import Session
    from nas.versions import HypernetVersion

_log = logging.getLogger(__name__)


@dataclass
class RefitterReport:
    """What one refitter did: versions recorded (promoted or not), refits that failed."""
    versions: list[HypernetVersion] = field(default_factory=list)
    failures: int = 0

    def describe(self) -> str:
        promoted = sum(v.promoted for v in self.versions)
        return (f"refitter: {len(self.versions)} refits, {promoted} promoted"
                + (f", {self.failures} failed" if self.failures else ""))


def study_finished(session: Session) -> bool:
    """The study reached its count and no trial is running: nothing a new version could serve."""
    from optuna.trial import TrialState

    from nas.study import n_counted

    running = session.study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
    return n_counted(session.study) >= session.cfg.n_trials and not running


def run_refitter(session: Session, *, poll_s: float = 2.0, stop: Callable[[], bool] | None = None,
                 max_failures: int = 3, refit_fn=refit) -> RefitterReport:
    """Refit whenever due until the study is finished (or `stop()` says so).

    A failed refit is logged and retried at the next poll; after `max_failures` failures in a row
    the refitter gives up (raises), so a broken setup is not retried forever."""
    from nas.storage import reap_dead_trials

    engine, h, study = session.storage.engine, session.cfg.hypernet, session.study
    report, in_a_row = RefitterReport(), 0
    while not (stop is not None and stop()):
        reap_dead_trials(study)  # trials left RUNNING by dead workers would hold the study open
        if refit_due(engine, study, h.refit_every, h.refit_max_share):
            with hold_lease(engine, lease_name(study.study_name), h.lease_ttl_s) as lease:
                if lease and refit_due(engine, study, h.refit_every, h.refit_max_share):
                    try:
                        version = refit_fn(session, lease=lease)
                    except Exception as exc:
                        if is_transient(exc):
                            raise  # the database went away: not the refit's fault (cli: run_despite_outages)
                        report.failures += 1
                        in_a_row += 1
                        _log.exception("refit of study %s failed (%d in a row)", study.study_name, in_a_row)
                        if in_a_row >= max_failures:
                            raise
                        time.sleep(poll_s)
                        continue  # still due: retry, finished study or not
                    else:
                        in_a_row = 0
                        if version is not None:
                            report.versions.append(version)
                        continue  # more trials may have completed meanwhile: check again at once
        if study_finished(session):
            break
        time.sleep(poll_s)
    return report


__all__ = ["RefitterReport", "run_refitter", "study_finished"]
