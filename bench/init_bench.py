"""Overhead of init steps per op, locally (``flowd run``) and on the kwok control plane.

    .venv/bin/python bench/init_bench.py [--ops 20] [--repeat 3] [--no-k8s]

**Local**: a chain of ``--ops`` jobs (each ``true``; a chain, so the ops do not compete for the
2 cores) run by ``flowd run`` as a subprocess, in four variants: no init; one ``file`` step; a
``git`` clone of a small local repository (``file://``, 3 files); git + file + dockerfile +
a ``container`` step (``true``). Printed: the median op duration (started -> finished in the
JSON report, which covers the wrapper process, the steps and the op's process) and the
difference to the no-init variant = the overhead per op.

**kwok** (kwok runs no containers, so the steps themselves cost nothing there): the time to
turn a StartOp into a Pod (``build_pod``) with and without 4 init steps, and a chain of
``--ops`` pods through the real apiserver + scheduler + kwok with and without them (median
op-complete -> next pod created, and the pod object's JSON size): what init containers cost the
control plane and flowd.

Figures are printed, never asserted; medians of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS: dict[str, list[dict[str, Any]]] = {
    "none": [],
    "file": [{"file": {"filename": "run.sh", "chmod": "+x", "content": "echo hi"}}],
    "git": [{"git": {"url": "file://{repo}"}}],
    "git+file+dockerfile+container": [
        {"git": {"url": "file://{repo}"}},
        {"file": {"filename": "run.sh", "chmod": "+x", "content": "echo hi"}},
        {"dockerfile": {"image": "python:3.12", "run": ["pip install -e ."]}},
        {"container": {"name": "c", "image": "busybox", "command": ["true"]}},
    ],
}


def make_repo(path: Path) -> None:
    from tests.infra.gitserver import make_repo as make

    make(path, {"train.py": "print(1)\n", "README": "r\n", "req.txt": "numpy\n"})


def chain_yaml(n: int, init: list[dict[str, Any]]) -> str:
    ops = []
    for i in range(n):
        op: dict[str, Any] = {"name": f"op{i}", "component": {"run": {
            "kind": "job", "container": {"image": "x", "command": ["true"]}, **({"init": init} if init else {})}}}
        if i:
            op["dependencies"] = [f"op{i - 1}"]
        ops.append(op)
    return json.dumps({"version": 1.1, "kind": "component", "name": "bench", "run": {"kind": "dag", "operations": ops}})


def local_run(tmp: Path, n: int, init: list[dict[str, Any]]) -> float:
    spec = tmp / f"chain-{time.monotonic_ns()}.json"
    spec.write_text(chain_yaml(n, init))
    proc = subprocess.run([sys.executable, "-m", "flowd", "run", str(spec), "--state-dir", str(tmp / "state"),
                           "--output", "json", "--no-cache"], capture_output=True, text=True, cwd=ROOT)
    report = json.loads(proc.stdout)
    assert report["status"] == "succeeded", proc.stderr[-2000:]
    durations = [datetime.fromisoformat(op["finished_at"]).timestamp() - datetime.fromisoformat(op["started_at"]).timestamp()
                 for op in report["ops"].values()]
    return statistics.median(durations)


def bench_local(n: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory(prefix="flowd-init-bench-") as d:
        tmp = Path(d)
        make_repo(tmp / "repo.git")
        print(f"local (flowd run, chain of {n} ops, median op duration of the median of {repeat} runs)")
        base = None
        for name, init in VARIANTS.items():
            init = json.loads(json.dumps(init).replace("{repo}", str(tmp / "repo.git")))
            med = statistics.median(local_run(tmp, n, init) for _ in range(repeat))
            base = med if base is None else base
            print(f"  {name:<32} op {med * 1000:7.1f} ms   overhead {(med - base) * 1000:+7.1f} ms/op")


async def bench_k8s(n: int, repeat: int) -> None:
    from flowd.engine.messages import OpStatus, StartOp, Submit
    from flowd.k8s.config import Settings
    from flowd.k8s.executor import KubernetesExecutor
    from flowd.k8s.harness import Harness
    from flowd.k8s.pod import build_pod
    from tests.infra import k8s as infra
    from tests.integration.k8s_helpers import dag, ensure_nodes, job, outcome

    init = json.loads(json.dumps(VARIANTS["git+file+dockerfile+container"]).replace("{repo}", "/srv/repo.git"))
    settings = Settings()
    print(f"kwok (chain of {n} pods, medians of {repeat} runs)")
    for name, steps in (("none", []), ("4 init steps", init)):
        run = {"container": {"image": "x", "command": ["true"]}, **({"init": steps} if steps else {})}
        cmd = StartOp(run_id="r", path="op", attempt=1, key="r/op#1", kind="job", params={}, run=run)
        loops = 2000
        t = time.perf_counter()
        for _ in range(loops):
            pod = build_pod(cmd, settings)
        per = (time.perf_counter() - t) / loops
        print(f"  build_pod {name:<14} {per * 1e6:7.1f} us/pod, pod JSON {len(json.dumps(pod))} bytes")

    cluster = infra.K8sCluster(run_dir=Path(tempfile.mkdtemp(prefix="flowd-init-bench-")) / "k8s")
    await cluster.start()
    try:
        ensure_nodes(cluster, 1)
        for name, steps in (("none", []), ("4 init steps", init)):
            hops_all = []
            for rep in range(repeat):
                ns = await cluster.create_namespace(f"b{rep}")
                created: dict[str, float] = {}
                done: dict[str, float] = {}

                class Timed(Harness):
                    def __init__(self, done: dict[str, float]) -> None:
                        super().__init__()
                        self.done = done

                    def send(self, event: Any) -> None:
                        if isinstance(event, OpStatus) and event.status == "succeeded":
                            self.done[event.path] = time.monotonic()
                        super().send(event)

                h = Timed(done)
                extra = {"init": steps} if steps else {}
                ops = [job(f"c{i}", upstream=[f"c{i - 1}"] if i else None, annotations=outcome(run_for="50ms"), run=extra)
                       for i in range(n)]
                async with KubernetesExecutor(send=h.send, kubeconfig=str(cluster.kubeconfig), namespace=ns,
                                              watch_namespaces=[ns],
                                              on_created=lambda key, t, c=created: c.__setitem__(key.split("/")[1].split("#")[0], t)) as ex:
                    t0 = time.monotonic()
                    await h.run(ex, Submit(run_id=f"chain{rep}", pipeline=dag("chain", ops), time=time.time()))
                    wall = time.monotonic() - t0
                hops_all.append((statistics.median(created[f"c{i}"] - done[f"c{i - 1}"] for i in range(1, n)), wall))
            hop = statistics.median(h for h, _ in hops_all)
            wall = statistics.median(w for _, w in hops_all)
            print(f"  chain {name:<14} op-complete -> next pod created {hop * 1000:6.1f} ms, chain wall {wall:5.2f} s "
                  f"({wall / n * 1000:.0f} ms/op)")
    finally:
        cluster.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ops", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-k8s", action="store_true")
    args = ap.parse_args()
    bench_local(args.ops, args.repeat)
    if not args.no_k8s:
        asyncio.run(bench_k8s(args.ops, args.repeat))


if __name__ == "__main__":
    main()
