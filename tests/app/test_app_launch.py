"""The dashboard as `nas.dashboard` starts it: a real server answering on localhost; where the app
finds its storage and artifacts."""
import subprocess
import sys
import urllib.request

from _webdriver import free_port
from _apptest import digest
from nas import dashboard
from nas.storage import ARTIFACTS_ENV, STORAGE_ENV


def test_launched_server_serves_the_app_and_does_not_write(demo):
    before = digest(demo["db"])
    port = free_port()
    server = dashboard.launch(demo["url"], port=port, artifacts=demo["artifacts"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert dashboard.wait_ready(port, process=server, timeout=90), "dashboard did not become healthy"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            assert r.status == 200 and b"<html" in r.read().lower()
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert digest(demo["db"]) == before
    assert not dashboard.wait_ready(port, timeout=0.5)


def test_storage_and_artifacts_from_argv_then_env(monkeypatch):
    from app import state

    monkeypatch.setenv(STORAGE_ENV, "sqlite:///env.db")
    monkeypatch.delenv(ARTIFACTS_ENV, raising=False)
    monkeypatch.setattr(sys, "argv", ["app/main.py"])
    assert state.storage_url() == "sqlite:///env.db" and state.artifacts_dir() == "logah_runs/artifacts"
    monkeypatch.setattr(sys, "argv", ["app/main.py", "--storage", "sqlite:///argv.db", "--artifacts", "a"])
    assert state.storage_url() == "sqlite:///argv.db" and state.artifacts_dir() == "a"
