"""nas.dashboard: the command `logah-nas dashboard` runs (the real server: tests/app/test_app_launch.py)."""
import subprocess
import sys
from pathlib import Path

import pytest

import nas
from nas import dashboard

ROOT = Path(nas.__file__).resolve().parents[1]


def test_command_binds_localhost_headless_and_passes_storage():
    cmd = dashboard.command("sqlite:///runs/study.db", port=8600, artifacts="runs/artifacts")
    assert cmd[:5] == [sys.executable, "-m", "streamlit", "run", str(dashboard.MAIN)]
    opts = dict(zip(cmd[5:cmd.index("--"):2], cmd[6:cmd.index("--"):2]))
    assert opts["--server.address"] == "127.0.0.1" and opts["--server.port"] == "8600"
    assert opts["--server.headless"] == "true" and opts["--browser.gatherUsageStats"] == "false"
    assert cmd[cmd.index("--") + 1:] == ["--storage", "sqlite:///runs/study.db", "--artifacts", "runs/artifacts"]
    other = dashboard.command("sqlite:///x.db", address="0.0.0.0")
    assert other[other.index("--server.address") + 1] == "0.0.0.0"


def test_password_never_on_the_command_line():
    cmd = dashboard.command("postgresql+psycopg://u:s3cret@db/optuna")
    assert not any("s3cret" in part for part in cmd) and "--storage" not in cmd


def test_the_script_is_app_main_of_the_source_tree():
    assert dashboard.MAIN == ROOT / "app" / "main.py" and dashboard.MAIN.is_file()


def test_launch_hands_the_storage_to_the_child_in_the_environment(monkeypatch):
    from nas.storage import ARTIFACTS_ENV, STORAGE_ENV

    seen = {}
    monkeypatch.setattr(dashboard.subprocess, "Popen", lambda cmd, env=None, **kw: seen.update(cmd=cmd, env=env))
    url = "postgresql+psycopg://u:s3cret@db/optuna"
    dashboard.launch(url, artifacts="runs/artifacts", env={"KEEP": "1"})
    assert seen["env"] == {"KEEP": "1", STORAGE_ENV: url, ARTIFACTS_ENV: "runs/artifacts"}
    assert not any("s3cret" in part for part in seen["cmd"])


def test_without_the_app_script_the_error_says_where_to_run_it(monkeypatch, tmp_path):
    missing = tmp_path / "site-packages" / "app" / "main.py"
    monkeypatch.setattr(dashboard, "MAIN", missing)
    monkeypatch.setattr(dashboard.subprocess, "Popen", lambda *a, **kw: pytest.fail("started without a script"))
    for start in (dashboard.command, dashboard.launch):
        with pytest.raises(FileNotFoundError, match="source checkout") as info:
            start("sqlite:///x.db")
        assert str(missing) in str(info.value) and "pip install -e" in str(info.value)


def test_import_is_light_and_does_not_reach_into_the_app():
    code = ("import sys, nas.dashboard; heavy = {'torch', 'optuna', 'streamlit', 'pandas', 'app'}; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
