"""Workers on other machines: artifacts in an S3 bucket (`artifacts_dir=s3://bucket/prefix`).

An S3 server (moto's server mode) runs in this process on 127.0.0.1 at a free port; endpoint and
credentials reach the CLI children only through the standard AWS environment variables. Skipped
when boto3 / moto are not installed (`pip install -e ".[s3,s3test]"`, as `.ci/run` does).
"""
from __future__ import annotations

import io
import socket

import pytest
from _rel import run_cli, sqlite_url, overrides

pytest.importorskip("boto3")
pytest.importorskip("moto.server")

SECRET = "s3-Secret-Never-Printed"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(s3_endpoint, monkeypatch):
    env = {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": SECRET,
           "AWS_DEFAULT_REGION": "us-east-1"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    import boto3

    bucket = f"logah-{socket.gethostname().lower()[:10]}-{_free_port()}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return bucket, env


def test_s3_store_round_trips_under_its_prefix_and_is_chosen_by_the_url(aws_env):
    import boto3
    from optuna.artifacts.exceptions import ArtifactNotFound

    from nas.storage import PrefixedBoto3ArtifactStore, StudyStorage, check_artifact_store, make_artifact_store

    bucket, _ = aws_env
    store = make_artifact_store(f"s3://{bucket}/runs/a")
    assert isinstance(store, PrefixedBoto3ArtifactStore)
    store.write("x1", io.BytesIO(b"weights"))
    assert store.open_reader("x1").read() == b"weights"
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["runs/a/x1"]
    store.remove("x1")
    with pytest.raises(ArtifactNotFound):
        store.open_reader("x1")
    check_artifact_store(store, f"s3://{bucket}/runs/a")
    assert StudyStorage.open("sqlite://", f"s3://{bucket}/p").artifacts.prefix == "p/"


def test_search_and_a_worker_with_artifacts_in_s3(tmp_path, aws_env):
    import boto3

    bucket, env = aws_env
    url, arts = sqlite_url(tmp_path), f"s3://{bucket}/study1"
    run = run_cli(["search", *overrides(tmp_path, url, "n_trials=2", "workers=1"), f"artifacts_dir={arts}"],
                  cwd=tmp_path, **env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "exported to" in run.stdout and not (tmp_path / "artifacts").exists()
    assert SECRET not in run.stdout + run.stderr
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix="study1/")["Contents"]]
    assert len(keys) >= 3  # hypernet v0 + the weights of 2 trials; no probe left behind
    assert not any(".logah-probe" in k for k in keys)
    # a worker joining from "another machine": same database, artifacts only through S3
    more = run_cli(["worker", "study_name=vit-digits", f"artifacts_dir={arts}", "n_trials=3", "device=cpu"],
                   cwd=tmp_path, LOGAH_NAS_STORAGE=url, **env)
    assert more.returncode == 0, more.stdout[-3000:] + more.stderr[-3000:]


def test_unreachable_artifact_store_fails_at_start_naming_the_setting(tmp_path, aws_env):
    bucket, env = aws_env
    url = sqlite_url(tmp_path)
    dead = {**env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{_free_port()}"}  # nothing listens there
    run = run_cli(["search", *overrides(tmp_path, url, "n_trials=1", "workers=1"), f"artifacts_dir=s3://{bucket}/x"],
                  cwd=tmp_path, timeout=120, **dead)
    assert run.returncode == 2, run.stdout[-3000:] + run.stderr[-3000:]
    assert "artifacts_dir=" in run.stderr and "AWS_ENDPOINT_URL" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr and SECRET not in run.stdout + run.stderr
    # the same from a worker joining an existing study (created with a reachable store)
    ok = run_cli(["search", *overrides(tmp_path, url, "n_trials=1", "workers=1"), f"artifacts_dir=s3://{bucket}/y"],
                 cwd=tmp_path, **env)
    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-3000:]
    w = run_cli(["worker", "study_name=vit-digits", f"artifacts_dir=s3://{bucket}/y", "n_trials=2", "device=cpu"],
                cwd=tmp_path, timeout=120, LOGAH_NAS_STORAGE=url, **dead)
    assert w.returncode == 2 and "artifacts_dir=" in w.stderr and "Traceback" not in w.stderr, w.stderr[-3000:]
    # no bucket at all: the same clear error
    w = run_cli(["worker", "study_name=vit-digits", "artifacts_dir=s3://no-such-bucket-here/y", "device=cpu"],
                cwd=tmp_path, timeout=120, LOGAH_NAS_STORAGE=url, **env)
    assert w.returncode == 2 and "artifacts_dir=" in w.stderr and "NoSuchBucket" in w.stderr, w.stderr[-3000:]
