"""``flowd logs`` of runs on pods, through the real pod log API: kube-apiserver proxies
``pods/log`` to kwok (the fake nodes' kubelet), which serves what the test plays as each pod's
log (k8s_helpers.PodLogScript, the ``flowd.test/log`` annotation). Runs of ``flowd run
--executor k8s`` (found from the state dir without ``--k8s``) and of a daemon (``--k8s``)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import textwrap
import time
import urllib.request
import uuid
from pathlib import Path

import anyio
import pytest

from flowd.daemon import wire
from flowd.daemon.client import publish
from flowd.daemon.serve import Daemon
from flowd.daemon.testing import EventCollector, test_config
from tests.integration.k8s_helpers import PodLogScript, dag, job, outcome, untaint_nodes

pytestmark = [pytest.mark.integration, pytest.mark.k8s, pytest.mark.asyncio(loop_scope="session")]

PIPELINE = """
version: 1.1
kind: component
name: logged
run:
  kind: dag
  operations:
    - name: prepare
      component:
        run:
          kind: job
          environment:
            annotations:
              flowd.test/run-for: "{prepare_for}"
              flowd.test/log: '["prepare: reading", "prepare: 3 rows", "prepare: done"]'
              flowd.test/log-interval: "0.3"
          container: {{image: busybox:1.36, command: [sh, -c, "echo prepare"]}}
    - name: train
      dependencies: [prepare]
      termination: {{maxRetries: 1}}
      component:
        run:
          kind: job
          environment:
            annotations:
              flowd.test/run-for: "1500ms"
              flowd.test/outcome: "{train_outcome}"
              flowd.test/log: '["train attempt {{attempt}}: epoch 1", "train attempt {{attempt}}: epoch 2"]'
              flowd.test/log-interval: "0.3"
          container: {{image: busybox:1.36, command: [sh, -c, "echo train"]}}
"""


def flowd(*args: str, env: dict[str, str] | None = None) -> list[str]:
    return [sys.executable, "-m", "flowd", *args]


async def run_cli(*args: str, timeout: float = 120) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*flowd(*args), stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode(), err.decode()


def spec_file(tmp_path: Path, *, prepare_for: str = "1500ms", train_outcome: str = "fail") -> Path:
    spec = tmp_path / "logged.yaml"
    spec.write_text(textwrap.dedent(PIPELINE.format(prepare_for=prepare_for, train_outcome=train_outcome)))
    return spec


async def test_flowd_logs_of_a_flowd_run_on_pods(k8s_cluster, k8s_namespace, tmp_path: Path) -> None:
    """After the run: every op's latest attempt prefixed by op, one op bare, an earlier attempt
    by number; the run dir says where the pods are, so no --k8s is needed."""
    untaint_nodes(k8s_cluster)
    state = str(tmp_path / "state")
    async with PodLogScript(k8s_cluster, k8s_namespace):
        code, out, err = await run_cli("run", str(spec_file(tmp_path)), "--executor", "k8s", "--kubeconfig",
                                       str(k8s_cluster.kubeconfig), "--namespace", k8s_namespace, "--state-dir", state)
    assert code == 1, err  # train fails twice (maxRetries 1)
    run_id = out.split()[1].rstrip(":")
    assert out.splitlines()[0] == f"run {run_id}: logs in the pods of namespace {k8s_namespace} (flowd logs {run_id} --state-dir {state})"

    code, out, err = await run_cli("logs", run_id, "--state-dir", state)
    assert code == 0, err
    assert out.splitlines() == ["[prepare] prepare: reading", "[prepare] prepare: 3 rows", "[prepare] prepare: done",
                                "[train#2] train attempt 2: epoch 1", "[train#2] train attempt 2: epoch 2"]

    code, out, err = await run_cli("logs", run_id, "train", "--attempt", "1", "--state-dir", state)
    assert code == 0, err
    assert out.splitlines() == ["train attempt 1: epoch 1", "train attempt 1: epoch 2"]

    code, out, err = await run_cli("logs", run_id, "nope", "--state-dir", state)
    assert code == 1 and "no pod of run" in err and "'nope'" in err and "Traceback" not in err

    # flowd ui over the state dir reads the same pods: each attempt of train offered, each its log
    ui = await asyncio.create_subprocess_exec(*flowd("ui", "--state-dir", state, "--port", "0"),
                                              stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        assert ui.stderr is not None
        url = re.search(r"(http://\S+/)", (await asyncio.wait_for(ui.stderr.readline(), 30)).decode())[1]  # type: ignore[index]

        def get(path: str) -> str:
            with urllib.request.urlopen(url + path, timeout=60) as r:
                return r.read().decode()

        detail = json.loads(await anyio.to_thread.run_sync(get, f"api/runs/{run_id}"))
        train_1 = await anyio.to_thread.run_sync(get, f"api/runs/{run_id}/logs?op=train&attempt=1")
        train = await anyio.to_thread.run_sync(get, f"api/runs/{run_id}/logs?op=train")
    finally:
        ui.terminate()
        await ui.wait()
    assert detail["log_attempts"] == {"prepare": [1], "train": [1, 2]}
    assert train_1.splitlines() == ["train attempt 1: epoch 1", "train attempt 1: epoch 2"]
    assert train.splitlines() == ["train attempt 2: epoch 1", "train attempt 2: epoch 2"]


async def test_flowd_logs_follow_while_flowd_run_runs(k8s_cluster, k8s_namespace, tmp_path: Path) -> None:
    """``-f`` started while the first op runs prints each line as the pod prints it, then the
    next op's, and ends by itself when the run ends."""
    untaint_nodes(k8s_cluster)
    state = str(tmp_path / "state")
    async with PodLogScript(k8s_cluster, k8s_namespace):
        run = await asyncio.create_subprocess_exec(
            *flowd("run", str(spec_file(tmp_path, prepare_for="8s", train_outcome="succeed")), "--executor", "k8s",
                   "--kubeconfig", str(k8s_cluster.kubeconfig), "--namespace", k8s_namespace, "--state-dir", state),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert run.stdout is not None
        first = (await asyncio.wait_for(run.stdout.readline(), 60)).decode()
        run_id = first.split()[1].rstrip(":")
        follow = await asyncio.create_subprocess_exec(*flowd("logs", run_id, "-f", "--state-dir", state),
                                                      stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert follow.stdout is not None
        seen: list[tuple[float, str]] = []
        run_going_at_first_line: bool | None = None
        t0 = time.monotonic()
        while True:
            line = await asyncio.wait_for(follow.stdout.readline(), 90)
            if not line:
                break
            if run_going_at_first_line is None:
                run_going_at_first_line = run.returncode is None
            seen.append((time.monotonic() - t0, line.decode().rstrip("\n")))
        await asyncio.wait_for(follow.wait(), 30)
        run_rc = await asyncio.wait_for(run.wait(), 60)
    assert run_rc == 0
    assert follow.returncode == 0, (await follow.stderr.read()).decode() if follow.stderr else ""
    assert [text for _, text in seen] == [
        "[prepare] prepare: reading", "[prepare] prepare: 3 rows", "[prepare] prepare: done",
        "[train] train attempt 1: epoch 1", "[train] train attempt 1: epoch 2"]
    # live, not at the end: the first line came while the run was still going (prepare runs
    # 8 s; on a loaded machine the follower may start after it ended, so the gap between the
    # first and last lines is not a measure of liveness, but the run going on is)
    assert run_going_at_first_line, seen


async def test_flowd_logs_of_a_daemon_run(kafka_broker, k8s_cluster, k8s_namespace, tmp_path: Path) -> None:
    """A daemon's run on pods: ``flowd logs RUN --k8s --namespace NS -f`` while it runs, and
    one op's log after it ended."""
    untaint_nodes(k8s_cluster)
    config = test_config(
        kafka_broker.bootstrap, name="podlogs", state_dir=str(tmp_path), executor="k8s",
        executor_config={"kubeconfig": str(k8s_cluster.kubeconfig), "namespace": k8s_namespace,
                         "watch_namespaces": [k8s_namespace], "reconcile_interval": 1.0})
    lines = {"first": ["first: 1", "first: 2", "first: 3"], "second": ["second: a", "second: b"]}

    def logged(name: str, **kw: object) -> object:
        return job(name, annotations={**outcome(run_for="2s"), "flowd.test/log": json.dumps(lines[name]),
                                      "flowd.test/log-interval": "0.3"}, **kw)  # type: ignore[arg-type]

    pipeline = dag("daemon-logged", [logged("first"), logged("second", upstream=["first"])])  # type: ignore[list-item]
    daemon = Daemon(config)
    events = EventCollector(config)
    run_id = str(uuid.uuid4())
    env = dict(os.environ)
    async with PodLogScript(k8s_cluster, k8s_namespace), anyio.create_task_group() as tg:
        await tg.start(daemon.run)
        with anyio.fail_after(60):
            await daemon.wait_ready()
        await tg.start(events.run)
        await publish(config, config.topics.runs, run_id, wire.Submission(run_id=run_id, time=time.time(), pipeline=pipeline))
        follow = await asyncio.create_subprocess_exec(
            *flowd("logs", run_id, "-f", "--k8s", "--namespace", k8s_namespace, "--kubeconfig", str(k8s_cluster.kubeconfig)),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
        done = await events.wait_done(run_id, timeout=90)
        out, err = await asyncio.wait_for(follow.communicate(), 60)
        code, one, one_err = await run_cli("logs", run_id, "second", "--k8s", "--namespace", k8s_namespace,
                                           "--kubeconfig", str(k8s_cluster.kubeconfig))
        ui_logs = await ui_pod_logs(config, k8s_cluster, k8s_namespace, run_id, "first")
        tg.cancel_scope.cancel()
    assert done.status == "succeeded"
    assert follow.returncode == 0, err.decode()
    assert out.decode().splitlines() == [f"[{op}] {line}" for op in ("first", "second") for line in lines[op]]
    assert code == 0, one_err
    assert one.splitlines() == lines["second"]
    # the daemon UI given a kube config shows an op's log from its pod
    assert ui_logs.splitlines() == lines["first"]


async def ui_pod_logs(config: object, cluster: object, namespace: str, run_id: str, op: str) -> str:
    """``flowd ui --daemon --kubeconfig K --namespace NS``: what its logs API gives for ``op``."""
    import re
    import urllib.request

    ui = await asyncio.create_subprocess_exec(
        *flowd("ui", "--daemon", "--brokers", config.brokers, "--prefix", config.prefix,  # type: ignore[attr-defined]
               "--port", "0", "--kubeconfig", str(cluster.kubeconfig), "--namespace", namespace),  # type: ignore[attr-defined]
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        assert ui.stderr is not None
        line = (await asyncio.wait_for(ui.stderr.readline(), 30)).decode()
        url = re.search(r"(http://\S+/)", line)[1]  # type: ignore[index]

        def get() -> str:
            with urllib.request.urlopen(f"{url}api/runs/{run_id}/logs?op={op}", timeout=30) as r:
                return r.read().decode()

        return await anyio.to_thread.run_sync(get)
    finally:
        ui.terminate()
        await ui.wait()


async def test_flowd_run_logs_streams_pod_output_by_op(k8s_cluster, k8s_namespace, tmp_path: Path) -> None:
    """``flowd run --executor k8s --logs`` prints each pod's lines as they come, prefixed by op
    path (``[op#2]`` for a retry), as ``--logs`` does for local jobs, and each line once."""
    untaint_nodes(k8s_cluster)
    state = str(tmp_path / "state")
    async with PodLogScript(k8s_cluster, k8s_namespace):
        code, out, err = await run_cli("run", str(spec_file(tmp_path)), "--executor", "k8s", "--logs", "--kubeconfig",
                                       str(k8s_cluster.kubeconfig), "--namespace", k8s_namespace, "--state-dir", state)
    assert code == 1, err  # train fails twice (maxRetries 1)
    logged = [line for line in out.splitlines() if line.startswith("[")]
    assert logged == ["[prepare] prepare: reading", "[prepare] prepare: 3 rows", "[prepare] prepare: done",
                      "[train] train attempt 1: epoch 1", "[train] train attempt 1: epoch 2",
                      "[train#2] train attempt 2: epoch 1", "[train#2] train attempt 2: epoch 2"], out + err
    assert "--logs" not in err, err  # no complaint from the log stream
