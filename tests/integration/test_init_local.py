"""Init steps and connections under ``flowd run``, end to end: the CLI as a subprocess, real
processes, and a real git server (git's http-backend behind Basic auth, tests/infra/gitserver.py).

What is asserted is what the op sees: the clone at Polyaxon's path and revision, the file with
its mode, the Dockerfile, the copied artifacts, the connection's env and mounted secret; and how
a failing step fails the op (its message names the step, the op's command never runs), that the
op's timeout bounds its init steps, and that a secret shows in no argv, plan or log."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tests.infra.gitserver import GitServer, make_repo

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "pw-7f3a9c"  # a value to look for where it must not be


@pytest.fixture(scope="module")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with GitServer(tmp_path_factory.mktemp("git"), user="ci", password=PASSWORD) as srv:
        make_repo(srv.root / "models.git", {"train.py": "print('main')\n", "README": "models\n"},
                  branches={"v2": {"train.py": "print('v2')\n"}})
        yield srv


def flowd_run(tmp: Path, pipeline: str, *, catalog: dict[str, Any] | None = None,
              timeout: float = 60, secrets_dir: Path | None = None) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    tmp.mkdir(parents=True, exist_ok=True)
    spec = tmp / "p.yaml"
    spec.write_text(textwrap.dedent(pipeline))
    argv = [sys.executable, "-m", "flowd", "run", str(spec), "--state-dir", str(tmp / "state"), "--output", "json",
            "--secrets-dir", str(secrets_dir or tmp / "secrets")]
    if catalog is not None:
        (tmp / "executor.json").write_text(json.dumps({"connections": catalog}))
        argv += ["--executor-config", str(tmp / "executor.json")]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert proc.stdout.strip(), proc.stderr
    return json.loads(proc.stdout), proc


def secret(tmp: Path, name: str, **keys: str) -> None:
    folder = tmp / "secrets" / name
    folder.mkdir(parents=True, exist_ok=True)
    for key, value in keys.items():
        (folder / key).write_text(value)


def attempt_dir(tmp: Path) -> Path:
    (found,) = (tmp / "state" / "runs").glob("*/attempts/*@1")
    return found


def all_text(folder: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in folder.rglob("*")
                     if p.is_file() and ".git" not in p.parts)


GIT_CATALOG = {"models": {"kind": "git", "schema": {"url": "{url}", "revision": "v2"},
                          "secret": {"name": "git-creds", "items": ["POLYAXON_GIT_CREDENTIALS"]}}}


def git_catalog(srv: GitServer) -> dict[str, Any]:
    return json.loads(json.dumps(GIT_CATALOG).replace("{url}", srv.url("models.git")))


def test_git_file_dockerfile_steps_prepare_the_op(tmp_path: Path, git_server: GitServer) -> None:
    secret(tmp_path, "git-creds", POLYAXON_GIT_CREDENTIALS=f"ci:{PASSWORD}")
    report, proc = flowd_run(tmp_path, """
        version: 1.1
        kind: operation
        name: job
        component:
          run:
            kind: job
            init:
              - connection: models
              - file: {filename: run.sh, chmod: "+x", content: "echo from-file"}
              - dockerfile: {image: "python:3.12", run: ["pip install -e ."], env: {A: "1"}}
                path: /build
            container:
              image: python:3.12
              workingDir: /plx-context/artifacts/models
              command: [sh, -c]
              args: ["python3 train.py && /plx-context/artifacts/run.sh && head -1 /build/Dockerfile
                      && echo ctx=$FLOWD_CONTEXT && git remote get-url origin && echo repo-head=$(git rev-parse --abbrev-ref HEAD)"]
    """, catalog=git_catalog(git_server))
    assert report["status"] == "succeeded", report
    out = (attempt_dir(tmp_path) / "stdout.log").read_text()
    assert "v2\n" in out  # the connection's revision, run from the clone (workingDir)
    assert "from-file" in out and "FROM python:3.12" in out
    context = attempt_dir(tmp_path) / "context"
    assert f"ctx={context / 'plx-context'}" in out
    assert git_server.url("models.git") in out  # the remote is the plain URL
    run_sh = context / "plx-context" / "artifacts" / "run.sh"
    assert run_sh.stat().st_mode & stat.S_IXUSR
    dockerfile = (context / "build" / "Dockerfile").read_text()
    assert "ENV A 1" in dockerfile and "RUN pip install -e ." in dockerfile and "WORKDIR /code" in dockerfile
    # the password is in no file of the attempt (plan, logs, the clone's config) nor in flowd's output
    assert PASSWORD not in all_text(attempt_dir(tmp_path))
    assert PASSWORD not in (context / "plx-context" / "artifacts" / "models" / ".git" / "config").read_text()
    assert PASSWORD not in proc.stdout + proc.stderr


def test_a_failing_step_fails_the_op_naming_the_step(tmp_path: Path, git_server: GitServer) -> None:
    secret(tmp_path, "git-creds", POLYAXON_GIT_CREDENTIALS="ci:wrong")
    marker = tmp_path / "main-ran"
    report, _ = flowd_run(tmp_path, f"""
        version: 1.1
        kind: operation
        name: job
        component:
          run:
            kind: job
            init:
              - file: {{content: "x"}}
              - connection: models
            container: {{image: x, command: [touch, "{marker}"]}}
    """, catalog=git_catalog(git_server))
    op = report["ops"]["job"]
    assert (report["status"], op["status"]) == ("failed", "failed")
    assert op["message"].startswith("init[1] git 'models' failed: `git clone ")
    assert "Authentication failed" in op["message"] or "401" in op["message"], op["message"]
    assert not marker.exists()  # the op's command never started


def test_init_steps_count_against_the_op_timeout(tmp_path: Path) -> None:
    pidfile = tmp_path / "sleep.pid"
    started = time.monotonic()
    report, _ = flowd_run(tmp_path, f"""
        version: 1.1
        kind: operation
        name: job
        termination: {{timeout: 2}}
        component:
          run:
            kind: job
            init:
              - container: {{name: slow, image: x, command: [sh, -c, "echo $$ > {pidfile}; exec sleep 60"]}}
            container: {{image: x, command: ["true"]}}
    """)
    assert time.monotonic() - started < 30
    op = report["ops"]["job"]
    assert op["status"] == "failed" and "timed out" in op["message"], op
    pid = int(pidfile.read_text())
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3]


def test_artifacts_from_a_host_path_connection(tmp_path: Path) -> None:
    data = tmp_path / "datasets"
    (data / "train").mkdir(parents=True)
    (data / "train" / "a.csv").write_text("1,2\n")
    (data / "labels.txt").write_text("cat\n")
    catalog = {"data": {"kind": "host_path", "schema": {"hostPath": str(data), "mountPath": "/datasets"}}}
    report, _ = flowd_run(tmp_path, """
        version: 1.1
        kind: operation
        name: job
        component:
          run:
            kind: job
            init:
              - connection: data
                artifacts: {dirs: [train], files: [[labels.txt, meta/labels.txt]]}
            container:
              image: x
              command: [sh, -c, "cat /plx-context/artifacts/data/train/a.csv /plx-context/artifacts/data/meta/labels.txt"]
    """, catalog=catalog)
    assert report["status"] == "succeeded", report
    assert (attempt_dir(tmp_path) / "stdout.log").read_text() == "1,2\ncat\n"

    report, _ = flowd_run(tmp_path / "missing", """
        version: 1.1
        kind: operation
        name: job
        component:
          run:
            kind: job
            init: [{connection: data, artifacts: {files: [nope.csv]}}]
            container: {image: x, command: ["true"]}
    """, catalog=catalog)
    assert "init[0] artifacts from 'data' failed: a file nope.csv in connection 'data' does not exist" in \
        report["ops"]["job"]["message"]


def test_connections_bring_env_and_secrets_to_local_processes(tmp_path: Path) -> None:
    secret(tmp_path, "api", TOKEN=PASSWORD, USER="bob")
    secret(tmp_path, "tls", **{"ca.crt": "CERT"})
    secret(tmp_path, "settings", REGION="eu", TIER="gold")
    catalog = {
        "api": {"kind": "custom", "secret": {"name": "api", "items": ["TOKEN"]}, "env": [{"name": "API_URL", "value": "http://x"}]},
        "tls": {"kind": "custom", "secret": {"name": "tls", "mountPath": "/etc/tls"}},
        "settings": {"kind": "custom", "configMap": {"name": "settings"}},
    }
    report, proc = flowd_run(tmp_path, """
        version: 1.1
        kind: operation
        name: job
        component:
          run:
            kind: job
            connections: [api, tls, settings]
            container:
              image: x
              command: [sh, -c, 'test "$TOKEN" = "$EXPECTED" && echo "$API_URL $REGION $TIER user=${USER_UNSET:-no}" && cat /etc/tls/ca.crt']
              env: [{name: EXPECTED, value: "pw-7f3a9c"}]
    """, catalog=catalog)
    assert report["status"] == "succeeded", (report, proc.stderr)
    assert (attempt_dir(tmp_path) / "stdout.log").read_text() == "http://x eu gold user=no\nCERT"
    # items: only the listed key becomes env (USER was not listed)
    assert PASSWORD not in proc.stderr

    report, _ = flowd_run(tmp_path / "unknown", """
        version: 1.1
        kind: operation
        name: job
        component:
          run: {kind: job, connections: [nope], container: {image: x, command: ["true"]}}
    """, catalog=catalog, secrets_dir=tmp_path / "secrets")
    assert "unknown connection 'nope' (known: api, settings, tls)" in report["ops"]["job"]["message"]

    os.rename(tmp_path / "secrets" / "api", tmp_path / "secrets" / "gone")
    report, _ = flowd_run(tmp_path / "nosecret", """
        version: 1.1
        kind: operation
        name: job
        component:
          run: {kind: job, connections: [api], container: {image: x, command: ["true"]}}
    """, catalog=catalog, secrets_dir=tmp_path / "secrets")
    message = report["ops"]["job"]["message"]
    assert "key 'TOKEN' of the secret 'api' of connection 'api'" in message and "does not exist" in message


def test_artifacts_from_the_default_store(tmp_path: Path) -> None:
    """No connection: the run's artifact store (flowd run: the folder <state dir>/artifacts)."""
    store = tmp_path / "state" / "artifacts" / "runs-of-prep" / "data"
    (store / "imgs").mkdir(parents=True)
    (store / "imgs" / "1.png").write_text("png")
    (store / "labels.csv").write_text("a,b\n")
    report, _ = flowd_run(tmp_path, """
        version: 1.1
        kind: operation
        name: job
        component:
          run:
            kind: job
            init:
              - artifacts: {dirs: [runs-of-prep/data/imgs], files: [[runs-of-prep/data/labels.csv, labels.csv]]}
            container:
              image: x
              command: [sh, -c, "cat /plx-context/artifacts/runs-of-prep/data/imgs/1.png /plx-context/artifacts/labels.csv"]
    """)
    assert report["status"] == "succeeded", report
    assert (attempt_dir(tmp_path) / "stdout.log").read_text() == "pnga,b\n"


def test_artifacts_from_an_s3_connection_with_credentials_from_its_secret(tmp_path: Path) -> None:
    import asyncio

    from flowd.artifacts import StoreConfig, open_store
    from tests.infra import s3 as s3infra
    from tests.infra.common import InfraUnavailable

    server = s3infra.S3Server(run_dir=tmp_path / "s3")
    try:
        asyncio.run(server.start())
    except InfraUnavailable as exc:
        pytest.skip(f"S3 server unavailable: {exc} (python -m tests.infra build s3)")
    try:
        src = tmp_path / "upload"
        (src / "train").mkdir(parents=True)
        (src / "train" / "a.csv").write_text("1\n")
        creds = {"access_key_id": s3infra.ACCESS_KEY, "secret_access_key": s3infra.SECRET_KEY}
        store = open_store(StoreConfig(url=f"s3://{server.bucket}/datasets", endpoint=server.endpoint),
                           default_folder=tmp_path, credentials=creds)
        asyncio.run(store.put("v1", src))
        secret(tmp_path, "s3-creds", AWS_ACCESS_KEY_ID=s3infra.ACCESS_KEY, AWS_SECRET_ACCESS_KEY=s3infra.SECRET_KEY)
        catalog = {"lake": {"kind": "s3", "schema": {"bucket": f"s3://{server.bucket}/datasets", "endpoint": server.endpoint},
                            "secret": {"name": "s3-creds"}}}
        report, proc = flowd_run(tmp_path, """
            version: 1.1
            kind: operation
            name: job
            component:
              run:
                kind: job
                init: [{connection: lake, artifacts: {dirs: [v1/train]}}]
                container: {image: x, command: [cat, /plx-context/artifacts/lake/v1/train/a.csv]}
        """, catalog=catalog)
        assert report["status"] == "succeeded", (report, proc.stderr)
        assert (attempt_dir(tmp_path) / "stdout.log").read_text() == "1\n"
        assert s3infra.SECRET_KEY not in all_text(attempt_dir(tmp_path))
    finally:
        server.stop()
