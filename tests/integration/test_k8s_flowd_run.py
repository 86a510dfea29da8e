"""``flowd run --executor k8s``: the embedded runtime with pods instead of subprocesses, driven as
a user would (the CLI in a subprocess) against the real apiserver + kwok."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import pytest_asyncio

from tests.infra import k8s as infra_k8s
from tests.infra.common import in_ci
from tests.integration.k8s_helpers import untaint_nodes

pytestmark = [pytest.mark.integration, pytest.mark.k8s, pytest.mark.asyncio(loop_scope="session")]

PIPELINE = """
version: 1.1
kind: component
name: on-pods
run:
  kind: dag
  operations:
    - name: count
      component:
        outputs: [{name: rows, type: int}]
        run:
          kind: job
          environment:
            annotations: {"flowd.test/run-for": "300ms", "flowd.test/message": '{"rows": 7}'}
          container: {image: busybox:1.36, command: [sh, -c, "echo count"]}
    - name: report
      params:
        rows: {ref: ops.count, value: outputs.rows}
      component:
        inputs: [{name: rows, type: int}]
        run:
          kind: job
          environment:
            annotations: {"flowd.test/run-for": "300ms", "flowd.test/outcome": fail, "flowd.test/exit-code": "4"}
          container: {image: busybox:1.36, command: [sh, -c, "echo {{ rows }}"]}
"""


async def test_flowd_run_with_the_kubernetes_executor(k8s_cluster, k8s_namespace, tmp_path: Path) -> None:
    untaint_nodes(k8s_cluster)
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(textwrap.dedent(PIPELINE))
    proc = subprocess.run(
        [sys.executable, "-m", "flowd", "run", str(spec), "--executor", "k8s", "--kubeconfig", str(k8s_cluster.kubeconfig),
         "--namespace", k8s_namespace, "--state-dir", str(tmp_path / "state"), "--output", "json"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["status"] == "failed"
    assert report["ops"]["count"]["status"] == "succeeded"
    assert report["ops"]["count"]["outputs"] == {"rows": 7}  # from the pod's termination message
    assert report["ops"]["report"]["status"] == "failed"
    assert "4" in (report["ops"]["report"]["message"] or "")
    pods = k8s_cluster.api().json("GET", f"/api/v1/namespaces/{k8s_namespace}/pods")["items"]
    commands = {p["metadata"]["annotations"]["flowd.io/op-path"]: p["spec"]["containers"][0]["command"] for p in pods}
    assert commands["report"] == ["sh", "-c", "echo 7"]  # rendered with the upstream output


CLEANUP = """
version: 1.1
kind: component
name: cleanup
run:
  kind: dag
  operations:
{ops}
"""

CLEANUP_OP = """    - name: {name}
      termination: {termination}
      component:
        run:
          kind: job
          environment:
            annotations: {{"flowd.test/run-for": "{run_for}", "flowd.test/message": '{{"n": {i}}}'}}
          container: {{image: busybox:1.36, command: [sh, -c, "echo {name}"]}}
"""


def cleanup_spec() -> tuple[str, dict[str, float | None]]:
    """Ops finishing before, during and after an apiserver restart; ttl 0, none, and one hour."""
    ttls: dict[str, float | None] = {}
    ops = []
    for i in range(8):
        ttl = (0, None, 3600)[i % 3]
        name = f"op-{i}"
        ttls[name] = ttl
        termination = f"{{ttl: {ttl}}}" if ttl is not None else "{}"
        ops.append(CLEANUP_OP.format(name=name, termination=termination, run_for=f"{0.5 + 0.7 * i:.1f}s", i=i))
    return CLEANUP.format(ops="".join(ops)), ttls


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def private_cluster(tmp_path_factory):
    """A control plane of this module's own: the test restarts its apiserver."""
    cluster = infra_k8s.K8sCluster(run_dir=tmp_path_factory.mktemp("k8s-run-private"))
    try:
        await cluster.start()
    except Exception as exc:  # noqa: BLE001
        if in_ci():
            pytest.fail(f"Kubernetes control plane unavailable: {exc}", pytrace=False)
        pytest.skip(f"Kubernetes control plane unavailable: {exc}")
    untaint_nodes(cluster)
    try:
        yield cluster
    finally:
        cluster.stop()


async def test_flowd_run_cleans_up_pods_as_ttl_says_across_an_apiserver_restart(private_cluster, tmp_path: Path) -> None:
    """ttl 0: deleted before ``flowd run`` exits; otherwise kept, without flowd's finalizer; stdout
    is exactly one JSON document although the watch failed while the apiserver was down."""
    cluster = private_cluster
    namespace = await cluster.create_namespace("cleanup")
    text, ttls = cleanup_spec()
    spec = tmp_path / "cleanup.yaml"
    spec.write_text(text)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "flowd", "run", str(spec), "--executor", "k8s", "--kubeconfig", str(cluster.kubeconfig),
        "--namespace", namespace, "--state-dir", str(tmp_path / "state"), "--output", "json",
        "--executor-config", json.dumps({"backoff_base": 0.5, "backoff_max": 2.0}),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    api = cluster.api()

    def pods() -> list[dict]:
        return api.json("GET", f"/api/v1/namespaces/{namespace}/pods")["items"]

    deadline = time.monotonic() + 60
    while len(pods()) < 3:
        assert time.monotonic() < deadline, "no pods were created"
        await asyncio.sleep(0.2)
    await cluster.restart_apiserver(down_for=2.0)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 180)
    assert proc.returncode == 0, stderr.decode()[-3000:]
    report = json.loads(stdout)  # exactly one JSON document, nothing else
    assert report["status"] == "succeeded"
    assert {p: o["outputs"] for p, o in report["ops"].items()} == {f"op-{i}": {"n": i} for i in range(8)}
    left = {p["metadata"]["annotations"]["flowd.io/op-path"]: p for p in pods()}
    assert sorted(left) == sorted(name for name, ttl in ttls.items() if ttl != 0), "a ttl-0 pod was left behind"
    with_finalizer = [n for n, p in left.items() if "flowd.io/report" in (p["metadata"].get("finalizers") or [])]
    assert with_finalizer == [], f"flowd's finalizer left on {with_finalizer}"
    print(f"\nflowd run: {len(ttls) - len(left)} ttl-0 pods deleted, {len(left)} kept without finalizer; "
          f"stderr warnings: {stderr.decode().count('watch_failed')} watch_failed")
