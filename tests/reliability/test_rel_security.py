"""Security: weights never unpickled, the dashboard local and read-only, no password anywhere.

The source scan parses every module of the four packages (AST, not regex) and fails on a
`torch.load` without `weights_only=True`, a pickle load outside the restricted CIFAR
unpickler, or `allow_pickle=True`. The credentials test runs a real study with two workers
against PostgreSQL as a role with a password and then searches every file written and every
row of every table for that password.
"""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
from _rel import child_env, overrides

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("nas", "hypernet", "search_spaces", "app")
PICKLE_ALLOWED = {Path("nas/data/_safe_pickle.py")}  # the numpy-only CIFAR unpickler


def _unsafe_calls(source: str, rel: Path) -> list[str]:
    """Unsafe deserialisation in one module: `torch.load` without weights_only=True, pickle
    loads (outside PICKLE_ALLOWED), `allow_pickle=True`, `from pickle import load`."""
    problems = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module in ("pickle", "_pickle", "dill", "cloudpickle"):
            if {a.name for a in node.names} & {"load", "loads", "Unpickler"} and rel not in PICKLE_ALLOWED:
                problems.append(f"{rel}:{node.lineno}: from {node.module} import load")
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = ast.unparse(func)
        keywords = {k.arg: k.value for k in node.keywords}
        if name == "torch.load" or name.endswith(".torch.load"):
            wo = keywords.get("weights_only")
            if not (isinstance(wo, ast.Constant) and wo.value is True):
                problems.append(f"{rel}:{node.lineno}: {ast.unparse(node)[:80]} (no weights_only=True)")
        if re.fullmatch(r"(c?pickle|_pickle|dill|cloudpickle)\.(load|loads|Unpickler)", name) and rel not in PICKLE_ALLOWED:
            problems.append(f"{rel}:{node.lineno}: {name}")
        ap = keywords.get("allow_pickle")
        if isinstance(ap, ast.Constant) and ap.value is True:
            problems.append(f"{rel}:{node.lineno}: allow_pickle=True")
    return problems


def test_the_scanner_catches_what_it_is_meant_to_catch():
    bad = ("import torch, pickle, numpy as np\nfrom pickle import loads\n"
           "torch.load('x')\ntorch.load('x', weights_only=False)\npickle.load(f)\npickle.loads(b)\n"
           "np.load('a.npy', allow_pickle=True)\n")
    assert len(_unsafe_calls(bad, Path("nas/evil.py"))) == 6
    good = "import torch\ntorch.load('x', weights_only=True, map_location='cpu')\n"
    assert _unsafe_calls(good, Path("nas/fine.py")) == []


def test_package_sources_never_unpickle_weights_or_data():
    files = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    assert len(files) > 30, files  # the scan really covers the packages
    problems = [msg for p in files for msg in _unsafe_calls(p.read_text(), p.relative_to(ROOT))]
    assert not problems, "unsafe deserialisation:\n" + "\n".join(problems)
    # the one allowed unpickler really restricts globals
    assert "def find_class" in (ROOT / "nas/data/_safe_pickle.py").read_text()


def test_dashboard_binds_loopback_and_keeps_the_password_out_of_argv(monkeypatch, tmp_path, capsys):
    import nas.dashboard
    from nas.cli import main

    seen = {}

    class FakeProcess:
        def wait(self, timeout=None):
            return 0

    def fake_popen(cmd, env=None, **kwargs):
        seen["cmd"], seen["env"] = cmd, env
        return FakeProcess()

    monkeypatch.setattr(nas.dashboard.subprocess, "Popen", fake_popen)
    url = "postgresql+psycopg://alice:Pw-dashboard-42@db.example/x"
    assert main(["dashboard", f"storage={url}", f"artifacts_dir={tmp_path}/a"]) == 0
    cmd = seen["cmd"]
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert not any("Pw-dashboard-42" in part for part in cmd), cmd  # `ps` shows argv to every user
    assert "Pw-dashboard-42" not in capsys.readouterr().out
    assert any(v == url for v in seen["env"].values())  # it reaches the app through the environment


def _all_rows(url: str) -> str:
    """Every row of every table of the database, as text."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            tables = sa.inspect(conn).get_table_names()
            return "\n".join(repr(row) for t in tables for row in conn.execute(sa.text(f'SELECT * FROM "{t}"')))
    finally:
        engine.dispose()


@pytest.mark.slow
@pytest.mark.postgres
def test_a_database_password_appears_in_no_output_file_attr_or_row(pg_password_study):
    """4 workers + refits + export ran with `postgresql+psycopg://role:PASSWORD@...`."""
    s = pg_password_study
    tmp, url, role, password, run, export = (s[k] for k in ("tmp", "url", "role", "password", "search", "export"))
    assert run.returncode == 0 and export.returncode == 0, run.stderr[-3000:] + export.stderr[-3000:]
    assert password not in run.stdout + run.stderr + export.stdout + export.stderr
    assert f"{role}:***@" in run.stdout  # the URL is shown, masked

    written = [p for p in tmp.rglob("*") if p.is_file()]
    names = {p.name for p in written}
    assert {"provenance.json", "config.json", "model.safetensors"} <= names, names
    assert len([p for p in written if p.suffix == ".log"]) == s["workers"]
    leaks = [str(p) for p in written if password.encode() in p.read_bytes()]
    assert not leaks, f"password written to {leaks}"
    for provenance in (p for p in written if p.name == "provenance.json"):
        assert json.loads(provenance.read_text())["storage"].startswith(f"postgresql+psycopg://{role}:***@")

    rows = _all_rows(url)
    assert "vit-digits" in rows and "random init LoGAH" in rows  # sanity: we read the real rows
    assert password not in rows, "password stored in the database (study/trial attrs or our tables)"

    from nas.config import compose
    from nas.workers import worker_command

    assert password not in " ".join(worker_command(compose(overrides(tmp, url))))  # `ps` shows argv
    _dashboard_reads_without_writing(url)


def _dashboard_reads_without_writing(url: str) -> None:
    """Cross-check of the app's read-only promise: load everything it shows, count writes."""
    import sqlalchemy as sa
    from sqlalchemy import event

    from app import frames
    from app.reader import Reader

    writes: list[str] = []

    def spy(conn, cursor, statement, parameters, context, executemany):
        if re.match(r"\s*(INSERT|UPDATE|DELETE|CREATE|ALTER|DROP|TRUNCATE)\b", statement, re.IGNORECASE):
            writes.append(statement)

    event.listen(sa.engine.Engine, "before_cursor_execute", spy)
    try:
        reader = Reader(url)
        assert reader.study_names() == ["vit-digits"]
        reader.studies()
        trials = reader.trials("vit-digits")
        frames.trials_frame(trials)
        frames.curves_frame(trials)
        assert len(reader.versions("vit-digits")) >= 1
        with pytest.raises(sa.exc.DBAPIError, match="read-only"):
            with reader.engine.begin() as conn:  # the driver itself refuses writes
                conn.execute(sa.text("DELETE FROM logah_leases"))
        reader.close()
    finally:
        event.remove(sa.engine.Engine, "before_cursor_execute", spy)
    assert writes == ["DELETE FROM logah_leases"], writes  # only our own probe tried to write


def test_child_environment_carries_no_debug_flag():
    """Guard: the CLI children of this suite print one-line errors (LOGAH_DEBUG unset)."""
    assert "LOGAH_DEBUG" not in child_env()
