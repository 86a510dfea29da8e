"""Services (pod + Service) and Kubeflow distributed jobs on the real apiserver.

No training operator runs here: the test installs minimal Kubeflow CRDs, checks the custom
resource flowd creates, and plays the operator by patching the CR's status conditions."""

from __future__ import annotations

import asyncio

import pytest
from kubernetes_asyncio import client

from flowd.engine.messages import OpStatus
from flowd.k8s import naming as N
from flowd.k8s.harness import Harness
from flowd.k8s.kubeflow import KUBEFLOW_KINDS
from tests.integration.k8s_helpers import dag, executor, job, outcome, reports, submit, untaint_nodes, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.k8s, pytest.mark.asyncio(loop_scope="session")]


@pytest.fixture(autouse=True)
def _schedulable(k8s_cluster):
    untaint_nodes(k8s_cluster)


def crd(kind: str, plural: str) -> dict:
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.kubeflow.org"},
        "spec": {
            "group": "kubeflow.org", "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
            "versions": [{
                "name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            }],
        },
    }


async def install_crds(api: client.ApiClient) -> None:
    ext = client.ApiextensionsV1Api(api)
    for k in KUBEFLOW_KINDS.values():
        try:
            await ext.create_custom_resource_definition(crd(k.kind, k.plural))
        except client.ApiException as exc:
            if exc.status != 409:
                raise

    async def established() -> bool:
        for k in KUBEFLOW_KINDS.values():
            c = await ext.read_custom_resource_definition(f"{k.plural}.kubeflow.org")
            if not any(x.type == "Established" and x.status == "True" for x in c.status.conditions or []):
                return False
        return True

    await wait_for(established, what="CRDs established")


async def test_service_pod_and_service(k8s_cluster, k8s_namespace, k8s_api):
    """A service runs alongside a job; both pod and Service exist while it runs and are removed
    when the pipeline ends (the engine stops leftover services: PipelineEnded)."""
    pipeline = dag("svc", [
        job("web", kind="service", annotations=outcome("hang"), run={"ports": [8080, {"port": 80, "targetPort": 8081}]}),
        job("client", annotations=outcome(run_for="1500ms")),
    ])
    h = Harness()
    v1 = client.CoreV1Api(k8s_api)
    name = N.pod_name("r-svc", "web", 1)
    async with executor(k8s_cluster, k8s_namespace, h) as ex:
        task = asyncio.create_task(h.run(ex, submit("r-svc", pipeline)))
        await wait_for(lambda: ("web", 1, "running", None) in reports(h), what="service running")
        svc = await v1.read_namespaced_service(name, k8s_namespace)
        assert svc.spec.selector == {N.L_POD: name}
        assert sorted((p.port, p.target_port) for p in svc.spec.ports) == [(80, 8081), (8080, 8080)]
        pod = await v1.read_namespaced_pod(name, k8s_namespace)
        assert sorted(p.container_port for p in pod.spec.containers[0].ports) == [8080, 8081]
        views = await asyncio.wait_for(task, 30)
        assert views["r-svc"].status == "succeeded"
        assert views["r-svc"].ops["web"].status == "succeeded"  # stopped because its pipeline ended

        async def gone() -> bool:
            pods = await v1.list_namespaced_pod(k8s_namespace, field_selector=f"metadata.name={name}")
            svcs = await v1.list_namespaced_service(k8s_namespace, field_selector=f"metadata.name={name}")
            return not pods.items and not svcs.items

        await wait_for(gone, what="service pod and Service deleted")


@pytest.mark.parametrize("kind", sorted(KUBEFLOW_KINDS))
async def test_kubeflow_job(k8s_cluster, k8s_namespace, k8s_api, kind):
    await install_crds(k8s_api)
    k = KUBEFLOW_KINDS[kind]
    roles = list(k.replicas)
    run = {roles[0]: {"container": {"image": "trainer:1"}},
           roles[1]: {"replicas": 2, "container": {"image": "trainer:1"}}}
    pipeline = dag("dist", [job("train", kind=kind, run=run), job("after", upstream=["train"], annotations=outcome())])
    h = Harness()
    custom = client.CustomObjectsApi(k8s_api)
    name = N.pod_name(f"r-{kind}", "train", 1)
    async with executor(k8s_cluster, k8s_namespace, h) as ex:
        task = asyncio.create_task(h.run(ex, submit(f"r-{kind}", pipeline)))

        async def created():
            try:
                return await custom.get_namespaced_custom_object("kubeflow.org", "v1", k8s_namespace, k.plural, name)
            except client.ApiException:
                return None

        obj = await wait_for(created, what=f"{k.kind} created")
        specs = obj["spec"][k.specs_field]
        assert {t: s["replicas"] for t, s in specs.items()} == {k.replicas[roles[0]]: 1, k.replicas[roles[1]]: 2}
        assert obj["metadata"]["labels"][N.L_MANAGED_BY] == "flowd"
        assert obj["spec"]["runPolicy"]["backoffLimit"] == 0

        async def set_conditions(*conds: tuple[str, str]) -> None:
            body = {"status": {"conditions": [
                {"type": t, "status": "True", "reason": r, "message": f"{t} by the test",
                 "lastTransitionTime": f"2026-01-01T00:00:0{i}Z"} for i, (t, r) in enumerate(conds)]}}
            await custom.patch_namespaced_custom_object_status("kubeflow.org", "v1", k8s_namespace, k.plural, name, body,
                                                                 _content_type="application/merge-patch+json")

        await set_conditions(("Created", "JobCreated"), ("Running", "JobRunning"))
        await wait_for(lambda: ("train", 1, "running", "JobRunning") in reports(h), what="running")
        await set_conditions(("Created", "JobCreated"), ("Running", "JobRunning"), ("Succeeded", "JobSucceeded"))
        views = await asyncio.wait_for(task, 30)
    assert views[f"r-{kind}"].status == "succeeded"
    statuses = [r[2] for r in reports(h, "train")]
    assert statuses == ["running", "succeeded"] or statuses == ["scheduled", "running", "succeeded"]


async def test_kubeflow_job_failure(k8s_cluster, k8s_namespace, k8s_api):
    await install_crds(k8s_api)
    run = {"master": {"container": {"image": "pt"}}, "worker": {"replicas": 1, "container": {"image": "pt"}}}
    pipeline = dag("dist-fail", [job("train", kind="pytorchjob", run=run)])
    h = Harness()
    custom = client.CustomObjectsApi(k8s_api)
    name = N.pod_name("r-ptfail", "train", 1)
    async with executor(k8s_cluster, k8s_namespace, h) as ex:
        task = asyncio.create_task(h.run(ex, submit("r-ptfail", pipeline)))
        await wait_for(lambda: ex.stats["created"] == 1, what="created")
        body = {"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "JobFailed",
                                           "message": "worker-0 exited with code 3"}]}}
        await custom.patch_namespaced_custom_object_status("kubeflow.org", "v1", k8s_namespace, "pytorchjobs", name, body,
                                                          _content_type="application/merge-patch+json")
        views = await asyncio.wait_for(task, 30)
    assert views["r-ptfail"].status == "failed"
    failed = [e for e in h.events if isinstance(e, OpStatus) and e.status == "failed"]
    assert [(e.reason, e.message) for e in failed] == [("JobFailed", "worker-0 exited with code 3")]
