"""Pods under policy against the real kube-apiserver (Pod Security Admission on, as it is by
default) and kwok: flowd's own check refuses what a submission may not ask for, and the
apiserver refuses a privileged pod in a namespace labelled ``enforce=restricted`` even when
flowd's check is turned off. Ordinary ops run there (flowd fills in the restricted profile)."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from flowd.engine.messages import OpStatus
from flowd.k8s.harness import Harness
from tests.integration.k8s_helpers import (
    dag,
    executor,
    job,
    outcome,
    submit,
    untaint_nodes,
)

pytestmark = [pytest.mark.integration, pytest.mark.k8s, pytest.mark.asyncio(loop_scope="session")]

RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"}
PRIVILEGED = {"container": {"image": "flowd/step:test", "command": ["step"], "securityContext": {"privileged": True}}}


@pytest.fixture(autouse=True)
def _schedulable(k8s_cluster):
    untaint_nodes(k8s_cluster)


def failure(h: Harness, path: str) -> OpStatus:
    failed = [e for e in h.events if isinstance(e, OpStatus) and e.path == path and e.status == "failed"]
    assert failed, f"{path} did not fail"
    return failed[-1]


async def test_the_apiserver_refuses_a_privileged_pod_even_with_flowds_check_off(k8s_cluster):
    ns = await k8s_cluster.create_namespace("psa", labels=RESTRICTED)
    try:
        pipeline = dag("policy-off", [job("privileged", run=PRIVILEGED, annotations=outcome()),
                                      job("plain", annotations=outcome())])
        h = Harness()
        async with executor(k8s_cluster, ns, h, pod_policy=False, default_ttl=None) as ex:
            view = (await asyncio.wait_for(h.run(ex, submit("r-policy-off", pipeline)), 60))["r-policy-off"]
        assert view.ops["plain"].status == "succeeded"  # flowd's restricted defaults satisfy the namespace
        refused = failure(h, "privileged")
        assert refused.reason == "CannotStart"
        assert "violates PodSecurity" in (refused.message or "") and "privileged" in (refused.message or "")
    finally:
        await k8s_cluster.delete_namespace(ns)


async def test_flowds_own_check_refuses_before_the_apiserver_sees_the_pod(k8s_cluster):
    ns = await k8s_cluster.create_namespace("pol")  # no Pod Security label: only flowd's check stands
    try:
        pipeline = dag("policy-on", [
            job("privileged", run=PRIVILEGED, annotations=outcome()),
            job("host", run={"volumes": [{"name": "root", "hostPath": {"path": "/"}}]}, annotations=outcome()),
            job("network", environment={"hostNetwork": True}, annotations=outcome()),
            job("root", environment={"securityContext": {"runAsUser": 0}}, annotations=outcome()),
            job("plain", annotations=outcome()),
        ])
        elsewhere = job("elsewhere", annotations=outcome())
        elsewhere = msgspec.structs.replace(
            elsewhere, component=msgspec.structs.replace(elsewhere.component, namespace="kube-system"))
        pipeline = msgspec.structs.replace(pipeline, component=msgspec.structs.replace(
            pipeline.component, dag=msgspec.structs.replace(pipeline.component.dag,
                                                            ops=[*pipeline.component.dag.ops, elsewhere])))
        h = Harness()
        async with executor(k8s_cluster, ns, h, default_ttl=None) as ex:
            views = await asyncio.wait_for(h.run(ex, submit("r-policy-on", pipeline)), 60)
        view = views["r-policy-on"]
        assert view.ops["plain"].status == "succeeded"
        for path, field in (("privileged", "securityContext.privileged"), ("host", "run.volumes[0].hostPath"),
                            ("network", "environment.hostNetwork"), ("root", "securityContext.runAsUser")):
            refused = failure(h, path)
            assert refused.reason == "CannotStart" and "refused by the pod policy" in (refused.message or "")
            assert field in (refused.message or ""), refused.message
        refused = failure(h, "elsewhere")
        assert refused.reason == "CannotStart" and "namespace 'kube-system' is not allowed" in (refused.message or "")
        # no pod was ever created for a refused op
        pods = k8s_cluster.api().json("GET", f"/api/v1/namespaces/{ns}/pods")
        assert [p["metadata"]["annotations"]["flowd.io/op-path"] for p in pods["items"]] == ["plain"]
    finally:
        await k8s_cluster.delete_namespace(ns)
