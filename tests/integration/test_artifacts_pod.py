"""The pod-side artifact processes (flowd.artifacts.podside) as real processes against a real S3
server (gofakes3): the exit-code wrapper runs the op under /bin/sh, the uploader waits for it
and stores what it wrote, and a consumer's fetch downloads it. kwok runs no containers, so this
is where the code of the ``flowd-artifacts`` and ``flowd-inputs`` containers actually runs; the
pod spec around them is tested on the apiserver (test_k8s_artifacts.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowd.artifacts import StoreConfig, open_store
from flowd.artifacts.podside import WRAPPER

pytestmark = [pytest.mark.integration]


def _env(s3_server, tmp_path: Path, prefix: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FLOWD_"))}
    env.update(s3_server.env())  # the connection's secret, as env
    env.update({"FLOWD_ARTIFACTS_STORE": f"s3://{s3_server.bucket}/{prefix}",
                "FLOWD_ARTIFACTS_ENDPOINT": s3_server.endpoint,
                "FLOWD_ARTIFACTS": str(tmp_path / "shared" / "out"),
                "FLOWD_ARTIFACTS_EXIT": str(tmp_path / "shared" / "exit-code"),
                "FLOWD_TERMINATION_LOG": str(tmp_path / "uploader.msg"), **extra})
    return env


def _pod(env: dict[str, str], script: str) -> tuple[int, int]:
    """The main container (wrapper + op) and the sidecar, started together as in a pod."""
    (Path(env["FLOWD_ARTIFACTS_EXIT"]).parent).mkdir(parents=True, exist_ok=True)
    uploader = subprocess.Popen([sys.executable, "-m", "flowd.artifacts.podside", "upload"], env=env)
    main = subprocess.run(["/bin/sh", "-c", WRAPPER, "flowd-wrap", "sh", "-c", script], env=env, timeout=60)
    return main.returncode, uploader.wait(timeout=60)


def test_a_succeeded_op_is_uploaded_and_a_consumer_fetches_it(s3_server, tmp_path):
    env = _env(s3_server, tmp_path, "pod-a", FLOWD_ARTIFACTS_PREFIX="run-1/train")
    script = 'echo weights > "$FLOWD_ARTIFACTS/model"; mkdir -p "$FLOWD_ARTIFACTS/logs"; echo l > "$FLOWD_ARTIFACTS/logs/a"'
    assert _pod(env, script) == (0, 0)
    told = json.loads((tmp_path / "uploader.msg").read_text())
    assert told == {"location": f"s3://{s3_server.bucket}/pod-a/run-1/train", "present": ["logs", "model"]}

    inputs = tmp_path / "inputs"
    fetch_env = {**env, "FLOWD_FETCH": json.dumps([["run-1/train/model", str(inputs / "model")],
                                                   ["run-1/train", str(inputs / "base")]]),
                 "FLOWD_TERMINATION_LOG": str(tmp_path / "fetch.msg")}
    r = subprocess.run([sys.executable, "-m", "flowd.artifacts.podside", "fetch"], env=fetch_env, timeout=60)
    assert r.returncode == 0
    assert (inputs / "model").read_text() == "weights\n"
    assert (inputs / "base" / "logs" / "a").read_text() == "l\n"
    assert sorted(p.name for p in inputs.iterdir()) == ["base", "model"]  # no leftovers of the file fetch


def test_a_retry_replaces_the_earlier_attempt_and_a_failed_op_stores_nothing(s3_server, tmp_path):
    first = _env(s3_server, tmp_path / "a1", "pod-b", FLOWD_ARTIFACTS_PREFIX="run-2/train")
    assert _pod(first, 'echo 1 > "$FLOWD_ARTIFACTS/old"') == (0, 0)
    failed = _env(s3_server, tmp_path / "a2", "pod-b", FLOWD_ARTIFACTS_PREFIX="run-2/other")
    assert _pod(failed, 'echo 1 > "$FLOWD_ARTIFACTS/x"; exit 3') == (3, 0)
    assert "exited with code 3" in (tmp_path / "a2" / "uploader.msg").read_text()
    retry = _env(s3_server, tmp_path / "a3", "pod-b", FLOWD_ARTIFACTS_PREFIX="run-2/train")
    assert _pod(retry, 'echo 2 > "$FLOWD_ARTIFACTS/new"') == (0, 0)

    import asyncio

    store = open_store(StoreConfig(url=f"s3://{s3_server.bucket}/pod-b", endpoint=s3_server.endpoint),
                       default_folder=tmp_path, credentials={"access_key_id": s3_server.env()["AWS_ACCESS_KEY_ID"],
                                                             "secret_access_key": s3_server.env()["AWS_SECRET_ACCESS_KEY"]})
    keys = [o.key for o in asyncio.run(store.list("run-2"))]
    assert keys == ["run-2/train/new"]


def test_the_wrapper_passes_sigterm_to_the_op_and_records_its_code(s3_server, tmp_path):
    env = _env(s3_server, tmp_path, "pod-c", FLOWD_ARTIFACTS_PREFIX="run-3/train")
    Path(env["FLOWD_ARTIFACTS_EXIT"]).parent.mkdir(parents=True)
    main = subprocess.Popen(["/bin/sh", "-c", WRAPPER, "flowd-wrap", "sh", "-c",
                             'trap "exit 143" TERM; touch "$FLOWD_ARTIFACTS/started"; while :; do sleep 0.1; done'],
                            env=env)
    started = Path(env["FLOWD_ARTIFACTS"]) / "started"
    for _ in range(200):
        if started.exists():
            break
        import time

        time.sleep(0.05)
    main.terminate()
    assert main.wait(timeout=20) == 143
    assert Path(env["FLOWD_ARTIFACTS_EXIT"]).read_text().strip() == "143"


def test_a_failed_upload_exits_1_with_the_reason(s3_server, tmp_path):
    # (gofakes3 checks no signatures: a bucket that does not exist makes the upload fail)
    env = _env(s3_server, tmp_path, "pod-d", FLOWD_ARTIFACTS_PREFIX="run-4/train",
               FLOWD_ARTIFACTS_STORE="s3://no-such-bucket/x")
    assert _pod(env, 'echo 1 > "$FLOWD_ARTIFACTS/m"') == (0, 1)
    message = (tmp_path / "uploader.msg").read_text()
    assert message.startswith("cannot upload the artifacts:") and "no-such-bucket" in message
    assert s3_server.env()["AWS_SECRET_ACCESS_KEY"] not in message


def test_fetching_a_missing_key_fails_with_its_location(s3_server, tmp_path):
    env = _env(s3_server, tmp_path, "pod-e", FLOWD_FETCH=json.dumps([["run-9/none/model", str(tmp_path / "m")]]))
    r = subprocess.run([sys.executable, "-m", "flowd.artifacts.podside", "fetch"], env=env, timeout=60)
    assert r.returncode == 1
    assert f"s3://{s3_server.bucket}/pod-e/run-9/none/model" in (tmp_path / "uploader.msg").read_text()


def _s3_store(s3_server, prefix: str, tmp_path: Path):
    creds = s3_server.env()
    return open_store(StoreConfig(url=f"s3://{s3_server.bucket}/{prefix}", endpoint=s3_server.endpoint),
                      default_folder=tmp_path, credentials={"access_key_id": creds["AWS_ACCESS_KEY_ID"],
                                                            "secret_access_key": creds["AWS_SECRET_ACCESS_KEY"]})


def test_outputs_over_a_termination_message_go_through_the_store(s3_server, tmp_path):
    """The op writes 20 KB of outputs: the uploader stores its report per attempt and leaves a
    pointer; the executor's reader gets the same outputs back, checked by size and digest."""
    import asyncio

    from flowd.artifacts.podside import INLINE_MAX
    from flowd.k8s.config import Settings
    from flowd.k8s.reports import ReportError, ReportReader

    shared = tmp_path / "shared"
    env = _env(s3_server, tmp_path, "pod-f", FLOWD_ARTIFACTS_PREFIX="run-5/train",
               FLOWD_OUTPUTS=str(shared / "outputs.json"), FLOWD_ARTIFACTS_REPORT="run-5/train/.flowd/3")
    rows = [f"row-{i:05d}" for i in range(2000)]
    script = ('echo w > "$FLOWD_ARTIFACTS/model"; python3 -c \'import json,os; json.dump({"rows": '
              '["row-%05d" % i for i in range(2000)], "n": 2000}, open(os.environ["FLOWD_OUTPUTS"], "w"))\'')
    assert _pod(env, script) == (0, 0)
    message = (tmp_path / "uploader.msg").read_text()
    assert len(message) < INLINE_MAX
    pointer = json.loads(message)
    assert pointer["location"] == f"s3://{s3_server.bucket}/pod-f/run-5/train"
    assert pointer["report"]["at"] == f"s3://{s3_server.bucket}/pod-f/run-5/train/.flowd/3/report.json"
    assert pointer["report"]["bytes"] > 20000

    settings = Settings(artifacts_store=f"s3://{s3_server.bucket}/pod-f", artifacts_endpoint=s3_server.endpoint)
    reader = ReportReader(settings, store=_s3_store(s3_server, "pod-f", tmp_path), backoff=0.01)
    report = asyncio.run(reader.read("run-5", "train", 3, pointer["report"]))
    assert report == {"location": pointer["location"], "present": ["model"], "outputs": {"rows": rows, "n": 2000}}
    # another attempt's key is never read in its place; a digest that does not match is refused
    with pytest.raises(ReportError, match=r"cannot read the outputs report .*\.flowd/4/report\.json"):
        asyncio.run(reader.read("run-5", "train", 4, pointer["report"]))
    with pytest.raises(ReportError, match="is not the one the pod wrote"):
        asyncio.run(reader.read("run-5", "train", 3, {**pointer["report"], "sha256": "0" * 64}))
    small = Settings(artifacts_store=settings.artifacts_store, max_outputs_bytes=1000)
    with pytest.raises(ReportError, match="max_outputs_bytes=1000"):
        asyncio.run(ReportReader(small).read("run-5", "train", 3, {**pointer["report"], "bytes": 70000}))


def test_small_outputs_stay_inline_and_oversized_ones_fail_before_anything_is_stored(s3_server, tmp_path):
    shared = tmp_path / "a" / "shared"
    env = _env(s3_server, tmp_path / "a", "pod-g", FLOWD_ARTIFACTS_PREFIX="run-6/train",
               FLOWD_OUTPUTS=str(shared / "outputs.json"), FLOWD_ARTIFACTS_REPORT="run-6/train/.flowd/1")
    assert _pod(env, 'echo \'{"loss": 0.25}\' > "$FLOWD_OUTPUTS"') == (0, 0)
    assert json.loads((tmp_path / "a" / "uploader.msg").read_text()) == {
        "location": f"s3://{s3_server.bucket}/pod-g/run-6/train", "present": [], "outputs": {"loss": 0.25}}

    shared = tmp_path / "b" / "shared"
    env = _env(s3_server, tmp_path / "b", "pod-g", FLOWD_ARTIFACTS_PREFIX="run-7/train",
               FLOWD_OUTPUTS=str(shared / "outputs.json"), FLOWD_ARTIFACTS_REPORT="run-7/train/.flowd/1",
               FLOWD_MAX_OUTPUTS_BYTES="100")
    script = 'echo m > "$FLOWD_ARTIFACTS/model"; head -c 500 /dev/zero | tr "\\0" x | sed "s/.*/{\\"a\\": \\"&\\"}/" > "$FLOWD_OUTPUTS"'
    assert _pod(env, script) == (0, 1)
    message = (tmp_path / "b" / "uploader.msg").read_text()
    assert message.startswith("InvalidOutputs:") and "max_outputs_bytes" in message

    import asyncio

    assert asyncio.run(_s3_store(s3_server, "pod-g", tmp_path).list("run-7")) == []
