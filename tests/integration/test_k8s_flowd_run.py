"""``flowd run --executor k8s``: the embedded runtime with pods instead of subprocesses, driven as
a user would (the CLI in a subprocess) against the real apiserver + kwok."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

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
