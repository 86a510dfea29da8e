"""StartOp -> Pod / Service / Kubeflow job manifests (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from flowd.engine.messages import StartOp
from flowd.k8s import naming as N
from flowd.k8s.config import Connection, ConnectionResource, Settings
from flowd.k8s.kubeflow import build_job
from flowd.k8s.pod import ConversionError, build_pod, build_service
from flowd.spec.compiled import Termination


def op(run: dict[str, Any] | None = None, **fields: Any) -> StartOp:
    base: dict[str, Any] = dict(run_id="run-1", path="outer/train", attempt=2, key="run-1/outer/train#2",
                                kind="job", params={},
                                run=run if run is not None else {"container": {"image": "python:3.12"}})
    base.update(fields)
    return StartOp(**base)


def main_of(pod: dict[str, Any]) -> dict[str, Any]:
    return pod["spec"]["containers"][0]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_minimal_pod() -> None:
    pod = build_pod(op(), Settings())
    meta = pod["metadata"]
    assert meta["name"] == N.pod_name("run-1", "outer/train", 2)
    assert meta["namespace"] == "default"
    assert meta["finalizers"] == [N.FINALIZER]
    assert meta["labels"] == {
        "app.kubernetes.io/managed-by": "flowd", "flowd.io/run": "run-1",
        "flowd.io/op": N.label_value("outer/train"), "flowd.io/attempt": "2", "flowd.io/partition": "0",
        "flowd.io/kind": "job", "flowd.io/pod": meta["name"],
    }
    assert meta["annotations"] == {"flowd.io/run-id": "run-1", "flowd.io/op-path": "outer/train",
                                   "flowd.io/attempt": "2", "flowd.io/key": "run-1/outer/train#2",
                                   "flowd.io/main-container": "main"}
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    assert "activeDeadlineSeconds" not in spec
    main = main_of(pod)
    assert main["name"] == "main" and main["image"] == "python:3.12"
    assert main["terminationMessagePath"] == "/dev/termination-log"
    assert main["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert env_of(main) == {"FLOWD_OUTPUTS": "/dev/termination-log", "FLOWD_RUN_ID": "run-1",
                            "FLOWD_OP_PATH": "outer/train", "FLOWD_ATTEMPT": "2",
                            "FLOWD_METRICS_PREFIX": "FLOWD_METRIC "}


def test_full_runtime_body() -> None:
    run = {
        "container": {
            "name": "trainer", "image": "img:1", "command": "python -m train", "args": ["--lr", 0.1],
            "env": [{"name": "A", "value": 1}, {"name": "LR", "value": "from-container"}],
            "resources": {"limits": {"cpu": "2", "memory": "1Gi"}}, "ports": [8080, {"containerPort": 9090}],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        },
        "environment": {
            "labels": {"team": "ml"}, "annotations": {"note": "x", "n": 3},
            "nodeSelector": {"gpu": "true"}, "tolerations": [{"key": "gpu", "operator": "Exists"}],
            "affinity": {"nodeAffinity": {}}, "nodeName": "node-1", "serviceAccountName": "trainer",
            "imagePullSecrets": ["regcred", {"name": "other"}], "securityContext": {"runAsUser": 1000},
            "hostAliases": [{"ip": "10.0.0.9", "hostnames": ["db"]}], "priorityClassName": "high",
            "restartPolicy": "OnFailure",
        },
        "init": [{"container": {"image": "busybox", "command": ["sh", "-c", "echo init"]}}],
        "sidecars": [{"image": "envoy:1", "name": "proxy"}, {"image": "log:1"}],
        "volumes": [{"name": "data", "emptyDir": {}}],
    }
    cmd = op(run, env={"LR": "0.5", "EPOCHS": "3"}, namespace="ml",
             termination=Termination(timeout=90.5, ttl=60, max_retries=2))
    pod = build_pod(cmd, Settings(image_pull_policy="IfNotPresent", allowed_namespaces=["ml"]))
    spec, meta = pod["spec"], pod["metadata"]
    assert meta["namespace"] == "ml"
    assert meta["labels"]["team"] == "ml" and meta["labels"]["flowd.io/run"] == "run-1"
    assert meta["annotations"]["note"] == "x" and meta["annotations"]["n"] == "3"
    assert meta["annotations"]["flowd.io/ttl"] == "60"
    assert meta["annotations"]["flowd.io/main-container"] == "trainer"
    assert spec["activeDeadlineSeconds"] == 91
    assert spec["restartPolicy"] == "Never"
    assert spec["nodeSelector"] == {"gpu": "true"}
    assert spec["tolerations"] == [{"key": "gpu", "operator": "Exists"}]
    assert spec["affinity"] == {"nodeAffinity": {}}
    assert spec["nodeName"] == "node-1"
    assert spec["serviceAccountName"] == "trainer"
    assert spec["imagePullSecrets"] == [{"name": "regcred"}, {"name": "other"}]
    # the op's own settings, with what the `restricted` Pod Security Standard asks filled in
    assert spec["securityContext"] == {"runAsUser": 1000, "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert spec["hostAliases"] == [{"ip": "10.0.0.9", "hostnames": ["db"]}]
    assert spec["priorityClassName"] == "high"
    assert spec["volumes"] == [{"name": "data", "emptyDir": {}}]
    main = main_of(pod)
    assert main["command"] == ["python", "-m", "train"]
    assert main["args"] == ["--lr", "0.1"]
    assert main["ports"] == [{"containerPort": 8080}, {"containerPort": 9090}]
    assert main["resources"] == {"limits": {"cpu": "2", "memory": "1Gi"}}
    assert main["imagePullPolicy"] == "IfNotPresent"
    env = env_of(main)
    assert env["A"] == "1" and env["LR"] == "0.5" and env["EPOCHS"] == "3"  # toEnv wins
    assert [c["name"] for c in spec["containers"]] == ["trainer", "proxy", "sidecar-1"]
    assert spec["initContainers"][0]["name"] == "init-0"
    assert spec["initContainers"][0]["command"] == ["sh", "-c", "echo init"]


def test_connections() -> None:
    settings = Settings(connections={
        "s3": Connection(kind="s3", secret=ConnectionResource(name="aws", items=["AWS_KEY"]),
                         env=[{"name": "BUCKET", "value": "s3://b"}]),
        "cfg": Connection(config_map=ConnectionResource(name="settings", mount_path="/etc/cfg")),
        "raw": Connection(secret=ConnectionResource(name="all-keys")),
        "data": Connection(kind="volume_claim", schema={"volumeClaim": "pvc-1", "mountPath": "/data", "readOnly": True}),
        "host": Connection(kind="host_path", schema={"hostPath": "/mnt", "mountPath": "/mnt"}),
    })
    run = {"container": {"image": "x"}, "connections": ["s3", "cfg", "raw", "data", "host"]}
    pod = build_pod(op(run), settings)
    main = main_of(pod)
    env = env_of(main)
    assert env["AWS_KEY"] == {"secretKeyRef": {"name": "aws", "key": "AWS_KEY"}}
    assert env["BUCKET"] == "s3://b"
    assert main["envFrom"] == [{"secretRef": {"name": "all-keys"}}]
    mounts = {m["mountPath"]: m for m in main["volumeMounts"]}
    assert set(mounts) == {"/etc/cfg", "/data", "/mnt"}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes[mounts["/etc/cfg"]["name"]]["configMap"] == {"name": "settings"}
    assert volumes[mounts["/data"]["name"]]["persistentVolumeClaim"] == {"claimName": "pvc-1", "readOnly": True}
    assert volumes[mounts["/mnt"]["name"]]["hostPath"] == {"path": "/mnt"}
    for name in volumes:
        assert len(name) <= 63


@pytest.mark.parametrize(
    ("run", "message"),
    [
        pytest.param({}, "run.container with an image", id="no-container"),
        pytest.param({"container": {"image": "x"}, "connections": ["nope"]}, "unknown connection 'nope'", id="connection"),
        pytest.param({"container": {"image": "x"}, "init": [{"git": {"url": "u"}, "file": {"content": "x"}}]},
                         r"init\[0\]: one handler per step, got git, file", id="two-init-handlers"),
            pytest.param({"container": {"image": "x"}, "init": [{"tensorboard": {"uuids": ["u"]}}]},
                         "tensorboard init steps need Polyaxon", id="tensorboard-init"),
            pytest.param({"container": {"image": "x"}, "init": [{"connection": "nope"}]},
                         r"init\[0\]: unknown connection 'nope'", id="init-connection"),
        pytest.param({"container": {"image": "x"}, "environment": {"bogus": 1}}, "unknown field 'bogus'", id="env-key"),
        pytest.param({"container": {"image": "x"}, "sidecars": [{"image": "y", "name": "main"}]}, "unique", id="dup-names"),
    ],
)
def test_conversion_errors(run: dict[str, Any], message: str) -> None:
    with pytest.raises(ConversionError, match=message):
        build_pod(op(run), Settings())


def test_namespace_and_partition_defaults() -> None:
    pod = build_pod(op(), Settings(namespace="flowd-ops", partition_count=12, finalizer=False,
                                   extra_labels={"env": "prod"}, default_ttl=30))
    meta = pod["metadata"]
    assert meta["namespace"] == "flowd-ops"
    assert "finalizers" not in meta
    assert meta["labels"]["env"] == "prod"
    assert 0 <= int(meta["labels"]["flowd.io/partition"]) < 12
    assert meta["annotations"]["flowd.io/ttl"] == "30"


def test_service() -> None:
    cmd = op({"container": {"image": "nginx"}, "ports": [80, {"port": 443, "targetPort": 8443, "name": "tls"}]},
             kind="service")
    pod = build_pod(cmd, Settings())
    svc = build_service(cmd, Settings(), pod)
    assert svc is not None
    assert svc["metadata"]["name"] == pod["metadata"]["name"]
    assert svc["spec"]["selector"] == {"flowd.io/pod": pod["metadata"]["name"]}
    assert [(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [("p-80", 80, 80), ("tls", 443, 8443)]
    assert main_of(pod)["ports"] == [{"containerPort": 80}, {"containerPort": 8443}]
    assert build_service(op(), Settings(), build_pod(op(), Settings())) is None


@pytest.mark.parametrize(
    ("kind", "run", "field", "types", "container"),
    [
        pytest.param("tfjob", {"chief": {"container": {"image": "tf"}}, "worker": {"replicas": 3, "container": {"image": "tf"}}},
                     "tfReplicaSpecs", {"Chief": 1, "Worker": 3}, "tensorflow", id="tfjob"),
        pytest.param("pytorchjob",
                     {"master": {"container": {"image": "pt"}}, "worker": {"replicas": 2, "container": {"image": "pt"}}},
                     "pytorchReplicaSpecs", {"Master": 1, "Worker": 2}, "pytorch", id="pytorchjob"),
        pytest.param("mpijob", {"launcher": {"container": {"image": "m"}}, "worker": {"replicas": 4, "container": {"image": "m"}},
                                "slotsPerWorker": 2}, "mpiReplicaSpecs", {"Launcher": 1, "Worker": 4}, "mpi", id="mpijob"),
    ],
)
def test_kubeflow_jobs(kind: str, run: dict[str, Any], field: str, types: dict[str, int], container: str) -> None:
    job = build_job(op(run, kind=kind, termination=Termination(timeout=100)), Settings())
    assert job["apiVersion"] == "kubeflow.org/v1"
    assert job["metadata"]["name"] == N.pod_name("run-1", "outer/train", 2)
    assert job["spec"]["runPolicy"] == {"backoffLimit": 0, "activeDeadlineSeconds": 100}
    specs = job["spec"][field]
    assert {t: s["replicas"] for t, s in specs.items()} == types
    for s in specs.values():
        assert s["restartPolicy"] == "Never"
        assert s["template"]["spec"]["containers"][0]["name"] == container
        assert s["template"]["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "flowd"
    if kind == "mpijob":
        assert job["spec"]["slotsPerWorker"] == 2


def test_kubeflow_without_replicas() -> None:
    with pytest.raises(ConversionError, match="no replicas"):
        build_job(op({"container": {"image": "x"}}, kind="tfjob"), Settings())
