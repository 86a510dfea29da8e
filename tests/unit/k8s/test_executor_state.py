"""The executor's bookkeeping between watch events and reports, driven through its watch-sink
interface (``listed``/``event``) and a tiny in-memory object store in place of the API.

The real apiserver is exercised by tests/integration/test_k8s_*.py; these cover the paths a
real cluster cannot be made to take on demand: a relist that no longer shows a pod (the
deletion happened while the watch was down), duplicate and out-of-order events, adoption of
pods seen before any StartOp, and the partition filter."""

from __future__ import annotations

import copy
from contextlib import asynccontextmanager
from typing import Any

import anyio
import msgspec
from kubernetes_asyncio import client

from flowd.engine.messages import OpStatus, StartOp, StopOp
from flowd.k8s import naming as N
from flowd.k8s.client import ApiError
from flowd.k8s.config import Settings
from flowd.k8s.executor import MISSING_REASON, KubernetesExecutor
from flowd.k8s.pod import build_pod


class Store:
    """Objects by path; enough of the API for the executor's own calls."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []

    async def request(self, method: str, path: str, *, query: Any = None, body: Any = None,
                      content_type: str = "", timeout: float = 0, decode: bool = True) -> dict[str, Any]:
        self.calls.append((method, path))
        if method == "POST":
            if isinstance(body, bytes):  # the executor sends its manifests encoded
                body = msgspec.json.decode(body)
            url = f"{path}/{body['metadata']['name']}"
            if url in self.objects:
                raise ApiError(409, "AlreadyExists", "exists")
            self.objects[url] = {**copy.deepcopy(body), "status": {"phase": "Pending"}}
            return body
        if method == "GET" and path.endswith("/pods"):
            return {"items": [o for p, o in self.objects.items() if p.startswith(path)], "metadata": {"resourceVersion": "1"}}
        if path not in self.objects:
            raise ApiError(404, "NotFound", path)
        if method == "DELETE":
            return self.objects.pop(path)
        return self.objects[path]

    async def close(self) -> None:
        pass

    async def lines(self, path: str, *, query: Any, inactivity: float):
        await anyio.sleep_forever()
        yield {}


def cmd(path: str = "a", attempt: int = 1, run_id: str = "r") -> StartOp:
    return StartOp(run_id=run_id, path=path, attempt=attempt, key=f"{run_id}/{path}#{attempt}", kind="job", params={},
                   run={"container": {"image": "x"}}, namespace="ns")


def with_status(pod: dict[str, Any], phase: str, **status: Any) -> dict[str, Any]:
    pod = copy.deepcopy(pod)
    pod["status"] = {"phase": phase, **status}
    if phase != "Pending":
        pod["spec"]["nodeName"] = "node-0"
    return pod


@asynccontextmanager
async def running():
    reports: list[OpStatus] = []
    store = Store()
    api = client.ApiClient(client.Configuration(host="https://127.0.0.1:9"))
    executor = KubernetesExecutor(send=reports.append, api=api, reconcile_interval=3600, watch_timeout=1,
                                  allowed_namespaces=["ns"])
    async with executor:
        assert executor.kube is not None
        await executor.kube.close()
        executor.kube = store  # type: ignore[assignment]
        # the test feeds the watch sink itself: no watcher task
        ready = anyio.Event()
        ready.set()
        executor._watches[("ns", "pods")] = ready
        executor.reports = reports  # type: ignore[attr-defined]
        executor.store = store  # type: ignore[attr-defined]
        yield executor
        # `active` is kept as a set along the way: it must still be what counting says
        assert executor.active == sum(1 for a in executor._attempts.values() if a.state != "done")
    await api.close()


async def created(ex: KubernetesExecutor, c: StartOp) -> dict[str, Any]:
    await ex.start(c)
    with anyio.fail_after(5):
        while ex.stats["created"] < sum(1 for k in ex._attempts):
            await anyio.sleep(0.01)
    return ex.store.objects[f"/api/v1/namespaces/ns/pods/{N.pod_name(c.run_id, c.path, c.attempt)}"]


def statuses(ex: KubernetesExecutor) -> list[tuple[str, str, str | None]]:
    return [(r.path, r.status, r.reason) for r in ex.reports]


async def test_relist_without_the_pod_reports_pod_missing() -> None:
    async with running() as ex:
        pod = await created(ex, cmd())
        ex.event("ns", "pods", "ADDED", with_status(pod, "Running"))
        ex.store.objects.clear()  # deleted while the watch was down
        ex.listed("ns", "pods", [])
        await ex.reconcile()
        assert statuses(ex) == [("a", "running", None), ("a", "failed", MISSING_REASON)]


async def test_relist_racing_a_create_is_not_missing() -> None:
    async with running() as ex:
        pod = await created(ex, cmd())
        ex.listed("ns", "pods", [])  # a list taken just before the create landed
        await ex.reconcile()  # the GET finds it
        assert statuses(ex) == [("a", "scheduled", None)]
        ex.event("ns", "pods", "MODIFIED", with_status(pod, "Succeeded"))
        assert statuses(ex)[-1] == ("a", "succeeded", None)


async def test_duplicates_and_stale_events_report_once() -> None:
    async with running() as ex:
        pod = await created(ex, cmd())
        run_ev, done = with_status(pod, "Running"), with_status(pod, "Succeeded")
        for event in (run_ev, run_ev, done, run_ev, done):
            ex.event("ns", "pods", "MODIFIED", event)
        ex.listed("ns", "pods", [done])
        assert statuses(ex) == [("a", "running", None), ("a", "succeeded", None)]


async def test_adopts_pods_of_an_earlier_process() -> None:
    async with running() as ex:
        pod = build_pod(cmd("b"), Settings(namespace="ns"))
        ex.listed("ns", "pods", [with_status(pod, "Failed", containerStatuses=[
            {"name": "main", "state": {"terminated": {"exitCode": 7, "reason": "Error"}}}])])
        assert [(r.path, r.status, r.exit_code) for r in ex.reports] == [("b", "failed", 7)]
        await ex.start(cmd("b"))  # the replayed StartOp: already finished here, nothing created
        assert ex.stats["created"] == 0


async def test_partition_filter() -> None:
    async with running() as ex:
        ex.set_partitions({"3"})
        pod = build_pod(cmd("c"), Settings(namespace="ns"))  # partition "0"
        ex.listed("ns", "pods", [with_status(pod, "Running")])
        assert ex.reports == []


async def test_stop_before_create_and_of_unknown() -> None:
    async with running() as ex:
        ex.limiter.bucket.tokens = 0
        ex.limiter.bucket.qps = 0.001  # nothing gets created
        await ex.start(cmd("q"))
        await ex.stop(StopOp(run_id="r", path="q", attempt=1, key="r/q#1", reason="StopRequested"))
        await ex.stop(StopOp(run_id="r", path="never", attempt=1, key="r/never#1"))
        assert statuses(ex) == [("q", "stopped", "StopRequested"), ("never", "stopped", "Stopped")]
        assert ex.stats["created"] == 0


async def test_already_exists_is_adopted_only_if_it_is_ours() -> None:
    async with running() as ex:
        mine = build_pod(cmd("d"), Settings(namespace="ns"))
        ex.store.objects[f"/api/v1/namespaces/ns/pods/{mine['metadata']['name']}"] = mine
        other = build_pod(cmd("e"), Settings(namespace="ns"))
        other["metadata"]["annotations"][N.A_KEY] = "someone/else#1"
        ex.store.objects[f"/api/v1/namespaces/ns/pods/{N.pod_name('r', 'e', 1)}"] = other
        await ex.start(cmd("d"))
        await ex.start(cmd("e"))
        with anyio.fail_after(5):
            while ex.stats["adopted"] < 1 or not ex.reports:
                await anyio.sleep(0.01)
        assert ex.stats["created"] == 0 and ex.stats["adopted"] == 1
        assert [(r.path, r.status, r.reason) for r in ex.reports] == [("e", "failed", "CannotStart")]


async def test_bodies_that_cannot_become_pods_fail_their_op() -> None:
    async with running() as ex:
        bad = [
            StartOp(run_id="r", path="x", attempt=1, key="r/x#1", kind="job", params={}, run={}),
            StartOp(run_id="r", path="y", attempt=1, key="r/y#1", kind="job", params={},
                    run={"container": {"image": "i", "env": 7}}),  # not a list
            StartOp(run_id="r", path="z", attempt=1, key="r/z#1", kind="daskcluster", params={}, run={}),
        ]
        for c in bad:
            await ex.start(c)
        assert [(r.path, r.status, r.reason) for r in ex.reports] == [
            ("x", "failed", "CannotStart"), ("y", "failed", "CannotStart"), ("z", "failed", "CannotStart")]
        assert ex.active == 0


def test_finished_keys_are_bounded() -> None:
    from flowd.k8s.attempts import FinishedKeys

    keys = FinishedKeys(limit=100)
    for i in range(1000):
        keys.add(f"k{i}")
    assert len(keys) <= 100 and "k999" in keys and "k0" not in keys
