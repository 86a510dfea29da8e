"""A kill aimed at the step between reading an op's stored outputs report and reporting it
(``k8s.report_read``), with a real ``flowd serve --executor k8s`` on the real broker, apiserver
+ kwok and S3 server (gofakes3). The op's outputs are over the termination message's 4 KiB, so
its pod carries only the uploader's pointer (written by the real uploader process beforehand,
as its sidecar would). After the kill the restarted daemon adopts the succeeded pod, reads the
same report again, and reports the op once, with all its outputs, from its one pod."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import anyio
import pytest

from flowd.daemon import wire
from flowd.daemon.client import publish
from flowd.daemon.testing import DaemonProcess, EventCollector, restart_after_crashes, test_config
from flowd.spec.compiled import IOSpec, Termination
from tests.integration.k8s_helpers import dag, job, outcome, untaint_nodes

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.k8s, pytest.mark.asyncio(loop_scope="session")]


def _pointer(s3_server, tmp_path: Path, store: str, run_id: str, outputs: dict) -> dict:
    shared = tmp_path / "shared"
    (shared / "out").mkdir(parents=True)
    (shared / "outputs.json").write_text(json.dumps(outputs))
    (shared / "exit-code").write_text("0\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FLOWD_"))}
    env.update(s3_server.env())
    env.update({"FLOWD_ARTIFACTS_STORE": store, "FLOWD_ARTIFACTS": str(shared / "out"),
                "FLOWD_ARTIFACTS_EXIT": str(shared / "exit-code"), "FLOWD_ARTIFACTS_PREFIX": f"{run_id}/train",
                "FLOWD_OUTPUTS": str(shared / "outputs.json"), "FLOWD_ARTIFACTS_REPORT": f"{run_id}/train/.flowd/1",
                "FLOWD_TERMINATION_LOG": str(tmp_path / "uploader.msg")})
    subprocess.run([sys.executable, "-m", "flowd.artifacts.podside", "upload"], env=env, timeout=60, check=True)
    pointer = json.loads((tmp_path / "uploader.msg").read_text())
    assert "report" in pointer
    return pointer


async def test_a_kill_after_reading_the_outputs_report_loses_and_repeats_nothing(
        kafka_broker, k8s_cluster, k8s_namespace, s3_server, tmp_path: Path) -> None:
    untaint_nodes(k8s_cluster)
    crashes = tmp_path / "crashes"
    crashes.mkdir()
    store = f"s3://{s3_server.bucket}/crash-{uuid.uuid4().hex[:6]}"
    run_id = str(uuid.uuid4())
    rows = [f"row-{i:05d}" for i in range(1500)]
    pointer = _pointer(s3_server, tmp_path, store, run_id, {"rows": rows})

    config = test_config(kafka_broker.bootstrap, name="k8srep", state_dir=str(tmp_path / "state"), executor="k8s",
                         instance_id="k8srep-1", partitions=1, snapshot_interval=0.5)
    executor_config = {"kubeconfig": str(k8s_cluster.kubeconfig), "namespace": k8s_namespace,
                       "watch_namespaces": [k8s_namespace], "reconcile_interval": 1.0, "init_image": "flowd:it",
                       "artifacts_store": store, "artifacts_endpoint": s3_server.endpoint}
    env = {"FLOWD_TEST_CRASH_AT": "k8s.report_read", "FLOWD_TEST_CRASH_DIR": str(crashes),
           "FLOWD_EXECUTOR_CONFIG": json.dumps(executor_config), **s3_server.env()}
    pipeline = dag("k8s-report", [job("train", termination=Termination(ttl=0), outputs=[IOSpec(name="rows", type="list")],
                                      annotations=outcome(run_for="500ms", message=pointer))])
    events = EventCollector(config)
    daemons = [DaemonProcess(config, log_path=tmp_path / "serve-0.log", env=env).start()]
    api = k8s_cluster.api()
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(events.run)
            await daemons[-1].wait_ready(timeout=60)
            await publish(config, config.topics.runs, run_id,
                          wire.Submission(run_id=run_id, time=time.time(), pipeline=pipeline))
            with anyio.fail_after(180):
                kills = await restart_after_crashes(daemons, lambda: bool(events.completions(run_id)),
                                                    log_dir=tmp_path)
            with anyio.fail_after(30):  # ttl 0: the pod goes once reported (no finalizer left behind)
                while api.json("GET", f"/api/v1/namespaces/{k8s_namespace}/pods")["items"]:
                    await anyio.sleep(0.2)
            tg.cancel_scope.cancel()
        statuses = [e for e in events.of(run_id) if isinstance(e, wire.StatusEvent) and e.path == "train"]
        done = [e for e in statuses if e.status in ("succeeded", "failed")]
        assert [(e.attempt, e.status) for e in done] == [(1, "succeeded")], [(e.status, e.reason, e.message) for e in done]
        assert done[0].outputs == {"rows": rows}
        assert kills == 1 == len(list(crashes.iterdir()))
    finally:
        codes = [d.terminate() for d in daemons]
    assert codes[-1] == 0
