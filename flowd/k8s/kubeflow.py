"""StartOp -> Kubeflow training-operator custom resources (TFJob, PyTorchJob, MPIJob), pure.

A distributed op's runtime body names its replicas the Polyaxon way (``chief``/``ps``/
``worker``/``evaluator`` for tfjob, ``master``/``worker`` for pytorchjob, ``launcher``/
``worker`` for mpijob); each replica is ``{replicas, environment, connections, volumes, init,
sidecars, container}`` and becomes a pod template through the same conversion as a job's pod
(flowd.k8s.pod.pod_spec). The operator (not flowd) creates the replica pods; flowd watches the
CR and maps its conditions (flowd.k8s.status.kubeflow_observe). Retries stay the engine's, so
``runPolicy.backoffLimit`` is 0 and every replica's ``restartPolicy`` is Never.

API: ``kubeflow.org/v1`` (training-operator) for all three kinds.
"""

from __future__ import annotations

import math
from typing import Any

from flowd.engine import StartOp
from flowd.k8s import naming as N
from flowd.k8s.config import Settings
from flowd.k8s.pod import (
    ConversionError,
    checked_namespace,
    identity_annotations,
    identity_labels,
    pod_spec,
)

__all__ = ["KUBEFLOW_KINDS", "GROUP", "VERSION", "build_job", "resource_path"]

GROUP = "kubeflow.org"
VERSION = "v1"


class _Kind:
    def __init__(self, kind: str, plural: str, specs_field: str, replicas: dict[str, str], container: str) -> None:
        self.kind, self.plural, self.specs_field = kind, plural, specs_field
        self.replicas = replicas  # Polyaxon field -> operator replica type
        self.container = container  # the container name the operator treats as the main one


KUBEFLOW_KINDS: dict[str, _Kind] = {
    "tfjob": _Kind("TFJob", "tfjobs", "tfReplicaSpecs",
                   {"chief": "Chief", "ps": "PS", "worker": "Worker", "evaluator": "Evaluator"}, "tensorflow"),
    "pytorchjob": _Kind("PyTorchJob", "pytorchjobs", "pytorchReplicaSpecs",
                        {"master": "Master", "worker": "Worker"}, "pytorch"),
    "mpijob": _Kind("MPIJob", "mpijobs", "mpiReplicaSpecs", {"launcher": "Launcher", "worker": "Worker"}, "mpi"),
}


def resource_path(kind: str, namespace: str) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{KUBEFLOW_KINDS[kind].plural}"


def build_job(cmd: StartOp, settings: Settings) -> dict[str, Any]:
    k = KUBEFLOW_KINDS.get(cmd.kind)
    if k is None:
        raise ConversionError(f"not a Kubeflow kind: {cmd.kind!r}")
    run = cmd.run or {}
    name = N.pod_name(cmd.run_id, cmd.path, cmd.attempt)
    labels = identity_labels(cmd, settings, name)
    specs: dict[str, Any] = {}
    for field, replica_type in k.replicas.items():
        replica = run.get(field)
        if replica is None:
            continue
        if not isinstance(replica, dict):
            raise ConversionError(f"run.{field} must be a mapping")
        replica_run = {key: v for key, v in replica.items() if key != "replicas"}
        spec, _ = pod_spec(replica_run, cmd, settings, main_name=k.container)
        env = replica.get("environment") or {}
        template_meta = {
            "labels": {**{str(a): str(b) for a, b in (env.get("labels") or {}).items()}, **labels},
            "annotations": {**{str(a): str(b) for a, b in (env.get("annotations") or {}).items()},
                            **identity_annotations(cmd, settings)},
        }
        specs[replica_type] = {
            "replicas": int(replica.get("replicas", 1)),
            "restartPolicy": "Never",
            "template": {"metadata": template_meta, "spec": spec},
        }
    if not specs:
        raise ConversionError(f"{cmd.kind}: no replicas (expected one of {', '.join(k.replicas)})")
    run_policy: dict[str, Any] = {"backoffLimit": 0}
    if run.get("cleanPodPolicy"):
        run_policy["cleanPodPolicy"] = run["cleanPodPolicy"]
    if run.get("schedulingPolicy"):
        run_policy["schedulingPolicy"] = run["schedulingPolicy"]
    if cmd.termination.timeout:
        run_policy["activeDeadlineSeconds"] = max(1, math.ceil(cmd.termination.timeout))
    body: dict[str, Any] = {"runPolicy": run_policy, k.specs_field: specs}
    if cmd.kind == "mpijob" and run.get("slotsPerWorker") is not None:
        body["slotsPerWorker"] = int(run["slotsPerWorker"])
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": k.kind,
        "metadata": {
            "name": name,
            "namespace": checked_namespace(cmd, settings),
            "labels": labels,
            "annotations": identity_annotations(cmd, settings),
        },
        "spec": body,
    }
