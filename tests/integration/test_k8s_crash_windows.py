"""Kills aimed at each step of the Kubernetes executor, with a real ``flowd serve --executor k8s``
on the real broker and apiserver + kwok (flowd.faults, as in test_local_crash_windows.py).

Steps: ``k8s.created`` (pod created, the create's answer not recorded, no report), ``k8s.reported``
(terminal status sent to the run's partition but maybe not committed; the pod still holds
flowd's finalizer), ``k8s.deleting`` (ttl 0: the pod was deleted and waits, Terminating, for
flowd to remove its finalizer). After each kill the daemon is restarted until the run is done;
then: each op ran in exactly one pod (attempt 1 only, its pod named from the attempt key), its
terminal status was emitted once, and no pod is left (none stuck with the finalizer).
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from pathlib import Path

import anyio
import pytest

from flowd.daemon import wire
from flowd.daemon.client import publish
from flowd.daemon.testing import DaemonProcess, EventCollector, restart_after_crashes, test_config
from flowd.spec.compiled import Termination
from tests.integration.k8s_helpers import dag, job, outcome, untaint_nodes

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.k8s, pytest.mark.asyncio(loop_scope="session")]

OPS = ["a", "b", "c"]


@pytest.mark.parametrize("step", ["k8s.created", "k8s.reported", "k8s.deleting"])
async def test_a_kill_at_each_k8s_step_loses_and_repeats_nothing(
        kafka_broker, k8s_cluster, k8s_namespace, tmp_path: Path, step: str) -> None:
    untaint_nodes(k8s_cluster)
    crashes = tmp_path / "crashes"
    crashes.mkdir()
    config = test_config(kafka_broker.bootstrap, name="k8saim", state_dir=str(tmp_path / "state"), executor="k8s",
                         instance_id="k8saim-1", partitions=1, snapshot_interval=0.5)
    executor_config = {"kubeconfig": str(k8s_cluster.kubeconfig), "namespace": k8s_namespace,
                       "watch_namespaces": [k8s_namespace], "reconcile_interval": 1.0}
    env = {"FLOWD_TEST_CRASH_AT": step, "FLOWD_TEST_CRASH_DIR": str(crashes),
           "FLOWD_EXECUTOR_CONFIG": json.dumps(executor_config)}
    ops = [job(name, upstream=[OPS[i - 1]] if i else [], termination=Termination(ttl=0),
               annotations=outcome(run_for="1s", message={"op": name})) for i, name in enumerate(OPS)]
    pipeline = dag("k8s-crashy", ops)
    events = EventCollector(config)
    daemons = [DaemonProcess(config, log_path=tmp_path / "serve-0.log", env=env).start()]
    api = k8s_cluster.api()
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(events.run)
            await daemons[-1].wait_ready(timeout=60)
            run_id = str(uuid.uuid4())
            await publish(config, config.topics.runs, run_id,
                          wire.Submission(run_id=run_id, time=time.time(), pipeline=pipeline))
            with anyio.fail_after(180):
                # every op's crash point fires once: one daemon per op dies before the run completes
                kills = await restart_after_crashes(
                    daemons, lambda: bool(events.completions(run_id)) and len(daemons) > len(OPS), log_dir=tmp_path)
            # ttl 0: every pod goes; a finalizer left behind would keep it Terminating
            with anyio.fail_after(30):
                while api.json("GET", f"/api/v1/namespaces/{k8s_namespace}/pods")["items"]:
                    await anyio.sleep(0.2)
            await anyio.sleep(1.0)
            tg.cancel_scope.cancel()
        done = events.completions(run_id)
        statuses = [e for e in events.of(run_id) if isinstance(e, wire.StatusEvent)]
        assert [d.status for d in done] == ["succeeded"], [(e.path, e.status, e.reason) for e in statuses]
        terminal = Counter((e.path, e.attempt, e.status) for e in statuses if e.path and e.status == "succeeded")
        assert terminal == Counter({(op, 1, "succeeded"): 1 for op in OPS}), terminal
        assert {e.path: e.outputs for e in statuses if e.path and e.status == "succeeded"} == {op: {"op": op} for op in OPS}
        assert not [e for e in statuses if e.attempt > 1], "an op needed a second pod"
        assert kills == len(OPS) == len(list(crashes.iterdir()))
        print(f"\n{step}: survived {kills} of {kills} aimed kills")
    finally:
        codes = [d.terminate() for d in daemons]
    assert codes[-1] == 0
