"""The Kubernetes executor driven by the pure Engine, against the real apiserver + kwok.

kwok plays the kubelet; each op scripts its "container" with flowd.test/* pod annotations
(tests/infra/assets/flowd-stages.yaml), set through the op's ``environment.annotations``.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from kubernetes_asyncio import client

from flowd.engine.messages import OpStatus
from flowd.k8s import naming as N
from flowd.k8s.harness import Harness
from flowd.spec.compiled import IOSpec, ParamSpec, Termination
from tests.integration.k8s_helpers import dag, executor, job, outcome, reports, submit, untaint_nodes, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.k8s, pytest.mark.asyncio(loop_scope="session")]


@pytest.fixture(autouse=True)
def _schedulable(k8s_cluster):
    untaint_nodes(k8s_cluster)


async def test_dag_outcomes(k8s_cluster, k8s_namespace, k8s_api):
    """Success with outputs passed downstream, a scripted exit code, a timeout, an
    unschedulable op — one DAG, one run."""
    pipeline = dag("outcomes", [
        job("produce", annotations=outcome(message={"rows": 3, "uri": "s3://b/k"}),
            outputs=[IOSpec(name="rows", type="int"), IOSpec(name="uri", type="str")]),
        job("consume", upstream=["produce"], inputs=[IOSpec(name="n", type="int")],
            params={"n": ParamSpec(ref="ops.produce", value="outputs.rows", to_env="ROWS")},
            annotations=outcome()),
        job("crash", annotations=outcome("fail", exit_code=42, reason="OOMKilled")),
        job("slow", annotations=outcome("hang"), termination=Termination(timeout=2)),
        job("nowhere", environment={"nodeSelector": {"flowd.test/no-such": "x"}}, termination=Termination(timeout=3)),
    ])
    h = Harness()
    async with executor(k8s_cluster, k8s_namespace, h, default_ttl=None) as ex:
        views = await asyncio.wait_for(h.run(ex, submit("r-outcomes", pipeline)), 60)
        view = views["r-outcomes"]
        ops = view.ops
        assert view.status == "failed"
        assert ops["produce"].status == "succeeded"
        assert ops["produce"].outputs == {"rows": 3, "uri": "s3://b/k"}
        assert ops["consume"].status == "succeeded"
        assert ops["crash"].status == "failed"
        assert ops["slow"].status == "failed"
        assert ops["nowhere"].status == "failed"

        crash = [e for e in h.events if isinstance(e, OpStatus) and e.path == "crash" and e.status == "failed"]
        assert [(e.exit_code, e.reason) for e in crash] == [(42, "OOMKilled")]
        assert any(s.status == "unschedulable" for s in h.statuses if s.path == "nowhere")
        slow = [s for s in h.statuses if s.path == "slow" and s.status == "failed"]
        assert slow and slow[-1].reason == "Timeout"
        for path in ("produce", "consume", "crash"):
            seen = [r[2] for r in reports(h, path)]
            assert seen[-1] in ("succeeded", "failed")
            assert len(seen) == len(set(seen)), f"duplicate reports for {path}: {seen}"

        # the downstream pod got the upstream output through toEnv
        v1 = client.CoreV1Api(k8s_api)
        consume = await v1.read_namespaced_pod(N.pod_name("r-outcomes", "consume", 1), k8s_namespace)
        env = {e.name: e.value for e in consume.spec.containers[0].env}
        assert env["ROWS"] == "3"
        assert consume.spec.restart_policy == "Never"
        assert consume.metadata.labels[N.L_MANAGED_BY] == "flowd"
        # timeouts reach the pod too (belt and braces), and the timed-out pods are deleted
        slow_name = N.pod_name("r-outcomes", "slow", 1)
        await wait_for(lambda: _absent(v1, k8s_namespace, slow_name), what="the timed-out pod deleted")


async def _absent(v1: client.CoreV1Api, ns: str, name: str) -> bool:
    pods = await v1.list_namespaced_pod(ns, field_selector=f"metadata.name={name}")
    return not pods.items


async def test_retry_after_pod_deleted_behind_our_back(k8s_cluster, k8s_namespace, k8s_api):
    """A running pod deleted by someone else: the attempt fails and the engine retries it."""
    pipeline = dag("deleted", [job("victim", annotations=outcome("hang"), termination=Termination(max_retries=1))])
    h = Harness()
    v1 = client.CoreV1Api(k8s_api)
    first = N.pod_name("r-deleted", "victim", 1)
    async with executor(k8s_cluster, k8s_namespace, h) as ex:
        task = asyncio.create_task(h.run(ex, submit("r-deleted", pipeline)))
        await wait_for(lambda: ("victim", 1, "running", None) in reports(h), what="first attempt running")
        await v1.delete_namespaced_pod(first, k8s_namespace)
        await wait_for(lambda: any(r[:3] == ("victim", 2, "running") for r in reports(h)), what="second attempt running")
        failed = [r for r in reports(h, "victim") if r[1] == 1 and r[2] == "failed"]
        assert failed == [("victim", 1, "failed", "pod missing")]
        # the finalizer was released after the report: the first pod is gone for good
        await wait_for(lambda: _absent(v1, k8s_namespace, first), what="first pod gone")
        h.stop("r-deleted")
        views = await asyncio.wait_for(task, 30)
    assert views["r-deleted"].status == "stopped"
    assert views["r-deleted"].ops["victim"].attempts == 2


async def test_pod_missing_when_finalizer_is_forced_off(k8s_cluster, k8s_namespace, k8s_api):
    """A pod that vanishes without flowd seeing it end (finalizer removed by force, then the pod
    force-deleted) -> failed with reason ``pod missing``."""
    pipeline = dag("missing", [job("ghost", annotations=outcome("hang"))])
    h = Harness()
    v1 = client.CoreV1Api(k8s_api)
    name = N.pod_name("r-missing", "ghost", 1)
    async with executor(k8s_cluster, k8s_namespace, h) as ex:
        task = asyncio.create_task(h.run(ex, submit("r-missing", pipeline)))
        await wait_for(lambda: ("ghost", 1, "running", None) in reports(h), what="running")
        await v1.patch_namespaced_pod(name, k8s_namespace, [{"op": "remove", "path": "/metadata/finalizers"}])
        await v1.delete_namespaced_pod(name, k8s_namespace, grace_period_seconds=0)
        views = await asyncio.wait_for(task, 30)
    assert views["r-missing"].ops["ghost"].status == "failed"
    assert [r for r in reports(h, "ghost") if r[2] == "failed"] == [("ghost", 1, "failed", "pod missing")]


async def test_stop_running_pipeline(k8s_cluster, k8s_namespace, k8s_api):
    pipeline = dag("stopme", [job(f"long-{i}", annotations=outcome("hang")) for i in range(5)]
                   + [job("after", upstream=["long-0"], annotations=outcome())])
    h = Harness()
    v1 = client.CoreV1Api(k8s_api)
    async with executor(k8s_cluster, k8s_namespace, h) as ex:
        task = asyncio.create_task(h.run(ex, submit("r-stop", pipeline)))
        await wait_for(lambda: sum(r[2] == "running" for r in reports(h)) == 5, what="all running")
        h.stop("r-stop")
        views = await asyncio.wait_for(task, 30)
        view = views["r-stop"]
        assert view.status == "stopped"
        assert {p: o.status for p, o in view.ops.items()} == {
            **{f"long-{i}": "stopped" for i in range(5)}, "after": "stopped"}
        await wait_for(lambda: _none_left(v1, k8s_namespace, "r-stop"), what="pods deleted")


async def _none_left(v1: client.CoreV1Api, ns: str, run_id: str) -> bool:
    pods = await v1.list_namespaced_pod(ns, label_selector=f"{N.L_RUN}={run_id}")
    return not pods.items


async def test_adopts_existing_pod_after_restart(k8s_cluster, k8s_namespace, k8s_api):
    """A replayed StartOp whose pod exists (AlreadyExists) is adopted: one pod, one result."""
    pipeline = dag("adopt", [job("once", annotations=outcome(run_for="1500ms", message={"v": 1}),
                                 outputs=[IOSpec(name="v", type="int")])])
    h1 = Harness()
    async with executor(k8s_cluster, k8s_namespace, h1) as ex:
        task = asyncio.create_task(h1.run(ex, submit("r-adopt", pipeline)))
        await wait_for(lambda: ex.stats["created"] == 1, what="pod created")
        start = next(c for c in h1.engine.runs["r-adopt"].nodes.values() if c.path == "once")
        task.cancel()
    # a new executor (a restarted daemon) gets the same StartOp again
    got: list[OpStatus] = []
    async with executor(k8s_cluster, k8s_namespace, got.append) as ex2:
        from flowd.engine.messages import StartOp

        cmd = StartOp(run_id="r-adopt", path="once", attempt=start.attempt, key=f"r-adopt/once#{start.attempt}",
                      kind="job", params={}, run=pipeline.component.dag.ops[0].component.run)
        await ex2.start(cmd)
        await wait_for(lambda: any(e.status == "succeeded" for e in got), what="succeeded report")
        assert [e.outputs for e in got if e.status == "succeeded"] == [{"v": 1}]
        assert ex2.stats["created"] == 0 and ex2.stats["adopted"] == 1
    v1 = client.CoreV1Api(k8s_api)
    pods = await v1.list_namespaced_pod(k8s_namespace, label_selector=f"{N.L_RUN}=r-adopt")
    assert len(pods.items) == 1
    assert json.loads(pods.items[0].status.container_statuses[0].state.terminated.message) == {"v": 1}


async def test_fan_out_1000(k8s_cluster, k8s_namespace, k8s_api):
    """1,000 parallel ops then a join: every pod created exactly once, every op reported once."""
    n = 1000
    ops = [job(f"fan-{i}", annotations=outcome(run_for="500ms")) for i in range(n)]
    ops.append(job("join", upstream=[f"fan-{i}" for i in range(n)], annotations=outcome(run_for="100ms")))
    h = Harness()
    async with executor(k8s_cluster, k8s_namespace, h, qps=500, burst=500) as ex:
        views = await asyncio.wait_for(h.run(ex, submit("r-fan", dag("fan", ops))), 240)
        assert ex.stats["create_errors"] == 0
        assert ex.stats["created"] == n + 1
    view = views["r-fan"]
    assert view.status == "succeeded"
    terminal = [r for r in reports(h) if r[2] in ("succeeded", "failed")]
    assert len(terminal) == n + 1 and len({r[0] for r in terminal}) == n + 1
    v1 = client.CoreV1Api(k8s_api)
    pods = await v1.list_namespaced_pod(k8s_namespace, label_selector=f"{N.L_RUN}=r-fan")
    names = [p.metadata.name for p in pods.items]
    assert len(names) == n + 1 == len(set(names))
    assert {p.metadata.annotations[N.A_OP_PATH] for p in pods.items} == {f"fan-{i}" for i in range(n)} | {"join"}
    assert all(p.status.phase == "Succeeded" for p in pods.items)


async def test_ttl_deletes_finished_pods(k8s_cluster, k8s_namespace, k8s_api):
    pipeline = dag("ttl", [job("short", annotations=outcome(run_for="200ms"), termination=Termination(ttl=1)),
                           job("kept", annotations=outcome(run_for="200ms"))])
    h = Harness()
    v1 = client.CoreV1Api(k8s_api)
    async with executor(k8s_cluster, k8s_namespace, h) as ex:
        views = await asyncio.wait_for(h.run(ex, submit("r-ttl", pipeline)), 30)
        assert views["r-ttl"].status == "succeeded"
        short = N.pod_name("r-ttl", "short", 1)
        await wait_for(lambda: _absent(v1, k8s_namespace, short), timeout=10, what="short-lived pod deleted")
    kept = await v1.read_namespaced_pod(N.pod_name("r-ttl", "kept", 1), k8s_namespace)
    assert kept.status.phase == "Succeeded"
    assert kept.metadata.finalizers == [N.FINALIZER]  # kept pods keep it until they are deleted


async def test_small_pipeline_is_not_starved_by_a_fan_out(k8s_cluster, k8s_namespace):
    """With creates limited to 40/s, a 400-op fan-out submitted first does not hold back a
    3-op pipeline submitted after it: the fair queue interleaves them."""
    order: list[str] = []
    big = dag("big", [job(f"b{i}", annotations=outcome(run_for="100ms")) for i in range(400)])
    small = dag("small", [job(f"s{i}", annotations=outcome(run_for="100ms")) for i in range(3)])
    h = Harness()
    async with executor(k8s_cluster, k8s_namespace, h, qps=40, burst=1,
                        on_created=lambda key, t: order.append(key.split("/")[0])) as ex:
        h.send(submit("r-big", big))
        task = asyncio.create_task(h.run(ex, submit("r-small", small), wait_for={"r-small"}))
        views = await asyncio.wait_for(task, 60)
        assert views["r-small"].status == "succeeded"
        first_small = [i for i, run in enumerate(order) if run == "r-small"]
        assert len(first_small) == 3 and first_small[-1] < 12, order[:15]
        assert len(order) < 400  # the small pipeline finished before the big one was even created
