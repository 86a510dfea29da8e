"""Helpers for the Kubernetes executor's integration tests (real apiserver + kwok, no mocks)."""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import asynccontextmanager
from typing import Any

from flowd.engine.messages import Submit
from flowd.k8s.executor import KubernetesExecutor
from flowd.k8s.harness import Harness
from flowd.spec.compiled import Component, Dag, IOSpec, Op, ParamSpec, Termination


def merge_patch(cluster: Any, path: str, body: dict[str, Any]) -> None:
    import urllib.request

    api = cluster.api()
    req = urllib.request.Request(api.server + path, data=json.dumps(body).encode(), method="PATCH",
                                 headers={"Content-Type": "application/merge-patch+json"})
    with urllib.request.urlopen(req, context=api.ctx, timeout=10) as r:
        r.read()


def untaint_nodes(cluster: Any) -> None:
    """Without a kube-controller-manager nothing removes the ``node.kubernetes.io/not-ready``
    taint the apiserver puts on a new Node, so nothing schedules. Idempotent."""
    api = cluster.api()
    for name in cluster.node_names:
        node = api.json("GET", f"/api/v1/nodes/{name}")
        if node.get("spec", {}).get("taints"):
            merge_patch(cluster, f"/api/v1/nodes/{name}", {"spec": {"taints": None}})


def ensure_nodes(cluster: Any, count: int) -> None:
    """At least ``count`` fake nodes (kwok adopts them by annotation)."""
    import yaml

    from tests.infra.k8s import ASSETS

    api = cluster.api()
    template = (ASSETS / "fake-node.yaml").read_text()
    for i in range(count):
        name = f"kwok-node-{i}"
        code, _ = api.call("GET", f"/api/v1/nodes/{name}")
        if code == 404:
            api.call("POST", "/api/v1/nodes", yaml.safe_load(template.replace("NAME", name)))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready = 0
        for i in range(count):
            node = api.json("GET", f"/api/v1/nodes/kwok-node-{i}")
            conds = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
            ready += conds.get("Ready") == "True"
            if node.get("spec", {}).get("taints"):
                merge_patch(cluster, f"/api/v1/nodes/kwok-node-{i}", {"spec": {"taints": None}})
        if ready == count:
            return
        time.sleep(0.3)
    raise AssertionError("fake nodes never became Ready")


def job(name: str, *, upstream: list[str] | None = None, annotations: dict[str, str] | None = None,
        outputs: list[IOSpec] | None = None, params: dict[str, ParamSpec] | None = None,
        inputs: list[IOSpec] | None = None, termination: Termination | None = None,
        environment: dict[str, Any] | None = None, kind: str = "job", run: dict[str, Any] | None = None) -> Op:
    env = dict(environment or {})
    if annotations:
        env["annotations"] = {**env.get("annotations", {}), **annotations}
    body = {"container": {"image": "flowd/step:test", "command": ["step"]}, **(run or {})}
    if env:
        body["environment"] = env
    return Op(
        name=name,
        component=Component(kind=kind, name=name, inputs=inputs or [], outputs=outputs or [], run=body),
        params=params or {}, upstream=upstream or [], termination=termination or Termination(),
    )


def dag(name: str, ops: list[Op], *, concurrency: int | None = None) -> Op:
    return Op(name=name, component=Component(kind="dag", name=name, dag=Dag(ops=ops, concurrency=concurrency)))


def outcome(kind: str = "succeed", *, run_for: str = "300ms", exit_code: int | None = None,
            reason: str | None = None, message: Any = None) -> dict[str, str]:
    ann = {"flowd.test/run-for": run_for}
    if kind != "succeed":
        ann["flowd.test/outcome"] = kind
    if exit_code is not None:
        ann["flowd.test/exit-code"] = str(exit_code)
    if reason is not None:
        ann["flowd.test/reason"] = reason
    if message is not None:
        ann["flowd.test/message"] = message if isinstance(message, str) else json.dumps(message)
    return ann


def submit(run_id: str, pipeline: Op) -> Submit:
    return Submit(run_id=run_id, pipeline=pipeline, time=time.time())


@asynccontextmanager
async def executor(cluster: Any, namespace: str, harness: Harness | Any, **config: Any):
    """A KubernetesExecutor on the test cluster; ``harness`` is a Harness or a send callable."""
    send = harness.send if isinstance(harness, Harness) else harness
    config.setdefault("namespace", namespace)
    config.setdefault("watch_namespaces", [namespace])
    config.setdefault("reconcile_interval", 1.0)
    config.setdefault("backoff_base", 0.2)
    config.setdefault("backoff_max", 2.0)
    async with KubernetesExecutor(send=send, kubeconfig=str(cluster.kubeconfig), **config) as ex:
        yield ex


async def wait_for(predicate: Any, *, timeout: float = 30.0, interval: float = 0.1, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)


def reports(harness: Harness, path: str | None = None) -> list[tuple[str, int, str, str | None]]:
    from flowd.engine.messages import OpStatus

    return [(e.path, e.attempt, e.status, e.reason) for e in harness.events
            if isinstance(e, OpStatus) and (path is None or e.path == path)]


class PodLogScript:
    """The kubelet's side of pod logs on the test cluster: for every pod of ``namespace`` whose
    ``flowd.test/log`` annotation lists lines (JSON), kwok is made to serve a log file
    (``K8sCluster.write_pod_log``) and the lines are appended to it one every
    ``flowd.test/log-interval`` seconds (default 0.2) from the moment the pod runs, as a
    container would print them. Use as ``async with PodLogScript(cluster, ns) as script``;
    ``script.played[pod]`` counts the lines written."""

    def __init__(self, cluster: Any, namespace: str, *, poll: float = 0.1) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.poll = poll
        self.played: dict[str, int] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> PodLogScript:
        self._tasks.append(asyncio.create_task(self._run()))
        return self

    async def __aexit__(self, *exc: Any) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self) -> None:
        from tests.infra.k8s import A_LOG

        api = self.cluster.api()
        while True:
            pods = (await asyncio.to_thread(api.json, "GET", f"/api/v1/namespaces/{self.namespace}/pods"))["items"]
            for pod in pods:
                name = pod["metadata"]["name"]
                lines = (pod["metadata"].get("annotations") or {}).get(A_LOG)
                if lines is None or name in self.played:
                    continue
                if (pod.get("status") or {}).get("phase") not in ("Running", "Succeeded", "Failed"):
                    continue
                self.played[name] = 0
                self._tasks.append(asyncio.create_task(self._play(pod, json.loads(lines))))
            await asyncio.sleep(self.poll)

    async def _play(self, pod: dict[str, Any], lines: list[str]) -> None:
        from tests.infra.k8s import A_LOG_INTERVAL, append_pod_log

        name = pod["metadata"]["name"]
        interval = float((pod["metadata"].get("annotations") or {}).get(A_LOG_INTERVAL, "0.2"))
        path = await asyncio.to_thread(self.cluster.write_pod_log, self.namespace, name)
        attempt = (pod["metadata"].get("annotations") or {}).get("flowd.io/attempt", "")
        for line in lines:
            append_pod_log(path, [line.replace("{attempt}", attempt)])
            self.played[name] += 1
            await asyncio.sleep(interval)
