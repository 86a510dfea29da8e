"""Overhead of init steps per op, locally (``flowd run``) and on the kwok control plane.

    .venv/bin/python bench/init_bench.py [--ops 20] [--repeat 3] [--no-k8s] [--no-local] [--no-pod-steps]

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

**In-pod step processes** (``--no-pod-steps`` skips it): kwok cannot run an init container, so
the process each built-in init container runs (``python -m flowd.initsteps step JSON``, exactly
the command and args ``build_pod`` writes; ``/plx-context`` mapped to a temporary folder) is run
here as a process, for a ``file``, a ``git`` clone (``file://``), a ``dockerfile`` and an
``artifacts`` step that downloads 8 MiB (8 files) from a real S3 server (gofakes3, started here;
``python -m tests.infra build s3`` first), next to the bare interpreter start (``python -c
pass``). Printed: each step's process wall time; their sum is what these steps add to an op on
the cluster beyond the containers' start (image pull and container creation are not measured).

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


async def bench_pod_steps(repeat: int) -> None:
    import os
    import shutil

    from flowd.artifacts import StoreConfig, open_store
    from flowd.engine.messages import StartOp
    from flowd.k8s.config import Settings
    from flowd.k8s.pod import build_pod
    from tests.infra.s3 import S3Server

    tmp = Path(tempfile.mkdtemp(prefix="flowd-init-pod-bench-"))
    server = await S3Server(run_dir=tmp / "s3").start()
    try:
        make_repo(tmp / "repo.git")
        data = tmp / "data"
        data.mkdir()
        for i in range(8):
            (data / f"part-{i}").write_bytes(os.urandom(1 << 20))
        creds = server.env()
        store = open_store(StoreConfig(url=f"s3://{server.bucket}/bench", endpoint=server.endpoint), default_folder=tmp,
                           credentials={"access_key_id": creds["AWS_ACCESS_KEY_ID"],
                                        "secret_access_key": creds["AWS_SECRET_ACCESS_KEY"]})
        await store.put("r0/prep/data", data)
        steps = [{"file": {"filename": "run.sh", "chmod": "+x", "content": "echo hi"}},
                 {"git": {"url": f"file://{tmp / 'repo.git'}"}},
                 {"dockerfile": {"image": "python:3.12", "run": ["pip install -e ."]}},
                 {"artifacts": {"dirs": ["r0/prep/data"]}}]
        settings = Settings(artifacts_store=f"s3://{server.bucket}/bench", artifacts_endpoint=server.endpoint)
        cmd = StartOp(run_id="r", path="op", attempt=1, key="r/op#1", kind="job", params={},
                      run={"container": {"image": "x", "command": ["true"]}, "init": steps})
        inits = [c for c in build_pod(cmd, settings)["spec"]["initContainers"]
                 if c.get("command") == ["python", "-m", "flowd.initsteps"]]

        def timed(argv: list[str], env: dict[str, str]) -> float:
            t = time.perf_counter()
            proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp)
            took = time.perf_counter() - t
            assert proc.returncode == 0, proc.stderr[-2000:]
            return took

        base_env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWD_", "AWS_"))}
        bare = statistics.median(timed([sys.executable, "-c", "pass"], base_env) for _ in range(repeat))
        print(f"in-pod init step processes (median of {repeat}; interpreter start alone {bare * 1000:.0f} ms)")
        total = 0.0
        for c in inits:
            env = {**base_env, **creds, **{e["name"]: e["value"] for e in c.get("env") or [] if "value" in e}}
            runs = []
            for _ in range(repeat):
                ctx = tmp / "ctx"
                shutil.rmtree(ctx, ignore_errors=True)
                args = [a.replace("/plx-context", str(ctx)) for a in c["args"]]
                runs.append(timed([sys.executable, "-m", "flowd.initsteps", *args], env))
            med = statistics.median(runs)
            total += med
            print(f"  {c['name']:<28} {med * 1000:7.0f} ms")
        print(f"  {'all four, one after the other':<28} {total * 1000:7.0f} ms per op")
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ops", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-k8s", action="store_true")
    ap.add_argument("--no-local", action="store_true")
    ap.add_argument("--no-pod-steps", action="store_true")
    args = ap.parse_args()
    if not args.no_local:
        bench_local(args.ops, args.repeat)
    if not args.no_pod_steps:
        asyncio.run(bench_pod_steps(args.repeat))
    if not args.no_k8s:
        asyncio.run(bench_k8s(args.ops, args.repeat))


if __name__ == "__main__":
    main()
