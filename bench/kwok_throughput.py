"""Pod throughput through a real kube-apiserver + kube-scheduler + kwok (tests/infra/k8s.py).

    .venv/bin/python bench/kwok_throughput.py [--pods 1000] [--concurrency 32]

Prints two figures:
  * bare create/s: POST /pods for pods no scheduler will pick up (schedulerName: none),
    i.e. apiserver + etcd write throughput as seen from kubernetes_asyncio;
  * created->Succeeded pods/s: pods created with run-for=0s, from the first POST until a
    watch has seen every pod Succeeded (scheduler binds, kwok plays Running and Succeeded).
Everything (client, apiserver, etcd, scheduler, kwok) shares this machine's cores, so the
figure is an upper bound on what a flowd test can expect, not a cluster benchmark.
Starts its own cluster unless `python -m tests.infra up k8s` is running.
"""
from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kubernetes_asyncio import client, config, watch

from tests.infra import k8s, stack


def body(name: str, schedule: bool) -> dict:
    spec = {"restartPolicy": "Never",
            "containers": [{"name": "main", "image": "flowd/step:bench"}]}
    if not schedule:
        spec["schedulerName"] = "none"
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "annotations": {"flowd.test/run-for": "0s"}},
            "spec": spec}


async def create_all(v1: client.CoreV1Api, ns: str, n: int, conc: int, schedule: bool,
                     prefix: str) -> float:
    sem = asyncio.Semaphore(conc)

    async def one(i: int) -> None:
        async with sem:
            await v1.create_namespaced_pod(ns, body(f"{prefix}-{i}", schedule))

    t0 = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(n)))
    return time.monotonic() - t0


async def run(cluster: k8s.K8sCluster, n: int, conc: int) -> None:
    cfg = client.Configuration()
    await config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=cfg)
    cfg.connection_pool_maxsize = conc
    async with client.ApiClient(configuration=cfg) as api:
        v1 = client.CoreV1Api(api)

        ns = await cluster.create_namespace("bench-bare")
        dt = await create_all(v1, ns, n, conc, schedule=False, prefix="bare")
        print(f"bare create:           {n} pods in {dt:6.1f}s = {n / dt:7.1f} pods/s")
        await cluster.delete_namespace(ns)  # no controller-manager: the pods just stay

        ns = await cluster.create_namespace("bench-run")
        done: set[str] = set()
        ready = asyncio.Event()
        finished = asyncio.Event()

        async def watcher() -> None:
            rv = (await v1.list_namespaced_pod(ns)).metadata.resource_version
            ready.set()
            while not finished.is_set():
                async with watch.Watch() as w:
                    async for ev in w.stream(v1.list_namespaced_pod, ns, resource_version=rv,
                                             timeout_seconds=60):
                        p = ev["object"]
                        rv = p.metadata.resource_version
                        if p.status.phase == "Succeeded":
                            done.add(p.metadata.name)
                            if len(done) >= n:
                                finished.set()
                                return
                        elif p.status.phase == "Failed":
                            raise RuntimeError(f"pod {p.metadata.name} failed")

        wt = asyncio.create_task(watcher())
        await ready.wait()
        t0 = time.monotonic()
        dt_create = await create_all(v1, ns, n, conc, schedule=True, prefix="run")
        print(f"create (with sched):   {n} pods in {dt_create:6.1f}s = {n / dt_create:7.1f} pods/s")
        try:
            await asyncio.wait_for(finished.wait(), timeout=150)
        except TimeoutError:
            print(f"TIMEOUT: only {len(done)}/{n} Succeeded after {time.monotonic() - t0:.0f}s")
            wt.cancel()
            raise SystemExit(1) from None
        dt = time.monotonic() - t0
        print(f"created->Succeeded:    {n} pods in {dt:6.1f}s = {n / dt:7.1f} pods/s")
        await wt


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pods", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--nodes", type=int, default=1)
    a = ap.parse_args()
    cluster = stack.running_k8s() if stack.reuse_allowed() else None
    if cluster is None:
        tmp = Path(tempfile.mkdtemp(prefix="flowd-bench-"))
        try:
            cluster = await k8s.K8sCluster(run_dir=tmp / "k8s", nodes=a.nodes).start()
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        print(f"control plane ready in {cluster.start_seconds:.1f}s ({k8s.K8S_VERSION}, "
              f"etcd {k8s.ETCD_VERSION}, kwok {k8s.KWOK_VERSION}, {a.nodes} fake node(s))")
    else:
        print(f"reusing {cluster.describe()}")
    try:
        await run(cluster, a.pods, a.concurrency)
    finally:
        cluster.stop()
        if cluster.owned:
            shutil.rmtree(cluster.run_dir.parent, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
