"""Kubernetes executor throughput on a real kube-apiserver + kube-scheduler + kwok.

    .venv/bin/python bench/k8s_bench.py [--sizes 1000,5000] [--concurrency 64]

For each fan-out size N, in one private control plane (started here, thrown away after):

* **ceiling** — the apiserver's bare create throughput: a plain kubernetes_asyncio loop
  (``CoreV1Api.create_namespaced_pod``, ``--concurrency`` in flight) posting N pods identical to
  the ones flowd makes (same labels, annotations, finalizer), and the same loop over flowd's
  thin JSON client. The ceiling is the faster of the two.
* **flowd** — the pure Engine + KubernetesExecutor (Harness, no Kafka) running a DAG
  ``seed -> N parallel ops``: pods created/s over the N fan-out creates, and op-complete ->
  downstream-pod-created latency (seed's succeeded report -> each fan-out pod's create
  answered; p50/p99, so it includes the queueing behind the other N-1 creates). flowd watches
  the namespace meanwhile, as in production. A 30-op chain of pods that kwok really runs gives
  the one-hop latency without queueing.
* the daemon's (this process's) CPU seconds per pod and RSS during the flowd phase.

The fan-out pods, flowd's and the bare loops', name a scheduler that does not exist, so both
measure the same thing (creates, not kube-scheduler binds and kwok status writes, which would
otherwise pile up on the same 2 cores from one phase into the next). The seed and the chain
pods are scheduled and run by kwok.

Everything shares this machine's cores (2 here), so apiserver, etcd, scheduler, kwok and flowd
compete, and the figures drift with whatever else runs: each size is measured ``--repeat``
times (bare, flowd, bare interleaved) and the medians are printed, with every run's
flowd/ceiling ratio (the figure that matters; target >= 80%).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kubernetes_asyncio import client

from bench.cpu_sampler import CpuSampler
from flowd.engine.messages import OpStatus, StartOp, Submit
from flowd.k8s.client import Kube, load_client
from flowd.k8s.config import Settings
from flowd.k8s.executor import KubernetesExecutor
from flowd.k8s.harness import Harness
from flowd.k8s.pod import build_pod
from tests.infra import k8s as infra
from tests.integration.k8s_helpers import dag, ensure_nodes, job, outcome

RUN_FOR = "1s"


def rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_now_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def load_avg() -> str:
    return "load " + " ".join(Path("/proc/loadavg").read_text().split()[:3])


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


NO_SCHEDULER = {"schedulerName": "flowd-bench-none"}


def manifests(n: int, ns: str, tag: str) -> list[dict]:
    settings = Settings(namespace=ns)
    return [build_pod(StartOp(run_id=f"bare-{tag}", path=f"fan-{i}", attempt=1, key=f"bare-{tag}/fan-{i}#1",
                              kind="job", params={},
                              run={"container": {"image": "flowd/step:test", "command": ["step"]},
                                   "environment": {"annotations": outcome(run_for=RUN_FOR), **NO_SCHEDULER}}),
                      settings)
            for i in range(n)]


async def bare_loop(api: client.ApiClient, ns: str, bodies: list[dict], concurrency: int, *, raw: bool) -> float:
    v1 = client.CoreV1Api(api)
    kube = Kube(api)
    queue = list(reversed(bodies))

    async def worker() -> None:
        while queue:
            body = queue.pop()
            if raw:
                await kube.request("POST", f"/api/v1/namespaces/{ns}/pods", body=body)
            else:
                await v1.create_namespaced_pod(ns, body)

    t0 = time.monotonic()
    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        await kube.close()
    return len(bodies) / (time.monotonic() - t0)


async def flowd_fanout(cluster: infra.K8sCluster, ns: str, n: int, concurrency: int) -> dict:
    created: dict[str, float] = {}
    seed_done: list[float] = []
    all_created = asyncio.Event()

    class Timed(Harness):
        def send(self, event):
            if isinstance(event, OpStatus) and event.path == "seed" and event.status == "succeeded":
                seed_done.append(time.monotonic())
            super().send(event)

    def on_created(key: str, t: float) -> None:
        created[key] = t
        if len(created) == n + 1:
            all_created.set()

    h = Timed()
    ops = [job("seed", annotations=outcome(run_for="200ms"))]
    ops += [job(f"fan-{i}", upstream=["seed"], environment=NO_SCHEDULER, annotations=outcome(run_for=RUN_FOR))
            for i in range(n)]
    async with KubernetesExecutor(send=h.send, kubeconfig=str(cluster.kubeconfig), namespace=ns,
                                  watch_namespaces=[ns], qps=100_000, burst=100_000, create_workers=concurrency,
                                  on_created=on_created) as ex:
        task = asyncio.create_task(h.run(ex, Submit(run_id=f"fan{n}", pipeline=dag("fan", ops), time=time.time())))
        while not seed_done:
            await asyncio.sleep(0.01)
        cpu0 = cpu_seconds()
        await asyncio.wait_for(all_created.wait(), 600)
        cpu = cpu_seconds() - cpu0
        await asyncio.sleep(1)  # the watch events of the last pods
        rss = rss_now_mb()
        task.cancel()
        assert ex.stats["create_errors"] == 0
    fan = sorted(t for k, t in created.items() if "/fan-" in k)
    assert len(fan) == n
    lat = [t - seed_done[0] for t in fan]
    rate = (n - 1) / (fan[-1] - fan[0]) if n > 1 else float("nan")
    return {"rate": rate, "p50": pct(lat, 0.5), "p99": pct(lat, 0.99), "cpu": cpu, "rss": rss}


async def flowd_run_fanout(cluster: infra.K8sCluster, ns: str, n: int, concurrency: int,
                           on_seed_done=None, sampler=None, probe: bool = True) -> dict:
    """The same fan-out through what ``flowd run --executor k8s`` runs: flowd.runtime.driver with
    its store (journal + snapshots, fdatasync'ed, in a temp state dir) and the executor."""
    from flowd.engine import Engine
    from flowd.runtime.driver import Driver
    from flowd.runtime.store import RunRecord, SnapshotStore

    created: dict[str, float] = {}
    seed_done: list[float] = []
    all_created = asyncio.Event()
    stalls: list[float] = []

    wall: dict[str, float] = {}

    def on_created(key: str, t: float) -> None:
        created[key] = t
        wall[key] = time.time()
        if len(created) == n + 1:
            all_created.set()

    class Quiet:
        def status(self, change) -> None:
            pass

        def note(self, text: str) -> None:
            pass

    def factory(send, run_dir):
        def timed(event):
            if isinstance(event, OpStatus) and event.path == "seed" and event.status == "succeeded":
                seed_done.append(time.monotonic())
                if on_seed_done is not None:
                    on_seed_done()
            send(event)
        return KubernetesExecutor(send=timed, kubeconfig=str(cluster.kubeconfig), namespace=ns, watch_namespaces=[ns],
                                  qps=100_000, burst=100_000, create_workers=concurrency, on_created=on_created)

    gc_pauses: list[float] = []
    gc_started: list[float] = []

    def gc_timer(phase: str, info: dict) -> None:
        # the loop stands still while the cyclic collector runs: how long, in the window
        if phase == "start":
            gc_started[:] = [time.perf_counter()]
        elif gc_started:
            gc_pauses.append(time.perf_counter() - gc_started[0])

    async def stall_probe() -> None:
        # how late a 5 ms sleep wakes up: the event loop's stalls while flowd creates
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.005)
            stalls.append(time.perf_counter() - t - 0.005)

    ops = [job("seed", annotations=outcome(run_for="200ms"))]
    ops += [job(f"fan-{i}", upstream=["seed"], environment=NO_SCHEDULER, annotations=outcome(run_for=RUN_FOR))
            for i in range(n)]
    with tempfile.TemporaryDirectory(prefix="flowd-k8s-bench-state-", dir=str(Path.home() / ".cache")) as state:
        store = SnapshotStore(Path(state))
        run_id = f"run{n}-{ns}"
        record = RunRecord(run_id=run_id, file="bench.yaml", file_sha256="", params={}, engine=b"")
        driver = Driver(Engine(), record=record, store=store, progress=Quiet(), handle_signals=False, executor=factory)
        task = asyncio.create_task(driver.run([Submit(run_id=run_id, pipeline=dag("fan", ops), time=time.time())]))
        # the probe wakes the loop 200 times a second: only where its figures are printed
        prober = asyncio.create_task(stall_probe() if probe else asyncio.sleep(0))
        while not seed_done:
            await asyncio.sleep(0.01)
        cpu0 = cpu_seconds()
        stalls.clear()
        gc.callbacks.append(gc_timer)
        try:
            with sampler if sampler is not None else contextlib.nullcontext():
                await asyncio.wait_for(all_created.wait(), 600)
        finally:
            gc.callbacks.remove(gc_timer)
        cpu = cpu_seconds() - cpu0
        prober.cancel()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    fan = sorted(t for k, t in created.items() if "/fan-" in k)
    assert len(fan) == n
    lat = [t - seed_done[0] for t in fan]
    rate = (n - 1) / (fan[-1] - fan[0]) if n > 1 else float("nan")
    s = driver.stats
    return {"rate": rate, "p50": pct(lat, 0.5), "p99": pct(lat, 0.99), "last": max(lat), "cpu": cpu,
            "stamps": sorted(t for k, t in wall.items() if "/fan-" in k),
            "stall_max": max(stalls, default=0.0), "stall_p99": pct(stalls, 0.99) if stalls else 0.0,
            "gc_total": sum(gc_pauses), "gc_max": max(gc_pauses, default=0.0), "gc_n": len(gc_pauses),
            "persist": s["persist_seconds"], "in_loop": s["encode_seconds"], "batches": s["batches"]}


async def flowd_chain(cluster: infra.K8sCluster, ns: str, length: int = 30) -> dict:
    created: dict[str, float] = {}
    done: dict[str, float] = {}

    class Timed(Harness):
        def send(self, event):
            if isinstance(event, OpStatus) and event.status == "succeeded":
                done[event.path] = time.monotonic()
            super().send(event)

    h = Timed()
    ops = [job("c0", annotations=outcome(run_for="50ms"))]
    ops += [job(f"c{i}", upstream=[f"c{i - 1}"], annotations=outcome(run_for="50ms")) for i in range(1, length)]
    async with KubernetesExecutor(send=h.send, kubeconfig=str(cluster.kubeconfig), namespace=ns, watch_namespaces=[ns],
                                  on_created=lambda key, t: created.__setitem__(key.split("/")[1].split("#")[0], t)) as ex:
        await h.run(ex, Submit(run_id="chain", pipeline=dag("chain", ops), time=time.time()))
    hops = [created[f"c{i}"] - done[f"c{i - 1}"] for i in range(1, length)]
    return {"p50": pct(hops, 0.5), "p99": pct(hops, 0.99)}


async def run_side_by_side(cluster: infra.K8sCluster, api: client.ApiClient, sizes: list[int], args) -> None:
    """bare kubernetes_asyncio loop | `flowd run` path | bare loop again, same bodies and
    concurrency, interleaved; the ratio is flowd over the faster bare phase of the same round."""
    print(f"{'pods':>6} | {'bare/s':>7} | {'flowd run/s':>11} | {'bare/s':>7} | {'ratio':>6} | {'loop stall p99':>14} | "
          f"{'max':>7} | {'persist s':>9} | {'in loop s':>9} | {'batches':>7} | {'cpu/pod':>8} | {'bare cpu/pod':>8} | {'seed->all':>9} | "
          f"load avg   (bare: {args.bare})")
    for n in sizes:
        ratios = []
        for rep in range(args.repeat):
            ns_a, ns_b = await cluster.create_namespace("bare"), await cluster.create_namespace("bare")
            raw = args.bare == "json"
            bodies = manifests(n, ns_a, f"a{n}-{rep}")
            cpu_a = cpu_seconds()
            bare_a = await bare_loop(api, ns_a, bodies, args.concurrency, raw=raw)
            cpu_a = cpu_seconds() - cpu_a
            prof = None
            if args.profile:
                import cProfile

                prof = cProfile.Profile(time.thread_time)  # CPU, not wall: load would inflate wall times
                prof.enable()
            f = await flowd_run_fanout(cluster, await cluster.create_namespace("run"), n, args.concurrency)
            if prof is not None:
                prof.disable()
                prof.dump_stats(f"{args.profile}.{n}.{rep}")
            bare_b = await bare_loop(api, ns_b, manifests(n, ns_b, f"b{n}-{rep}"), args.concurrency, raw=raw)
            ratio = f["rate"] / max(bare_a, bare_b)
            ratios.append(ratio)
            print(f"{n:>6} | {bare_a:>7.0f} | {f['rate']:>11.0f} | {bare_b:>7.0f} | {ratio:>6.0%} | "
                  f"{f['stall_p99'] * 1000:>11.1f} ms | {f['stall_max'] * 1000:>4.0f} ms | {f['persist']:>9.2f} | "
                  f"{f['in_loop']:>9.3f} | {f['batches']:>7} | {f['cpu'] / n * 1000:>5.2f} ms | {cpu_a / n * 1000:>9.2f} ms | "
                  f"{f['last']:>7.2f} s | {load_avg()}", flush=True)
        print(f"{n:>6}   median ratio {statistics.median(ratios):.0%}", flush=True)


async def _bare_child(kubeconfig: str, ns: str, n: int, concurrency: int) -> None:
    """The bare client of --paired, in its own process (its CPU is not flowd's): builds its
    bodies, says ready, creates on "go" from stdin, prints the wall-clock stamp of each create."""
    api = await load_client(kubeconfig=kubeconfig)
    kube = Kube(api)
    bodies = list(reversed(manifests(n, ns, f"p-{ns}")))
    stamps: list[float] = []
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)

    async def worker() -> None:
        while bodies:
            body = bodies.pop()
            await kube.request("POST", f"/api/v1/namespaces/{ns}/pods", body=body)
            stamps.append(time.time())

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    await kube.close()
    await api.close()
    print(json.dumps(stamps), flush=True)


def overlap_rates(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """Each side's creates per second inside the window both were creating in."""
    lo, hi = max(a[0], b[0]), min(a[-1], b[-1])
    if hi <= lo:
        return float("nan"), float("nan"), 0.0
    return (sum(lo <= t <= hi for t in a) / (hi - lo), sum(lo <= t <= hi for t in b) / (hi - lo), hi - lo)


async def run_paired(cluster: infra.K8sCluster, sizes: list[int], args) -> None:
    """flowd run's fan-out and a bare client (its own process, flowd's JSON client, same pod
    bodies, same concurrency) creating AT THE SAME TIME in two namespaces: both see the same
    machine load at the same moment, which the sequential phases cannot give on a shared box.
    Rates are counted inside the window where both were creating."""
    print(f"{'pods':>6} | {'bare/s':>7} | {'flowd run/s':>11} | {'ratio':>6} | {'window':>7} | {'cpu/pod':>8} | "
          f"{'gc n/total/max':>18} | load avg   (paired: both at once)")
    for n in sizes:
        ratios = []
        sampler = CpuSampler() if args.sample else None
        for _rep in range(args.repeat):
            ns_b = await cluster.create_namespace("bare")
            child = subprocess.Popen([sys.executable, __file__, "--bare-child", str(cluster.kubeconfig), ns_b, str(n),
                                      str(args.concurrency)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            try:
                assert child.stdin is not None and child.stdout is not None
                if child.stdout.readline().strip() != "ready":
                    raise RuntimeError("the bare client did not start")

                def go(stdin=child.stdin) -> None:
                    stdin.write("go\n")
                    stdin.flush()

                f = await flowd_run_fanout(cluster, await cluster.create_namespace("run"), n, args.concurrency,
                                           on_seed_done=go, sampler=sampler, probe=False)
                bare = json.loads(await asyncio.to_thread(child.stdout.readline))
                child.wait()
            finally:
                if child.poll() is None:
                    child.kill()
                    child.wait()
            rb, rf, window = overlap_rates(sorted(bare), f["stamps"])
            ratios.append(rf / rb)
            gc_cell = f"{f['gc_n']}/{f['gc_total'] * 1000:.0f}/{f['gc_max'] * 1000:.0f} ms"
            print(f"{n:>6} | {rb:>7.0f} | {rf:>11.0f} | {rf / rb:>6.0%} | {window:>5.1f} s | {f['cpu'] / n * 1000:>5.2f} ms | "
                  f"{gc_cell:>18} | {load_avg()}", flush=True)
        print(f"{n:>6}   median ratio {statistics.median(ratios):.0%}", flush=True)
        if sampler is not None:
            print(sampler.report(per=n * args.repeat), flush=True)
            print("flowd's own functions:", flush=True)
            print(sampler.report(per=n * args.repeat, only="flowd/"), flush=True)
            sampler.dump(f"{args.sample}.{n}.json")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,5000")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3, help="runs per size; medians are printed")
    ap.add_argument("--run-only", action="store_true",
                    help="only bare client vs `flowd run` (driver + store + executor), side by side, then exit")
    ap.add_argument("--busy", action="store_true", help="run a CPU burner process (a busy loop) for the whole bench")
    ap.add_argument("--paired", action="store_true",
                    help="bare client (own process, JSON client) and `flowd run` creating at the same time, then exit")
    ap.add_argument("--bare", choices=["k8s", "json"], default="k8s",
                    help="with --run-only: the bare client — kubernetes_asyncio's CoreV1Api (k8s) or the same "
                         "loop over flowd's thin JSON client (json: no model decoding, the tighter ceiling)")
    ap.add_argument("--sample", metavar="PREFIX",
                    help="with --paired: sample where flowd's main-thread CPU goes while it creates (bench/cpu_sampler.py; "
                         "us per pod by function, printed; the counts go to PREFIX.<size>.json)")
    ap.add_argument("--profile", metavar="PREFIX",
                    help="with --run-only: cProfile the `flowd run` phases only, into PREFIX.<size>.<round>")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still stop the cluster
    burner = None
    if args.busy:
        import subprocess

        burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    cluster = infra.K8sCluster(run_dir=Path(tempfile.mkdtemp(prefix="flowd-k8s-bench-")) / "k8s")
    await cluster.start()
    try:
        ensure_nodes(cluster, 1)
        api = await load_client(kubeconfig=str(cluster.kubeconfig))
        print(f"control plane: k8s {infra.K8S_VERSION} + kwok {infra.KWOK_VERSION}, 1 fake node; "
              f"{args.concurrency} creates in flight; {os.cpu_count()} cores shared by everything"
              + ("; a CPU burner busy-loops on one core" if args.busy else ""))
        if args.paired:
            try:
                await run_paired(cluster, sizes, args)
            finally:
                await api.close()
            return
        if args.run_only:
            try:
                await run_side_by_side(cluster, api, sizes, args)
            finally:
                await api.close()
            return
        chain = await flowd_chain(cluster, await cluster.create_namespace("chain"))
        print(f"chain (30 ops): op-complete -> next pod created p50 {chain['p50'] * 1000:.1f} ms, "
              f"p99 {chain['p99'] * 1000:.1f} ms")
        print()
        print(f"{'pods':>6} | {'bare k8s-asyncio/s':>18} | {'bare json/s':>11} | {'flowd pods/s':>12} | "
              f"{'flowd/ceiling':>13} | {'latency p50':>11} | {'p99':>8} | {'cpu s':>6} | {'cpu/pod':>8} | {'rss MB':>6}"
              "   (medians of --repeat runs)")
        for n in sizes:
            rows = []
            for rep in range(args.repeat):
                # interleaved (bare, flowd, bare): the object count in etcd grows from phase to
                # phase and the machine's other load drifts, so neither side gets only the
                # early or quiet phases
                ns_a, ns_b = await cluster.create_namespace("bare"), await cluster.create_namespace("bare")
                bare_a = await bare_loop(api, ns_a, manifests(n, ns_a, f"a{n}-{rep}"), args.concurrency, raw=False)
                f = await flowd_fanout(cluster, await cluster.create_namespace("fan"), n, args.concurrency)
                bare_b = await bare_loop(api, ns_b, manifests(n, ns_b, f"b{n}-{rep}"), args.concurrency, raw=True)
                f.update(bare_a=bare_a, bare_b=bare_b, ratio=f["rate"] / max(bare_a, bare_b))
                rows.append(f)
            m = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
            ratios = ", ".join(f"{r['ratio']:.0%}" for r in rows)
            print(f"{n:>6} | {m['bare_a']:>18.0f} | {m['bare_b']:>11.0f} | {m['rate']:>12.0f} | {m['ratio']:>12.0%} | "
                  f"{m['p50']:>9.2f} s | {m['p99']:>6.2f} s | {m['cpu']:>6.1f} | {m['cpu'] / n * 1000:>5.2f} ms | "
                  f"{m['rss']:>6.0f}   (ratios: {ratios})", flush=True)
        print(f"\npeak RSS of this process (bench + flowd + the bare loops): {rss_peak_mb():.0f} MB")
        await api.close()
    finally:
        cluster.stop()
        if burner is not None:
            burner.kill()
            burner.wait()


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--bare-child":
        asyncio.run(_bare_child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])))
    else:
        asyncio.run(main())
