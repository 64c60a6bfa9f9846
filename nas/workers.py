"""Local worker processes and the parent's progress bar.

Workers are separate processes (`python -m nas worker`), not threads: training is CPU-bound and
a process that dies (OOM, kill -9) takes nothing else with it — its running trial is failed by
Optuna's heartbeat and retried. Each worker runs torch with one thread (OMP_NUM_THREADS=1) so N
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
from nas.storage import STORAGE_ENV

INDEX_ENV = "LOGAH_WORKER_INDEX"


@dataclass
class WorkerProcess:
    index: int
    process: subprocess.Popen
    log_path: Path

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def log_dir(cfg: NASConfig) -> Path:
    return Path(cfg.artifacts_dir).parent / "logs"


def worker_command(cfg: NASConfig) -> list[str]:
    """The command of a local worker: it reads the rest of the config from the study itself."""
    return [sys.executable, "-m", "nas", "worker", f"study_name={cfg.study_name}",
            f"artifacts_dir={cfg.artifacts_dir}", f"device={cfg.device}", f"n_trials={cfg.n_trials}"]


def spawn_workers(cfg: NASConfig, n: int) -> list[WorkerProcess]:
    """Start `n` worker processes sharing the study's storage; their output goes to log files."""
    logs = log_dir(cfg)
    logs.mkdir(parents=True, exist_ok=True)
    workers = []
    for index in range(n):
        env = {**os.environ, STORAGE_ENV: cfg.storage, INDEX_ENV: str(index), "OMP_NUM_THREADS": "1",
               "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        log_path = logs / f"{cfg.study_name}-worker{index}.log"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(worker_command(cfg), env=env, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL)
        workers.append(WorkerProcess(index, process, log_path))
    return workers


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


def monitor(study: optuna.Study, workers: list[WorkerProcess], n_trials: int, *, engine=None,
            poll_s: float = 1.0, progress: bool = True) -> dict[int, int]:
    """Show a progress bar (COMPLETE + PRUNED trials, best value, hypernet version) until every
    worker exits; returns their exit codes by index."""
    from tqdm import tqdm

    from nas.study import COUNTED
    from nas.versions import latest_promoted

    bar = tqdm(total=n_trials, desc=study.study_name, unit="trial", disable=not progress, dynamic_ncols=True)
    last: tuple = ()
    try:
        while True:
            running = [w for w in workers if w.process.poll() is None]
            trials = study.get_trials(deepcopy=False, states=COUNTED)
            done = min(len(trials), n_trials)
            if done > bar.n:
                bar.update(done - bar.n)
            values = [t.value for t in trials if t.value is not None]
            postfix = {}
            if values:
                postfix["best"] = f"{min(values):.4f}"
            if engine is not None:
                version = latest_promoted(engine, study.study_name)
                if version is not None:
                    postfix["hypernet"] = f"v{version.version}"
            bar.set_postfix(postfix, refresh=False)
            bar.refresh()
            status = (done, postfix.get("best"), postfix.get("hypernet"))
            if not progress and status != last:  # logs and CI: one plain line per change
                print(f"{study.study_name}: {done}/{n_trials} trials"
                      + "".join(f", {k} {v}" for k, v in postfix.items()), flush=True)
                last = status
            if not running:
                break
            time.sleep(poll_s)
    finally:
        bar.close()
    return {w.index: w.process.returncode for w in workers}


__all__ = ["INDEX_ENV", "WorkerProcess", "log_dir", "monitor", "spawn_workers", "stop_workers",
           "worker_command"]
