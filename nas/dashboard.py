"""Start the dashboard (the Streamlit script app/main.py) as a subprocess: used by
`logah-nas dashboard` and the dashboard's browser tests.

The server binds 127.0.0.1 unless told otherwise: study data is private by default. A storage
URL that carries a password goes to the child through the environment (`LOGAH_NAS_STORAGE`),
not the command line, so it never shows up in `ps`.

Import-light (stdlib + sqlalchemy; the `nas.storage` constants are read when launching), and it
never imports the `app` package: the dashboard is a script of the source tree, found next to
`nas/`. An installed wheel has no app/main.py; then `command`/`launch` raise FileNotFoundError.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from sqlalchemy.engine import make_url

MAIN = Path(__file__).resolve().parents[1] / "app" / "main.py"


def _has_password(url: str) -> bool:
    try:
        return make_url(url).password is not None
    except Exception:  # noqa: BLE001 - not a URL we can parse: keep it out of argv to be safe
        return True


def _main_script() -> Path:
    if not MAIN.is_file():
        raise FileNotFoundError(
            f"the dashboard script {MAIN} does not exist: the dashboard runs from a source checkout of "
            "logah-nas (run it there, or install the checkout with `pip install -e .`)")
    return MAIN


def command(storage_url: str | None, port: int = 8501, address: str = "127.0.0.1",
            artifacts: str | os.PathLike | None = None) -> list[str]:
    """`python -m streamlit run app/main.py ... -- --storage URL [--artifacts DIR]`.

    A URL with a password is left out (pass it as LOGAH_NAS_STORAGE, which `launch` does).
    """
    cmd = [sys.executable, "-m", "streamlit", "run", str(_main_script()),
           "--server.address", address, "--server.port", str(int(port)), "--server.headless", "true",
           "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
           "--client.toolbarMode", "minimal", "--"]
    if storage_url and not _has_password(storage_url):
        cmd += ["--storage", storage_url]
    if artifacts is not None:
        cmd += ["--artifacts", str(artifacts)]
    return cmd


def launch(storage_url: str, port: int = 8501, address: str = "127.0.0.1",
           artifacts: str | os.PathLike | None = None, **popen_kwargs) -> subprocess.Popen:
    """Start the server; returns at once (see `wait_ready`)."""
    from nas.storage import ARTIFACTS_ENV, STORAGE_ENV  # here: nas.storage loads optuna

    env = dict(popen_kwargs.pop("env", None) or os.environ)
    env[STORAGE_ENV] = storage_url
    if artifacts is not None:
        env[ARTIFACTS_ENV] = str(artifacts)
    return subprocess.Popen(command(storage_url, port, address, artifacts), env=env, **popen_kwargs)


def wait_ready(port: int, address: str = "127.0.0.1", timeout: float = 60.0,
               process: subprocess.Popen | None = None) -> bool:
    """Poll Streamlit's health endpoint until it answers "ok" (False on timeout or early exit)."""
    url = f"http://{address}:{port}/_stcore/health"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.read().strip() == b"ok":
                    return True
        except OSError:
            pass
        time.sleep(0.25)
    return False
