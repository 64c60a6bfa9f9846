"""Local worker processes and the parent's progress bar.

Workers are separate processes (`python -m nas worker`), not threads: training is CPU-bound and
a process that dies (OOM, kill -9) takes nothing else with it. The parent (`supervise`) fails a
dead worker's RUNNING trial at once (it is retried with the same parameters) and restarts the
worker, up to `worker_restarts` times per worker with exponential backoff, while the study is
short of its `n_trials`. Each worker runs torch with one thread (OMP_NUM_THREADS=1) so N
workers on N cores do not oversubscribe. The storage URL travels in the environment, not on the
command line, so a database password never shows up in `ps`.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import optuna

from nas.config import NASConfig
from nas.storage import STORAGE_ENV, TRANSIENT_DB_ERRORS, short_error as _short

INDEX_ENV = "LOGAH_WORKER_INDEX"
PARENT_ENV = "LOGAH_PARENT_PID"  # the pid of the `search` that started a local child
REFITTER = -1  # the index of `search`'s refitter process among its children (nas.refitter)
EXIT_INCOMPLETE = 3  # `search` ended with fewer than n_trials counted trials (resume it)
EXIT_GUARD = 4  # a worker's failure guard tripped (`study.max_consecutive_failures` trials failed in a row)


def process_name(index: int) -> str:
    return "refitter" if index == REFITTER else f"worker {index}"


@dataclass
class WorkerProcess:
    """A local child of `search`: worker `index` (0..N-1) or the refitter (`REFITTER`)."""
    index: int
    process: subprocess.Popen
    log_path: Path

    @property
    def name(self) -> str:
        return process_name(self.index)

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def log_dir(cfg: NASConfig) -> Path:
    """`<artifacts_dir>/../logs`; with artifacts in an object store (s3://), `logah_runs/logs`."""
    from nas.storage import is_object_store

    if is_object_store(cfg.artifacts_dir):
        return Path("logah_runs") / "logs"
    return Path(cfg.artifacts_dir).parent / "logs"


def worker_command(cfg: NASConfig, command: str = "worker") -> list[str]:
    """The command of a local worker (or `command="refitter"`): it reads the rest of the config
    from the study itself."""
    return [sys.executable, "-m", "nas", command, f"study_name={cfg.study_name}",
            f"artifacts_dir={cfg.artifacts_dir}", f"device={cfg.device}", f"n_trials={cfg.n_trials}"]


def spawn_worker(cfg: NASConfig, index: int) -> WorkerProcess:
    """Start worker `index` (or the refitter, `index=REFITTER`) sharing the study's storage; its
    output goes to (appends to) its log file."""
    logs = log_dir(cfg)
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, STORAGE_ENV: cfg.storage, INDEX_ENV: str(index), PARENT_ENV: str(os.getpid()),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    refitter = index == REFITTER
    log_path = logs / (f"{cfg.study_name}-refitter.log" if refitter else f"{cfg.study_name}-worker{index}.log")
    command = worker_command(cfg, "refitter" if refitter else "worker")
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return WorkerProcess(index, process, log_path)


def spawn_workers(cfg: NASConfig, n: int) -> list[WorkerProcess]:
    """Start `n` worker processes sharing the study's storage; their output goes to log files."""
    return [spawn_worker(cfg, index) for index in range(n)]


def stop_workers(workers: list[WorkerProcess], timeout: float = 10.0) -> None:
    """Terminate our own worker processes (by pid), then kill those that do not exit."""
    for w in workers:
        if w.process.poll() is None:
            w.process.terminate()
    deadline = time.monotonic() + timeout
    for w in workers:
        try:
            w.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            w.process.kill()
            w.process.wait()


def resume_command(command: str, overrides: list[str] | tuple[str, ...]) -> str:
    """The command line that resumes a study: the same overrides, any password masked (pass the
    real URL in LOGAH_NAS_STORAGE, as every process may)."""
    import shlex

    from nas.secrets import mask_url

    shown = [f"{o.split('=', 1)[0]}={mask_url(o.split('=', 1)[1])}" if "=" in o else o for o in overrides]
    text = shlex.join(["logah-nas", command, *shown])
    return text + (" (put the password back in place of ***)" if shown != list(overrides) else "")


def exit_text(code: int | None) -> str:
    """`-9` -> "killed by SIGKILL (-9)", `1` -> "exit code 1"."""
    import signal

    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name} ({code})"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _hopeless(code: int) -> str | None:
    """Why restarting a worker that exited with `code` cannot help, or None: a start-up or storage
    error (bad config, unreachable storage or artifacts, a full or read-only database: exit code 2)
    or its failure guard tripped (`EXIT_GUARD`: trials failed in a row, a broken setup, not bad luck)."""
    if code == 2:
        return "a configuration or storage error"
    if code == EXIT_GUARD:
        return "too many trials failed in a row"
    return None


@dataclass
class Supervision:
    """What happened to the local workers of one `search`."""

    deaths: dict[int, list[int]]      # worker index -> exit codes of its abnormal exits, in order
    restarts: dict[int, int]          # worker index -> times restarted
    gave_up: dict[int, str]           # worker index -> its log's last lines, when it kept dying
    failed_trials: dict[int, list[int]]  # worker index -> trial numbers failed at once when it died
    codes: dict[int, int]             # worker index -> the exit code of its last process

    def describe(self) -> list[str]:
        lines = []
        for index in sorted(self.deaths):
            codes = self.deaths[index]
            what = ", ".join(exit_text(c) for c in codes)
            lines.append(f"{process_name(index)} died {len(codes)} time{'s' if len(codes) != 1 else ''} ({what}); "
                         f"restarted {self.restarts.get(index, 0)}"
                         + (f"; trials failed and retried: {self.failed_trials[index]}"
                            if self.failed_trials.get(index) else "")
                         + ("; gave up" if index in self.gave_up else ""))
        return lines


class Restarter:
    """The restart policy `supervise` and `search`'s in-process run (workers=1, its refitter) share:
    a process that exited non-zero is restarted after `backoff_s * 2**k` seconds (at most
    `max_backoff_s`), at most `max_restarts` times, never when a restart would fail the same way
    (`_hopeless`); what happened goes into `report`."""

    def __init__(self, cfg: NASConfig, report: Supervision, *, max_restarts: int, backoff_s: float = 1.0,
                 max_backoff_s: float = 30.0, spawn=None, say=print):
        self.cfg, self.report, self.max_restarts = cfg, report, max_restarts
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.spawn, self.say = spawn or spawn_worker, say
        self.pending: dict[int, float] = {}  # process index -> monotonic time of its restart

    def exited(self, w: WorkerProcess) -> int | None:
        """The exit code of `w` the first time it is seen to have exited, else None."""
        code = w.process.poll()
        if code is None or w.index in self.report.codes:
            return None
        self.report.codes[w.index] = code
        if code != 0:
            self.report.deaths.setdefault(w.index, []).append(code)
        return code

    def schedule(self, w: WorkerProcess, code: int) -> None:
        """Decide about `w`, which died with `code`: give up on it or restart it after a backoff."""
        hopeless = _hopeless(code)
        if hopeless:  # a restart would fail the same way
            self.report.gave_up[w.index] = w.tail()
            self.say(f"{w.name} stopped ({hopeless}); not restarting it; last lines of {w.log_path}:\n{w.tail()}")
            return
        n = self.report.restarts.get(w.index, 0)
        if n >= self.max_restarts:
            self.report.gave_up[w.index] = w.tail()
            self.say(f"{w.name} died {len(self.report.deaths[w.index])} times; not restarting it "
                     f"(worker_restarts={self.max_restarts}); last lines of {w.log_path}:\n{w.tail()}")
            return
        delay = min(self.max_backoff_s, self.backoff_s * 2 ** n)
        self.pending[w.index] = time.monotonic() + delay
        self.say(f"restarting {w.name} in {delay:.0f} s ({n + 1}/{self.max_restarts}); its log: {w.log_path}")

    def restart_due(self, workers: list[WorkerProcess], *, cancel: bool = False, before=None) -> None:
        """Spawn the processes whose backoff is over (in place in `workers`); `cancel` drops every
        pending restart instead (nothing left for them to do)."""
        for index, at in list(self.pending.items()):
            if cancel:
                del self.pending[index]
            elif time.monotonic() >= at:
                del self.pending[index]
                slot = next(i for i, w in enumerate(workers) if w.index == index)
                if before is not None:
                    before()
                workers[slot] = self.spawn(self.cfg, index)
                self.report.restarts[index] = self.report.restarts.get(index, 0) + 1
                self.report.codes.pop(index, None)


def supervise(study: optuna.Study, cfg: NASConfig, workers: list[WorkerProcess], *, max_restarts: int,
              engine=None, poll_s: float = 1.0, backoff_s: float = 1.0, max_backoff_s: float = 30.0,
              progress: bool = True, spawn=None, say=print) -> Supervision:
    """Watch the workers until every one has exited for good (the refitter among `workers` is
    watched and restarted alike, but not waited for: the caller stops it); returns what happened.

    A worker that exits non-zero (a signal, the OOM killer, a crash) has its RUNNING trial failed
    at once (`nas.storage.fail_trials_of`; retried with the same parameters) and, while the study
    has fewer than `cfg.n_trials` counted trials, is restarted after `backoff_s * 2**k` seconds
    (at most `max_backoff_s`), at most `max_restarts` times; then the parent gives up on it and
    says so with the last lines of its log. `workers` is updated in place with the restarted
    processes (what `stop_workers` must stop on Ctrl-C)."""
    from tqdm import tqdm

    from nas.storage import fail_trials_of, reap_dead_trials
    from nas.study import COUNTED
    from nas.versions import latest_promoted

    n_trials = cfg.n_trials
    report = Supervision(deaths={}, restarts={}, gave_up={}, failed_trials={}, codes={})
    restarter = Restarter(cfg, report, max_restarts=max_restarts, backoff_s=backoff_s, max_backoff_s=max_backoff_s,
                          spawn=spawn, say=say)
    pending = restarter.pending

    def _reap_quietly() -> None:
        try:
            reap_dead_trials(study)
        except TRANSIENT_DB_ERRORS:
            pass

    bar = tqdm(total=n_trials, desc=study.study_name, unit="trial", disable=not progress, dynamic_ncols=True)
    last: tuple = ()
    trials, done, db_down = [], 0, False
    try:
        while True:
            try:  # the database may restart under us: keep supervising, read again at the next poll
                trials = study.get_trials(deepcopy=False, states=COUNTED)
                done = min(len(trials), n_trials)
                if db_down:
                    say("storage reachable again")
                db_down = False
            except TRANSIENT_DB_ERRORS as exc:
                if not db_down:
                    say(f"storage unreachable ({_short(exc)}); retrying")
                db_down = True
            for w in workers:
                code = restarter.exited(w)
                if not code:
                    continue
                reason = f"worker died: local {w.name} (pid {w.process.pid}) {exit_text(code)}"
                try:
                    failed = fail_trials_of(study, w.process.pid, reason)
                except TRANSIENT_DB_ERRORS as exc:  # reaped later (reap_dead_trials: its pid is gone)
                    failed = []
                    say(f"could not fail the trial of {w.name} now ({_short(exc)}); it is reaped later")
                report.failed_trials.setdefault(w.index, []).extend(failed)
                say(f"{w.name} (pid {w.process.pid}) {exit_text(code)}"
                    + (f"; its trial{'s' if len(failed) > 1 else ''} {failed} failed and will be retried"
                       if failed else ""))
                if done < n_trials:
                    restarter.schedule(w, code)
            restarter.restart_due(workers, cancel=done >= n_trials, before=_reap_quietly)
            values = [t.value for t in trials if t.value is not None]
            postfix = {}
            if values:
                postfix["best"] = f"{min(values):.4f}"
            if engine is not None and not db_down:
                try:
                    version = latest_promoted(engine, study.study_name)
                except TRANSIENT_DB_ERRORS:
                    version = None
                if version is not None:
                    postfix["hypernet"] = f"v{version.version}"
            if done > bar.n:
                bar.update(done - bar.n)
            bar.set_postfix(postfix, refresh=False)
            bar.refresh()
            status = (done, postfix.get("best"), postfix.get("hypernet"))
            if not progress and status != last:  # logs and CI: one plain line per change
                print(f"{study.study_name}: {done}/{n_trials} trials"
                      + "".join(f", {k} {v}" for k, v in postfix.items()), flush=True)
                last = status
            if not any(i != REFITTER for i in pending) and all(
                    w.process.poll() is not None and w.index in report.codes for w in workers if w.index != REFITTER):
                break  # the workers are done for good; the caller stops the refitter
            time.sleep(min(poll_s, 0.2) if pending else poll_s)
    finally:
        bar.close()
    return report


__all__ = ["EXIT_GUARD", "EXIT_INCOMPLETE", "INDEX_ENV", "PARENT_ENV", "REFITTER", "Restarter", "Supervision", "WorkerProcess", "exit_text",
           "log_dir",
           "process_name", "resume_command", "spawn_worker", "spawn_workers", "stop_workers",
           "supervise", "worker_command"]
