"""Helpers of the reliability suite: tiny studies, worker processes, polling, integrity checks.

Everything here drives the real system (the `python -m nas` CLI in subprocesses, the real
storage); nothing is mocked, so a test fails when the product misbehaves under load or faults.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

# A study whose trials take well under a second on one core: 2-layer ViTs of width 16/32 on
# the embedded digits data, 4 training steps, a random-init LoGAH-tiny, tiny refits.
TINY = [
    "study=quick", "study.steps=4", "study.eval_every=2", "study.eval_batches=1", "study.warmup_steps=1",
    "study.batch_sizes=[16]", "study.n_startup_trials=0", "study.lr=[1.0e-3,3.0e-3]",
    "space.depth=[1,2]", "space.width=[16,32,16]", "space.heads=[2]", "space.patch_sizes=[4]",
    "space.mlp_ratios=[2.0]", "hypernet.checkpoint=none", "hypernet.refit_every=0", "hypernet.refit_steps=2",
    "hypernet.refit_batch_size=8", "hypernet.heldout_archs=2", "hypernet.heldout_best=1",
    "hypernet.distill_trials=2", "device=cpu", "seed=0",
]

# What a worker must never print: SQLite's and PostgreSQL's lock / serialisation failures.
LOCK_ERRORS = re.compile(r"database is locked|database table is locked|deadlock detected|could not serialize|"
                         r"LockNotAvailable|could not obtain lock|lock timeout", re.IGNORECASE)

T = TypeVar("T")

# Figures for the suite's summary line (conftest.pytest_terminal_summary): what was survived.
STATS: dict[str, int] = {"trials": 0, "kills": 0, "bad_inputs": 0, "workers": 0, "refits": 0, "leases": 0}


def overrides(tmp: Path, storage: str, *extra: str) -> list[str]:
    """TINY + per-test paths. Later overrides win (Hydra applies them in order)."""
    return [*TINY, f"storage={storage}", f"artifacts_dir={tmp}/artifacts", f"export_dir={tmp}/exports", *extra]


def sqlite_url(tmp: Path) -> str:
    return f"sqlite:///{tmp}/study.db"


def child_env(**extra: str) -> dict[str, str]:
    """Environment of a CLI child: one torch thread (2 shared cores), no debug tracebacks."""
    env = {k: v for k, v in os.environ.items() if k != "LOGAH_DEBUG"}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1", **extra)
    return env


def run_cli(args: list[str], cwd: Path, timeout: float = 150, **env: str) -> subprocess.CompletedProcess:
    """`python -m nas ARGS` to completion; stdout and stderr captured separately."""
    return subprocess.run([sys.executable, "-m", "nas", *args], cwd=cwd, env=child_env(**env),
                          capture_output=True, text=True, timeout=timeout)


@dataclass
class Worker:
    """A `python -m nas worker` process started by a test; its stderr goes to a file."""

    process: subprocess.Popen
    stderr_path: Path
    stdout_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def output(self) -> str:
        out = self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""
        return out + self.stderr()

    def kill9(self) -> None:
        """SIGKILL, like the OOM killer or a pulled plug: no cleanup code runs."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"worker {self.pid} did not finish in {timeout:.0f}s; output:\n"
                                 + self.output()[-4000:]) from None


def start_worker(tmp: Path, storage: str, study_name: str, index: int, *extra: str, command: str = "worker") -> Worker:
    """One worker (or `command="refitter"`) joining `study_name`, the way `search` starts them (URL in the env)."""
    logs = tmp / "worker-logs"
    logs.mkdir(parents=True, exist_ok=True)
    out, err = logs / f"w{index}-{time.monotonic_ns()}.out", logs / f"w{index}-{time.monotonic_ns()}.err"
    cmd = [sys.executable, "-m", "nas", command, f"study_name={study_name}", f"artifacts_dir={tmp}/artifacts",
           "device=cpu", *extra]
    with open(out, "wb") as fo, open(err, "wb") as fe:
        process = subprocess.Popen(cmd, cwd=tmp, env=child_env(LOGAH_NAS_STORAGE=storage, LOGAH_WORKER_INDEX=str(index)),
                                   stdout=fo, stderr=fe, stdin=subprocess.DEVNULL)
    return Worker(process, err, out)


def stop(workers: list[Worker]) -> None:
    """Kill whatever a failed test left running (only our own children, by pid)."""
    for w in workers:
        if w.process.poll() is None:
            w.process.kill()
            w.process.wait()


def wait_for(what: str, probe: Callable[[], T], timeout: float, every: float = 0.05,
             alive: Worker | None = None) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` on timeout or if `alive` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        if alive is not None and alive.process.poll() is not None:
            raise AssertionError(f"worker exited ({alive.process.returncode}) before {what}:\n{alive.output()[-4000:]}")
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def create_study(tmp: Path, storage: str, *extra: str):
    """Create a study and register hypernet version 0, in this process (as `search` does first)."""
    from nas.config import compose
    from nas.study import open_session

    cfg = compose(overrides(tmp, storage, *extra))
    return cfg, open_session(cfg, create=True)


def retried_from(trial) -> int | None:
    """The trial this one re-runs (the last of Optuna's retry history), None for a fresh trial. Not
    Optuna's `failed_trial`: a retry of a retry keeps the first trial's number there."""
    history = trial.system_attrs.get("retry_history") or []
    return history[-1] if history else None


def trials_by_state(study) -> dict[str, list]:
    from optuna.trial import TrialState

    out: dict[str, list] = {s.name: [] for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name].append(t)
    return out


def check_versions_and_artifacts(storage: str, study_name: str, artifacts_dir: Path) -> list:
    """Every hypernet version and every trial weights artifact the study references is whole.

    Versions are numbered 0..k without gaps, each checkpoint loads and matches the sha256 in
    the versions table; every `weights_artifact_id` is a complete safetensors file of the
    trial's config; no referenced artifact is a temp file. Returns the versions.
    """
    import optuna
    from safetensors.torch import load_file

    from nas.hypernets import load_version
    from nas.storage import make_artifact_store, make_storage
    from nas.versions import list_versions
    from search_spaces import build_model, config_from_dict

    store = make_artifact_store(artifacts_dir)
    versions = list_versions(storage, study_name)
    assert [v.version for v in versions] == list(range(len(versions))), [v.version for v in versions]
    STATS["refits"] += len(versions) - 1
    for v in versions:
        assert not v.artifact_id.endswith(".tmp")
        load_version(v, store)  # raises CheckpointError on a truncated file or a checksum mismatch
    study = optuna.load_study(study_name=study_name, storage=make_storage(storage, heartbeat_interval=None))
    for t in study.get_trials(deepcopy=False):
        aid = t.user_attrs.get("weights_artifact_id")
        if aid is None:
            continue
        assert t.state.name == "COMPLETE", (t.number, t.state)
        assert not aid.endswith(".tmp")
        tensors = load_file(str(Path(artifacts_dir) / aid))
        model = build_model(config_from_dict(t.user_attrs["config"]))
        expected = {k: tuple(p.shape) for k, p in model.named_parameters()}
        assert {k: tuple(v.shape) for k, v in tensors.items()} == expected, t.number
    return versions


def refit_intervals_disjoint(versions) -> bool:
    """Refit k ran during [created_at - seconds, created_at]; under the lease no two overlap."""
    spans = sorted((v.created_at.timestamp() - v.seconds, v.created_at.timestamp()) for v in versions
                   if v.version >= 1)
    return all(a_end <= b_start + 0.05 for (_, a_end), (b_start, _) in zip(spans, spans[1:]))
