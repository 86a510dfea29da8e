"""Intermediate metrics of pods and the early-stopping policies on Kubernetes: each matrix child's
pod prints its learning curve as ``FLOWD_METRIC {"step": s, "loss": base/s}`` lines (played by
k8s_helpers.PodLogScript as kwok's log of the pod, one every 0.2 s), the executor follows the
pods' logs through the real pod log API, and the median/truncation/diff policies stop the
children they rule out — under ``flowd run --executor k8s`` and under the daemon."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from pathlib import Path

import anyio
import pytest

from flowd.daemon import wire
from flowd.daemon.client import publish
from flowd.daemon.serve import Daemon
from flowd.daemon.testing import EventCollector, test_config
from flowd.spec import compile_path
from tests.integration.k8s_helpers import PodLogScript, untaint_nodes

pytestmark = [pytest.mark.integration, pytest.mark.k8s, pytest.mark.asyncio(loop_scope="session")]

BASES = [1, 1.5, 6, 8]
POLICIES = {
    "median": {"kind": "median", "evaluationInterval": 1, "minSamples": 3},
    "truncation": {"kind": "truncation", "percent": 50, "evaluationInterval": 4},
    "diff": {"kind": "diff", "percent": 100, "evaluationInterval": 2},
}


def curve(base: float) -> list[str]:
    lines = ["starting"]
    lines += [f"FLOWD_METRIC {json.dumps({'step': s, 'loss': base / s})}" for s in range(1, 11)]
    return lines + ["FLOWD_METRIC not json", "done"]  # a stray line and a broken one are ignored


def pipeline_yaml() -> str:
    ops = []
    for name, policy in POLICIES.items():
        values = [{"base": b, "log": json.dumps(curve(b))} for b in BASES]
        ops.append({
            "name": name,
            "matrix": {"kind": "mapping", "values": values, "earlyStopping": [{
                "kind": "metric_early_stopping", "metric": "loss", "value": 0, "optimization": "minimize",
                "policy": policy}]},
            "component": {
                "inputs": [{"name": "base", "type": "float"}, {"name": "log", "type": "str"}],
                "run": {"kind": "job",
                        "environment": {"annotations": {"flowd.test/run-for": "4s", "flowd.test/log": "{{ log }}",
                                                        "flowd.test/log-interval": "0.2"}},
                        "container": {"image": "busybox:1.36", "command": ["sh", "-c", "echo curve"]}},
            },
        })
    doc = {"version": 1.1, "kind": "component", "name": "k8s-early-stopping", "run": {"kind": "dag", "operations": ops}}
    return json.dumps(doc, indent=1)  # JSON is YAML


def check(statuses: dict[str, tuple[str, str | None]], why: str = "EarlyStopping:{}") -> None:
    """Each matrix succeeded, its best child (base 1) too, and its worst (base 8) was stopped by
    the matrix's policy (``why``: the reason, or a part of the message)."""
    for name in POLICIES:
        assert statuses[name][0] == "succeeded", (name, statuses[name])
        assert statuses[f"{name}[0]"][0] == "succeeded", (name, statuses)
        status, reason = statuses[f"{name}[3]"]
        assert status == "stopped" and why.format(name) in (reason or ""), (name, statuses)


async def test_policies_stop_pods_under_flowd_run(k8s_cluster, k8s_namespace, tmp_path: Path) -> None:
    untaint_nodes(k8s_cluster)
    spec = tmp_path / "stopping.yaml"
    spec.write_text(pipeline_yaml())
    async with PodLogScript(k8s_cluster, k8s_namespace):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "flowd", "run", str(spec), "--executor", "k8s", "--kubeconfig",
            str(k8s_cluster.kubeconfig), "--namespace", k8s_namespace, "--state-dir", str(tmp_path / "state"),
            "--output", "json", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 180)
    assert proc.returncode == 0, err.decode()[-3000:]
    report = json.loads(out)
    check({path: (op["status"], op["message"]) for path, op in report["ops"].items()},
          why="EarlyStopping:{}")


async def test_policies_stop_pods_under_the_daemon(kafka_broker, k8s_cluster, k8s_namespace, tmp_path: Path) -> None:
    untaint_nodes(k8s_cluster)
    spec = tmp_path / "stopping.yaml"
    spec.write_text(pipeline_yaml())
    compiled = compile_path(spec)
    assert compiled.valid and compiled.op is not None, compiled
    config = test_config(
        kafka_broker.bootstrap, name="k8s-metrics", state_dir=str(tmp_path), executor="k8s",
        executor_config={"kubeconfig": str(k8s_cluster.kubeconfig), "namespace": k8s_namespace,
                         "watch_namespaces": [k8s_namespace], "reconcile_interval": 1.0})
    daemon = Daemon(config)
    events = EventCollector(config)
    run_id = str(uuid.uuid4())
    async with PodLogScript(k8s_cluster, k8s_namespace), anyio.create_task_group() as tg:
        await tg.start(daemon.run)
        with anyio.fail_after(60):
            await daemon.wait_ready()
        await tg.start(events.run)
        await publish(config, config.topics.runs, run_id,
                      wire.Submission(run_id=run_id, time=time.time(), pipeline=compiled.op))
        done = await events.wait_done(run_id, timeout=120)
        tg.cancel_scope.cancel()
    assert done.status == "succeeded"
    statuses: dict[str, tuple[str, str | None]] = {}
    for e in events.of(run_id):
        if isinstance(e, wire.StatusEvent) and e.path:
            statuses[e.path] = (e.status, e.reason)
    check(statuses)
