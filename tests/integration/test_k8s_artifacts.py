"""Artifacts on the real apiserver (kwok runs no containers): with an S3 store in the executor
settings, the producer's pod carries the exit-code wrapper and the ``flowd-artifacts`` uploader,
the consumer's pod downloads what its ``artifacts.base`` ref names in a ``flowd-inputs`` init
container, and the store credentials are secret references on flowd's containers only. The
apiserver validates and returns these specs; the processes inside are tested for real against
an S3 server in test_artifacts_pod.py."""

from __future__ import annotations

import asyncio
import json

import pytest
from kubernetes_asyncio import client

from flowd.artifacts.podside import WRAPPER
from flowd.engine.messages import Submit
from flowd.k8s import naming as N
from flowd.k8s.harness import Harness
from flowd.spec.compiled import IOSpec, ParamSpec
from tests.integration.k8s_helpers import dag, executor, job, outcome, untaint_nodes

pytestmark = [pytest.mark.integration, pytest.mark.k8s, pytest.mark.asyncio(loop_scope="session")]

STORE = "s3://artifacts/team-a"
CONNECTIONS = {"store": {"kind": "s3", "schema": {"bucket": "s3://artifacts"},
                         "secret": {"name": "s3-creds", "items": ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]}}}


@pytest.fixture(autouse=True)
def _schedulable(k8s_cluster):
    untaint_nodes(k8s_cluster)


async def test_producer_uploads_and_consumer_downloads_through_the_pod_spec(k8s_cluster, k8s_namespace, k8s_api):
    pipeline = dag("art", [
        job("train", annotations=outcome()),
        job("evaluate", upstream=["train"], inputs=[IOSpec(name="base", type="str")],
            params={"base": ParamSpec(ref="ops.train", value="artifacts.base", to_env="MODEL_DIR")},
            annotations=outcome()),
    ])
    h = Harness()
    v1 = client.CoreV1Api(k8s_api)
    async with executor(k8s_cluster, k8s_namespace, h, default_ttl=None, init_image="flowd:it",
                        artifacts_store=STORE, artifacts_endpoint="http://minio.storage:9000",
                        artifacts_connection="store", connections=CONNECTIONS) as ex:
        run = Submit(run_id="r-art", pipeline=pipeline, time=0.0, context={"artifacts_store": STORE})
        views = await asyncio.wait_for(h.run(ex, run), 60)
        assert {p: o.status for p, o in views["r-art"].ops.items() if p} == {"train": "succeeded",
                                                                              "evaluate": "succeeded"}
        train = await v1.read_namespaced_pod(N.pod_name("r-art", "train", 1), k8s_namespace)
        evaluate = await v1.read_namespaced_pod(N.pod_name("r-art", "evaluate", 1), k8s_namespace)

    main, uploader = train.spec.containers
    assert main.command[:4] == ["/bin/sh", "-c", WRAPPER, "flowd-wrap"] and main.command[4:] == ["step"]
    assert {e.name: e.value for e in main.env}["FLOWD_ARTIFACTS"] == "/flowd/artifacts/out"
    assert (uploader.name, uploader.image) == ("flowd-artifacts", "flowd:it")
    up_env = {e.name: e for e in uploader.env}
    assert up_env["FLOWD_ARTIFACTS_PREFIX"].value == "r-art/train"
    assert up_env["FLOWD_ARTIFACTS_STORE"].value == STORE
    assert up_env["AWS_SECRET_ACCESS_KEY"].value_from.secret_key_ref.name == "s3-creds"
    assert not any("AWS_" in e.name for e in main.env)
    assert {v.name for v in train.spec.volumes if v.empty_dir is not None} >= {"flowd-artifacts"}

    (fetch,) = [c for c in evaluate.spec.init_containers if c.name == "flowd-inputs"]
    pairs = json.loads({e.name: e.value for e in fetch.env}["FLOWD_FETCH"])
    assert pairs == [["r-art/train", "/flowd/inputs/r-art/train"]]
    assert {e.name: e.value for e in evaluate.spec.containers[0].env}["MODEL_DIR"] == "/flowd/inputs/r-art/train"
    assert "/flowd/inputs" in {m.mount_path for m in evaluate.spec.containers[0].volume_mounts}


def _uploaded_pointer(s3_server, tmp_path, store_prefix: str, run_id: str, op: str, outputs: dict) -> dict:
    """Run the real ``flowd-artifacts`` uploader (as its container would) for attempt 1 of
    ``run_id``/``op``, the op having written ``outputs``: its termination message, a pointer."""
    import os
    import subprocess
    import sys

    shared = tmp_path / "shared"
    (shared / "out").mkdir(parents=True)
    (shared / "out" / "model").write_text("w")
    (shared / "outputs.json").write_text(json.dumps(outputs))
    (shared / "exit-code").write_text("0\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FLOWD_"))}
    env.update(s3_server.env())
    env.update({"FLOWD_ARTIFACTS_STORE": f"s3://{s3_server.bucket}/{store_prefix}",
                "FLOWD_ARTIFACTS": str(shared / "out"), "FLOWD_ARTIFACTS_EXIT": str(shared / "exit-code"),
                "FLOWD_ARTIFACTS_PREFIX": f"{run_id}/{op}", "FLOWD_OUTPUTS": str(shared / "outputs.json"),
                "FLOWD_ARTIFACTS_REPORT": f"{run_id}/{op}/.flowd/1",
                "FLOWD_TERMINATION_LOG": str(tmp_path / "uploader.msg")})
    r = subprocess.run([sys.executable, "-m", "flowd.artifacts.podside", "upload"], env=env, timeout=60)
    assert r.returncode == 0
    pointer = json.loads((tmp_path / "uploader.msg").read_text())
    assert set(pointer) == {"location", "report"}
    return pointer


async def test_outputs_over_4_kib_are_read_back_from_the_store_before_the_success(
        k8s_cluster, k8s_namespace, s3_server, tmp_path, monkeypatch):
    """The pod's termination message carries only the uploader's pointer (the kubelet keeps 4 KiB);
    the executor reads the 30 KB report from the real S3 server, checks it, and reports the
    outputs, file outputs bound to the store. A pointer that does not match what is stored
    (another digest) fails the op with OutputsUnavailable instead of reporting wrong outputs."""
    from flowd.engine.messages import OpStatus

    for key, value in s3_server.env().items():  # the executor's own credentials: its environment
        monkeypatch.setenv(key, value)
    store = f"s3://{s3_server.bucket}/k8s-big"
    rows = [f"row-{i:05d}" for i in range(3000)]
    pointer = _uploaded_pointer(s3_server, tmp_path / "good", "k8s-big", "r-big", "train", {"rows": rows})
    bad = _uploaded_pointer(s3_server, tmp_path / "bad", "k8s-big", "r-big", "tampered", {"rows": rows[:10] * 100})
    bad["report"]["sha256"] = "0" * 64
    assert len(json.dumps(pointer)) < 1024
    outputs = [IOSpec(name="rows", type="list"), IOSpec(name="model", type="path")]
    pipeline = dag("big", [job("train", annotations=outcome(message=pointer), outputs=outputs),
                           job("tampered", annotations=outcome(message=bad), outputs=outputs)])

    h = Harness()
    async with executor(k8s_cluster, k8s_namespace, h, default_ttl=None, init_image="flowd:it",
                        artifacts_store=store, artifacts_endpoint=s3_server.endpoint) as ex:
        ex.reports.backoff = 0.05
        views = await asyncio.wait_for(h.run(ex, Submit(run_id="r-big", pipeline=pipeline, time=0.0,
                                                        context={"artifacts_store": store})), 60)
    assert {p: o.status for p, o in views["r-big"].ops.items() if p} == {"train": "succeeded", "tampered": "failed"}
    (done,) = [e for e in h.events if isinstance(e, OpStatus) and e.path == "train" and e.status == "succeeded"]
    assert done.outputs == {"rows": rows, "model": f"{store}/r-big/train/model"}
    (failed,) = [e for e in h.events if isinstance(e, OpStatus) and e.path == "tampered" and e.status == "failed"]
    assert failed.reason == "OutputsUnavailable" and "is not the one the pod wrote" in (failed.message or "")
    assert "r-big/tampered/.flowd/1/report.json" in (failed.message or "")


async def test_an_image_without_a_shell_fails_at_once_and_its_pod_is_taken_down(k8s_cluster, k8s_namespace):
    """The wrapper needs /bin/sh. In an image without one the main container never starts
    (the runtime's StartError), so it never tells the uploader sidecar, which would keep the pod
    Running for ever. The op fails at once, with a message naming the image, and flowd deletes
    the pod. kwok runs no containers: the kubelet's status for that case is written here."""
    from tests.integration.k8s_helpers import merge_patch, wait_for

    pipeline = dag("nosh", [job("train", annotations=outcome("hang"))])
    h = Harness()
    name = N.pod_name("r-nosh", "train", 1)
    api = k8s_cluster.api()
    path = f"/api/v1/namespaces/{k8s_namespace}/pods/{name}"
    async with executor(k8s_cluster, k8s_namespace, h, default_ttl=None, init_image="flowd:it",
                        artifacts_store=STORE, artifacts_endpoint="http://minio.storage:9000") as ex:
        running = asyncio.create_task(h.run(ex, Submit(run_id="r-nosh", pipeline=pipeline, time=0.0,
                                                       context={"artifacts_store": STORE})))

        async def running_pod() -> bool:
            try:
                return ((await asyncio.to_thread(api.json, "GET", path)).get("status") or {}).get("phase") == "Running"
            except RuntimeError:  # not created yet
                return False

        await wait_for(running_pod, timeout=30, what="the pod running")
        start_error = ('failed to create containerd task: failed to create shim task: OCI runtime create failed: '
                       'runc create failed: unable to start container process: exec: "/bin/sh": stat /bin/sh: '
                       'no such file or directory: unknown')
        await asyncio.to_thread(merge_patch, k8s_cluster, path + "/status", {"status": {"containerStatuses": [
            {"name": "main", "image": "flowd/step:test", "imageID": "", "ready": False, "restartCount": 0,
             "state": {"terminated": {"exitCode": 128, "reason": "StartError", "message": start_error}}},
            {"name": "flowd-artifacts", "image": "flowd:it", "imageID": "", "ready": True, "restartCount": 0,
             "started": True, "state": {"running": {"startedAt": "2026-12-06T00:00:00Z"}}}]}})
        views = await asyncio.wait_for(running, 30)
        assert views["r-nosh"].ops["train"].status == "failed"

        async def taken_down() -> bool:
            try:
                return bool((await asyncio.to_thread(api.json, "GET", path))["metadata"].get("deletionTimestamp"))
            except RuntimeError:  # already gone
                return True

        await wait_for(taken_down, timeout=30, what="the pod deleted")

    from flowd.engine.messages import OpStatus

    (failed,) = [e for e in h.events if isinstance(e, OpStatus) and e.path == "train" and e.status == "failed"]
    assert failed.reason == "StartError" and failed.exit_code == 128
    assert (failed.message or "").startswith("image 'flowd/step:test' has no /bin/sh, which flowd's artifacts wrapper")
