"""`search` supervises its local workers: a worker killed with kill -9 has its trial failed at once
(and retried), is restarted with backoff up to `worker_restarts` times, and a study left short of
`n_trials` makes `search` exit non-zero with the command that resumes it. No trial stays RUNNING.

The tests find a worker's pid where `search` itself records it: the owner of a RUNNING trial
(`nas.storage.OWNER_ATTR`), so every kill lands mid-trial.
"""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys

import pytest
from _rel import (LOCK_ERRORS, STATS, child_env, overrides, retried_from, run_cli, sqlite_url, trials_by_state,
                  wait_for)

# trials of ~0.5 s (12 steps) so a kill lands mid-trial; the heartbeat would need minutes: the
# parent's own bookkeeping must be what fails the killed trials.
SLOW = ["study.steps=12", "study.eval_every=6", "study.heartbeat_interval=60", "study.max_retry=2",
        "study.control_fraction=0.0"]


def _search(tmp, url, *extra) -> subprocess.Popen:
    args = [sys.executable, "-m", "nas", "search", *overrides(tmp, url, *SLOW, *extra)]
    return subprocess.Popen(args, cwd=tmp, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, stdin=subprocess.DEVNULL)


def _study(url: str, name: str):
    import optuna

    from nas.storage import make_storage

    return optuna.load_study(study_name=name, storage=make_storage(url, heartbeat_interval=None))


def _running_pids(url: str, name: str, search: subprocess.Popen, study=None) -> dict[int, int]:
    """pid -> trial number of the RUNNING trials (by `search`'s children) of study `name`."""
    from optuna.trial import TrialState

    from nas.storage import OWNER_ATTR

    if study is None:
        try:
            study = _study(url, name)
        except Exception:  # not created yet
            return {}
    out = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.system_attrs.get(OWNER_ATTR)
        if owner and owner["pid"] != search.pid and "n_params" in t.user_attrs:  # mid-training
            out[owner["pid"]] = t.number
    return out


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    STATS["kills"] += 1


def _finish(p: subprocess.Popen, timeout: float = 150) -> tuple[int, str, str]:
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise AssertionError(f"search did not finish in {timeout:.0f}s:\n{out[-3000:]}\n{err[-3000:]}") from None
    return p.returncode, out, err


def _check_killed_trials_failed_and_retried(study, killed: list[int]) -> None:
    states = trials_by_state(study)
    assert not states["RUNNING"], [t.number for t in states["RUNNING"]]
    for number in killed:
        t = study.trials[number]
        assert t.state.name == "FAIL", (number, t.state)
        assert t.user_attrs["fail_reason"].startswith("worker died"), t.user_attrs["fail_reason"]
        assert any(retried_from(r) == number for r in study.trials), f"trial {number} not retried"


@pytest.fixture
def searches():
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_both_workers_killed_in_turn_search_says_incomplete_then_resume_completes(tmp_path, searches):
    url, name = sqlite_url(tmp_path), "vit-digits"
    extra = ("n_trials=4", "workers=2", "worker_restarts=0")
    search = _search(tmp_path, url, *extra)
    searches.append(search)
    killed: list[int] = []
    for _ in range(2):  # kill -9 one worker mid-trial, then the other
        pids = wait_for("a worker mid-trial", lambda: {p: n for p, n in _running_pids(url, name, search).items()
                                                        if n not in killed}, timeout=120)
        pid, number = next(iter(pids.items()))
        _kill(pid)
        killed.append(number)
    code, out, err = _finish(search)
    assert code == 3, out[-3000:] + err[-3000:]
    assert "is incomplete" in err and "resume it with: logah-nas search" in err, err[-3000:]
    assert "not restarting it" in err and "died 1 time" in out, out[-2000:] + err[-2000:]
    assert "exported to" not in out
    study = _study(url, name)
    _check_killed_trials_failed_and_retried(study, killed)  # at once: the heartbeat grace is 120 s
    # the reason names the process: "worker died: local worker N (pid P) killed by SIGKILL (-9)" from
    # search, or "worker died: process P on HOST is gone" when the other worker reaped it first
    assert all(str(os.getpid()) not in study.trials[n].user_attrs["fail_reason"] for n in killed)

    # the resume command it printed, verbatim (no password here to mask)
    printed = shlex.split(err.split("resume it with: ", 1)[1].splitlines()[0])
    assert printed[:2] == ["logah-nas", "search"] and printed[2:] == overrides(tmp_path, url, *SLOW, *extra)
    resume = run_cli(printed[1:], cwd=tmp_path)
    assert resume.returncode == 0, resume.stdout[-3000:] + resume.stderr[-3000:]
    assert "trials done: 4/4" in resume.stdout and "exported to" in resume.stdout
    assert not LOCK_ERRORS.search(resume.stdout + resume.stderr)
    states = trials_by_state(study)
    assert not states["RUNNING"] and len(states["COMPLETE"]) + len(states["PRUNED"]) >= 4
    # the killed configurations were run again, not lost: a retry that finished (completed, or pruned by
    # the pruner's rule like any trial) carries them in its history (a killed retry's own retry counts for it)
    retried = {n for r in states["COMPLETE"] + states["PRUNED"] for n in r.system_attrs.get("retry_history", [])}
    assert set(killed) <= retried
    STATS["trials"] += len(study.trials)
    STATS["workers"] += 4


def test_a_killed_worker_is_restarted_and_a_kill_at_the_very_end_leaves_no_running_trial(tmp_path, searches):
    """Kill one worker early (it is restarted), then one while the other completes the count: the
    study is done and every killed trial is FAIL (its retry run or WAITING), none RUNNING."""
    from nas.study import COUNTED

    url, name = sqlite_url(tmp_path), "vit-digits"
    search = _search(tmp_path, url, "n_trials=4", "workers=2", "worker_restarts=2")
    searches.append(search)
    pid, first = next(iter(wait_for("a worker mid-trial", lambda: _running_pids(url, name, search), 120).items()))
    _kill(pid)
    study = _study(url, name)

    def last_trials():
        done = len(study.get_trials(deepcopy=False, states=COUNTED))
        running = {p: n for p, n in _running_pids(url, name, search, study).items() if n != first}
        return running if done >= 3 and running else {}

    pid, last = next(iter(wait_for("the last trials running", last_trials, timeout=150, every=0.02).items()))
    _kill(pid)
    code, out, err = _finish(search)
    assert code == 0, out[-3000:] + err[-3000:]
    assert "restarting worker" in err and "trials done: 4/4" in out and "exported to" in out, out[-2000:] + err[-2000:]
    assert "killed by SIGKILL (-9)" in out and "restarted 1" in out, out[-2000:]
    _check_killed_trials_failed_and_retried(study, [first, last])
    from nas.study import n_counted

    assert n_counted(study) >= 4
    STATS["trials"] += len(study.trials)
    STATS["workers"] += 3


def test_the_resume_command_masks_a_password_and_says_so():
    from nas.workers import exit_text, resume_command

    text = resume_command("search", ["n_trials=4", "storage=postgresql+psycopg://u:pw123@db/nas"])
    assert "pw123" not in text and text.startswith("logah-nas search n_trials=4 ") and "password back" in text
    assert resume_command("search", ["n_trials=4"]) == "logah-nas search n_trials=4"
    assert exit_text(-9) == "killed by SIGKILL (-9)" and exit_text(1) == "exit code 1"
