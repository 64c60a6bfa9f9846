"""app.launch: the command the CLI runs, and a real server answering on localhost."""
import subprocess
import sys
import urllib.request

from _webdriver import free_port
from app import launch
from _apptest import digest


def test_command_binds_localhost_headless_and_passes_storage():
    cmd = launch.command("sqlite:///runs/study.db", port=8600, artifacts="runs/artifacts")
    assert cmd[:5] == [sys.executable, "-m", "streamlit", "run", str(launch.MAIN)]
    opts = dict(zip(cmd[5:cmd.index("--"):2], cmd[6:cmd.index("--"):2]))
    assert opts["--server.address"] == "127.0.0.1" and opts["--server.port"] == "8600"
    assert opts["--server.headless"] == "true" and opts["--browser.gatherUsageStats"] == "false"
    assert cmd[cmd.index("--") + 1:] == ["--storage", "sqlite:///runs/study.db", "--artifacts", "runs/artifacts"]
    other = launch.command("sqlite:///x.db", address="0.0.0.0")
    assert other[other.index("--server.address") + 1] == "0.0.0.0"


def test_password_never_on_the_command_line():
    cmd = launch.command("postgresql+psycopg://u:s3cret@db/optuna")
    assert not any("s3cret" in part for part in cmd) and "--storage" not in cmd


def test_launched_server_serves_the_app_and_does_not_write(demo):
    before = digest(demo["db"])
    port = free_port()
    server = launch.launch(demo["url"], port=port, artifacts=demo["artifacts"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert launch.wait_ready(port, process=server, timeout=90), "dashboard did not become healthy"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            assert r.status == 200 and b"<html" in r.read().lower()
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert digest(demo["db"]) == before
    assert not launch.wait_ready(port, timeout=0.5)


def test_storage_and_artifacts_from_argv_then_env(monkeypatch):
    from app import state

    monkeypatch.setenv("LOGAH_STORAGE", "sqlite:///env.db")
    monkeypatch.delenv("LOGAH_ARTIFACTS", raising=False)
    monkeypatch.setattr(sys, "argv", ["app/main.py"])
    assert state.storage_url() == "sqlite:///env.db" and state.artifacts_dir() == "logah_runs/artifacts"
    monkeypatch.setattr(sys, "argv", ["app/main.py", "--storage", "sqlite:///argv.db", "--artifacts", "a"])
    assert state.storage_url() == "sqlite:///argv.db" and state.artifacts_dir() == "a"
