"""Smoke tests of the real control plane (tests/infra/k8s.py) via kubernetes_asyncio. No mocks.

kwok plays the kubelet: pods go Pending -> Running -> Succeeded/Failed as scripted by the
flowd.test/* annotations (tests/infra/assets/flowd-stages.yaml).
"""
from __future__ import annotations

import asyncio
import json
import time

import pytest
from kubernetes_asyncio import client, watch

pytestmark = [pytest.mark.integration, pytest.mark.k8s,
              pytest.mark.asyncio(loop_scope="session")]


def pod(name: str, annotations: dict | None = None, **spec) -> dict:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {"restartPolicy": "Never",
                 "containers": [{"name": "main", "image": "flowd/step:test"}], **spec},
    }


async def create_and_watch(v1: client.CoreV1Api, ns: str, body: dict, phases: set[str],
                           timeout: int = 30) -> tuple[client.V1Pod, list[str]]:
    """Create a pod and watch it (from before its creation, so no phase is missed) until its
    phase is in `phases`; return it and the phases seen."""
    name = body["metadata"]["name"]
    rv = (await v1.list_namespaced_pod(ns)).metadata.resource_version
    await v1.create_namespaced_pod(ns, body)
    seen: list[str] = []
    async with watch.Watch() as w, asyncio.timeout(timeout):
        async for ev in w.stream(v1.list_namespaced_pod, ns, resource_version=rv,
                                 field_selector=f"metadata.name={name}",
                                 timeout_seconds=timeout):
            p = ev["object"]
            if not seen or seen[-1] != p.status.phase:
                seen.append(p.status.phase)
            if p.status.phase in phases:
                return p, seen
    raise AssertionError(f"pod {ns}/{name} never reached {phases}; phases seen: {seen}")


async def test_pod_succeeds_with_message(k8s_api, k8s_namespace):
    v1 = client.CoreV1Api(k8s_api)
    outputs = json.dumps({"rows": 3, "path": "s3://b/k", "quote": "a \"b\"\nc"})
    t0 = time.monotonic()
    p, seen = await create_and_watch(v1, k8s_namespace, pod("ok", {
        "flowd.test/run-for": "1500ms", "flowd.test/pending-for": "500ms",
        "flowd.test/message": outputs}), {"Succeeded", "Failed"})
    assert p.status.phase == "Succeeded", seen
    assert seen[0] == "Pending" and "Running" in seen, seen
    assert time.monotonic() - t0 >= 1.5
    assert p.spec.node_name and p.spec.node_name.startswith("kwok-node-")
    term = p.status.container_statuses[0].state.terminated
    assert term.exit_code == 0 and term.reason == "Completed"
    assert json.loads(term.message) == json.loads(outputs)


async def test_pod_fails_with_scripted_exit(k8s_api, k8s_namespace):
    v1 = client.CoreV1Api(k8s_api)
    msg = json.dumps({"error": "boom"})
    p, seen = await create_and_watch(v1, k8s_namespace, pod("bad", {
        "flowd.test/outcome": "fail", "flowd.test/run-for": "300ms",
        "flowd.test/exit-code": "42", "flowd.test/reason": "OOMKilled",
        "flowd.test/message": msg}), {"Succeeded", "Failed"})
    assert p.status.phase == "Failed", seen
    term = p.status.container_statuses[0].state.terminated
    assert (term.exit_code, term.reason, term.message) == (42, "OOMKilled", msg)


async def test_hanging_pod_runs_until_deleted(k8s_api, k8s_namespace):
    v1 = client.CoreV1Api(k8s_api)
    await create_and_watch(v1, k8s_namespace, pod("hang", {"flowd.test/outcome": "hang"}),
                           {"Running"})
    await asyncio.sleep(2)
    p = await v1.read_namespaced_pod("hang", k8s_namespace)
    assert p.status.phase == "Running"
    await v1.delete_namespaced_pod("hang", k8s_namespace)  # kwok's pod-delete stage removes it
    async with asyncio.timeout(20):
        while True:
            pods = await v1.list_namespaced_pod(k8s_namespace)
            if not pods.items:
                break
            await asyncio.sleep(0.2)


async def test_unschedulable_pod_stays_pending(k8s_api, k8s_namespace):
    v1 = client.CoreV1Api(k8s_api)
    await v1.create_namespaced_pod(
        k8s_namespace, pod("nowhere", nodeSelector={"flowd.test/no-such-label": "x"}))
    cond = None
    async with asyncio.timeout(20):
        while cond is None:
            p = await v1.read_namespaced_pod("nowhere", k8s_namespace)
            cond = next((c for c in p.status.conditions or [] if c.type == "PodScheduled"), None)
            if cond is None:
                await asyncio.sleep(0.2)
    assert (cond.status, cond.reason) == ("False", "Unschedulable"), cond
    await asyncio.sleep(1)
    p = await v1.read_namespaced_pod("nowhere", k8s_namespace)
    assert p.status.phase == "Pending" and not p.spec.node_name
