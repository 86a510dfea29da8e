"""``flowd serve --executor k8s``: the daemon on the real broker driving the Kubernetes executor
(flowd.k8s.executor, loaded by module) against the real apiserver + kwok."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import anyio
import pytest
from prometheus_client import generate_latest

from flowd.daemon import wire
from flowd.daemon.client import publish
from flowd.daemon.serve import Daemon
from flowd.daemon.testing import EventCollector, test_config
from flowd.partitioning import partition_for
from tests.integration.k8s_helpers import dag, job, outcome, untaint_nodes

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.k8s, pytest.mark.asyncio(loop_scope="session")]


async def test_daemon_runs_a_pipeline_as_pods(kafka_broker, k8s_cluster, k8s_namespace, tmp_path: Path) -> None:
    untaint_nodes(k8s_cluster)
    config = test_config(
        kafka_broker.bootstrap, name="k8s", state_dir=str(tmp_path), executor="k8s",
        executor_config={"kubeconfig": str(k8s_cluster.kubeconfig), "namespace": k8s_namespace,
                         "watch_namespaces": [k8s_namespace], "reconcile_interval": 1.0})
    pipeline = dag("pods", [
        job("first", annotations=outcome(message={"n": 2}), outputs=[]),
        job("second", upstream=["first"], annotations=outcome()),
        job("crash", upstream=["first"], annotations=outcome("fail", exit_code=3)),
    ])
    daemon = Daemon(config)
    events = EventCollector(config)
    async with anyio.create_task_group() as tg:
        await tg.start(daemon.run)
        with anyio.fail_after(60):
            await daemon.wait_ready()
        await tg.start(events.run)
        run_id = str(uuid.uuid4())
        await publish(config, config.topics.runs, run_id, wire.Submission(run_id=run_id, time=time.time(), pipeline=pipeline))
        done = await events.wait_done(run_id, timeout=90)
        metrics = generate_latest(daemon.metrics.registry).decode()
        pods = await anyio.to_thread.run_sync(
            k8s_cluster.api().json, "GET", f"/api/v1/namespaces/{k8s_namespace}/pods?labelSelector=flowd.io/run")
        tg.cancel_scope.cancel()
    # the executor's metrics are served by the daemon, and every pod names the partition that owns
    # its run (as Kafka routes it), so each replica follows only its own pods after a rebalance
    assert "flowd_pod_create_wait_seconds_count" in metrics
    owner = str(partition_for(run_id, config.partitions))
    labels = [p["metadata"]["labels"] for p in pods["items"] if p["metadata"]["annotations"].get("flowd.io/run-id") == run_id]
    assert len(labels) == 3 and {lab["flowd.io/partition"] for lab in labels} == {owner}
    ops = {e.path: e.status for e in events.of(run_id) if isinstance(e, wire.StatusEvent) and e.path}
    assert done.status == "failed"
    assert ops == {"first": "succeeded", "second": "succeeded", "crash": "failed"}
    assert len({e.key for e in events.events}) == len(events.events)
