"""The pod policy (flowd.k8s.policy): what a submission may ask of the cluster."""

from __future__ import annotations

from typing import Any

import pytest

from flowd.engine.messages import StartOp
from flowd.k8s.config import Connection, Settings
from flowd.k8s.kubeflow import build_job
from flowd.k8s.pod import ConversionError, build_pod


def op(run: dict[str, Any], *, kind: str = "job", namespace: str | None = None) -> StartOp:
    return StartOp(run_id="r", path="p", attempt=1, key="r/p#1", kind=kind, params={}, run=run, namespace=namespace)


def job(container: dict[str, Any] | None = None, **run: Any) -> dict[str, Any]:
    return {"container": {"image": "img", **(container or {})}, **run}


REFUSED = {
    "privileged": (job({"securityContext": {"privileged": True}}),
                   "containers[main].securityContext.privileged", "allow_privileged"),
    "escalation": (job({"securityContext": {"allowPrivilegeEscalation": True}}),
                   "containers[main].securityContext.allowPrivilegeEscalation", "allow_privileged"),
    "privileged-sidecar": (job(sidecars=[{"name": "s", "image": "i", "securityContext": {"privileged": True}}]),
                           "containers[s].securityContext.privileged", "allow_privileged"),
    "privileged-init": (job(init=[{"container": {"name": "i0", "image": "i", "securityContext": {"privileged": True}}}]),
                        "initContainers[i0].securityContext.privileged", "allow_privileged"),
    "host-path": (job(volumes=[{"name": "root", "hostPath": {"path": "/"}}]), "run.volumes[0].hostPath", "allow_host_path"),
    "host-network": (job(environment={"hostNetwork": True}), "environment.hostNetwork", "allow_host_namespaces"),
    "host-pid": (job(environment={"hostPID": True}), "environment.hostPID", "allow_host_namespaces"),
    "capabilities": (job({"securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}),
                     "containers[main].securityContext.capabilities.add", "allowed_capabilities"),
    "root-pod": (job(environment={"securityContext": {"runAsUser": 0}}), "environment.securityContext.runAsUser",
                 "allow_root"),
    "root-container": (job({"securityContext": {"runAsUser": 0}}), "containers[main].securityContext.runAsUser",
                       "allow_root"),
    "run-as-non-root-false": (job({"securityContext": {"runAsNonRoot": False}}),
                              "containers[main].securityContext.runAsNonRoot", "allow_root"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_and_the_message_names_the_field_and_the_setting(case: str) -> None:
    run, field, setting = REFUSED[case]
    with pytest.raises(ConversionError) as info:
        build_pod(op(run), Settings())
    assert field in str(info.value) and f"`{setting}`" in str(info.value)
    # the setting named in the message does allow it (and turning the policy off does too)
    allow: dict[str, Any] = {setting: ["*"] if setting == "allowed_capabilities" else True}
    build_pod(op(run), Settings(**allow))
    build_pod(op(run), Settings(pod_policy=False))


def test_kubeflow_replicas_are_checked_too() -> None:
    run = {"worker": {"replicas": 2, "container": {"image": "i", "securityContext": {"privileged": True}}}}
    with pytest.raises(ConversionError, match="privileged"):
        build_job(op(run, kind="tfjob"), Settings())
    with pytest.raises(ConversionError, match="namespace 'kube-system' is not allowed"):
        build_job(op({"worker": {"container": {"image": "i"}}}, kind="tfjob", namespace="kube-system"), Settings())


def test_namespaces_default_to_the_daemons_own() -> None:
    assert build_pod(op(job()), Settings(namespace="ml"))["metadata"]["namespace"] == "ml"
    with pytest.raises(ConversionError) as info:
        build_pod(op(job(), namespace="kube-system"), Settings(namespace="ml"))
    assert "namespace 'kube-system' is not allowed (allowed: ml;" in str(info.value)
    assert "`allowed_namespaces`" in str(info.value)
    settings = Settings(namespace="ml", allowed_namespaces=["ml", "ml-gpu"])
    assert build_pod(op(job(), namespace="ml-gpu"), settings)["metadata"]["namespace"] == "ml-gpu"
    with pytest.raises(ConversionError):
        build_pod(op(job(), namespace="other"), settings)
    assert build_pod(op(job(), namespace="x"), Settings(allowed_namespaces=["*"]))["metadata"]["namespace"] == "x"


def test_allowed_capabilities_are_a_list() -> None:
    run = job({"securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"]}}})
    build_pod(op(run), Settings(allowed_capabilities=["NET_BIND_SERVICE"]))
    with pytest.raises(ConversionError, match="SYS_ADMIN"):
        build_pod(op(job({"securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE", "SYS_ADMIN"]}}})),
                  Settings(allowed_capabilities=["NET_BIND_SERVICE"]))


def test_host_path_connections_are_the_operators_choice() -> None:
    settings = Settings(connections={"scratch": Connection(kind="host_path", schema={"hostPath": "/mnt", "mountPath": "/m"})})
    pod = build_pod(op(job(connections=["scratch"])), settings)
    assert pod["spec"]["volumes"][0]["hostPath"] == {"path": "/mnt"}


def test_restricted_defaults_fill_only_what_the_op_left_unset() -> None:
    pod = build_pod(op(job({"securityContext": {"runAsUser": 1000, "capabilities": {"add": []}}})), Settings())
    spec = pod["spec"]
    assert spec["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    main = spec["containers"][0]["securityContext"]
    assert main == {"runAsUser": 1000, "allowPrivilegeEscalation": False, "capabilities": {"add": [], "drop": ["ALL"]}}
    plain = build_pod(op(job()), Settings(restricted_defaults=False))["spec"]
    assert "securityContext" not in plain and "securityContext" not in plain["containers"][0]
