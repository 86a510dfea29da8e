"""flowd's Kubernetes executor beside Argo Workflows' controller, same fan-out, same control plane.

    .venv/bin/python bench/argo_bench.py [--pods 1000] [--repeat 3] [--qps 1000 --burst 2000] [--busy]
    .venv/bin/python bench/argo_bench.py --build-only      # just build/locate Argo's controller

Argo is a benchmark peer only, never a flowd dependency: its ``workflow-controller`` is built
once from the Go module proxy (``go mod download github.com/argoproj/argo-workflows/v4@VERSION``,
source copied to ``$FLOWD_BENCH_CACHE/argo-src-VERSION``, ``go build ./cmd/workflow-controller``
into ``$FLOWD_BENCH_CACHE/argo-VERSION/``; ``FLOWD_BENCH_CACHE`` defaults to
``~/.cache/flowd-bench``; ~6 min on 2 cores with a warm module cache, log in
``argo-build.log`` there). Both are reused when present.

One private control plane (tests/infra: etcd + kube-apiserver + kube-scheduler + kwok, from
``~/.cache/flowd-testbin``) serves every phase. Argo's Workflow CRDs (the source's
``manifests/base/crds/minimal``) are installed in it. Each round, in fresh namespaces:

* **argo** — a namespaced ``workflow-controller`` (``--namespaced``, leader election off,
  metrics off, ``--qps/--burst`` as given; its pod rate limit ``resourceRateLimit`` is
  unlimited by default in v4) is started and warmed with a one-task Workflow, then a Workflow
  with a DAG of ``--pods`` independent tasks is submitted; the controller is stopped (by PID)
  after the round.
* **flowd** — the pure Engine + KubernetesExecutor (flowd.k8s.harness, no Kafka) runs a DAG of
  the same ``--pods`` independent ops, with the same ``--qps/--burst`` and ``--concurrency``
  creates in flight; it watches its namespace meanwhile, as in production.

Both fan-outs' pods have the same main container (image, command), the same kwok annotations
and name a scheduler that does not exist, so neither phase leaves kube-scheduler binds or kwok
status writes behind (Argo adds its init/wait containers and labels; flowd its labels and
finalizer). The same observer measures both: a separate process (so it takes no CPU from the
process under test) watches the namespace and stamps every pod's ADDED event with the wall
clock. Printed per round: pods/s between the first and the last pod created, seconds from the
submit to the first and to the last pod, and ``uptime``'s load average next to the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml

ARGO_VERSION = os.environ.get("FLOWD_ARGO_VERSION", "v4.0.5")
ARGO_MODULE = "github.com/argoproj/argo-workflows/v4"
CACHE = Path(os.environ.get("FLOWD_BENCH_CACHE", Path.home() / ".cache" / "flowd-bench"))
NO_SCHEDULER = "flowd-bench-none"
RUN_FOR = "1s"


def argo_src() -> Path:
    return CACHE / f"argo-src-{ARGO_VERSION}"


def argo_bin() -> Path:
    return CACHE / f"argo-{ARGO_VERSION}" / "workflow-controller"


def argo_crds() -> Path:
    return argo_src() / "manifests" / "base" / "crds" / "minimal"


def build_argo() -> Path:
    """Argo's controller from the Go module proxy, built once into the cache (reused after)."""
    if argo_bin().exists() and argo_crds().is_dir():
        return argo_bin()
    go = shutil.which("go")
    if go is None:
        sys.exit("argo_bench: `go` is not on PATH; it is needed once to build Argo's workflow-controller")
    CACHE.mkdir(parents=True, exist_ok=True)
    log = CACHE / "argo-build.log"
    if not argo_crds().is_dir():
        print(f"downloading {ARGO_MODULE}@{ARGO_VERSION} from the Go module proxy ...", flush=True)
        out = subprocess.run([go, "mod", "download", "-json", f"{ARGO_MODULE}@{ARGO_VERSION}"],
                             check=True, capture_output=True, text=True).stdout
        src = Path(json.loads(out)["Dir"])
        tmp = argo_src().with_name(argo_src().name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp)  # the module cache is read-only; the build writes go.sum
        for p in [tmp, *tmp.rglob("*")]:
            p.chmod(p.stat().st_mode | 0o200)
        shutil.rmtree(argo_src(), ignore_errors=True)
        tmp.rename(argo_src())
    print(f"building Argo's workflow-controller {ARGO_VERSION} (~6 min on 2 cores; log: {log}) ...", flush=True)
    argo_bin().parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as f:
        rc = subprocess.run(["nice", "-n", "19", go, "build", "-trimpath", "-o", str(argo_bin()),
                             "./cmd/workflow-controller"], cwd=argo_src(), stdout=f, stderr=subprocess.STDOUT,
                            env={**os.environ, "GOFLAGS": "-mod=mod"}).returncode
    if rc != 0 or not argo_bin().exists():
        sys.exit(f"argo_bench: the build failed (rc={rc}); see {log}")
    return argo_bin()


def load_avg() -> str:
    return "load " + " ".join(Path("/proc/loadavg").read_text().split()[:3])


# -- the observer: a child process that stamps pod creations ---------------------------------

async def _watch_child(kubeconfig: str, ns: str, selector: str, count: int) -> None:
    from flowd.k8s.client import Kube, load_client

    api = await load_client(kubeconfig=kubeconfig)
    kube = Kube(api)
    query = {"labelSelector": selector or None}
    listed = await kube.request("GET", f"/api/v1/namespaces/{ns}/pods", query=query)
    seen: dict[str, float] = {}
    print("ready", flush=True)
    rv = listed["metadata"]["resourceVersion"]
    while len(seen) < count:
        async for ev in kube.lines(f"/api/v1/namespaces/{ns}/pods",
                                   query={**query, "resourceVersion": rv, "allowWatchBookmarks": "true"},
                                   inactivity=600):
            now = time.time()
            obj = ev["object"]
            rv = obj["metadata"].get("resourceVersion", rv)
            if ev["type"] == "ADDED":
                seen.setdefault(obj["metadata"]["name"], now)
                if len(seen) >= count:
                    break
    await kube.close()
    await api.close()
    print(json.dumps(sorted(seen.values())), flush=True)


class Observer:
    """Starts the watch child; ``await times()`` gives the creation stamps of ``count`` pods."""

    def __init__(self, kubeconfig: Path, ns: str, count: int, selector: str = "") -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--watch-child", str(kubeconfig), ns, selector,
                                      str(count)], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            self.stop()
            raise RuntimeError("the pod watcher did not start")

    async def times(self, timeout: float) -> list[float]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), timeout)
        self.proc.wait()
        return json.loads(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def figures(stamps: list[float], submitted: float) -> dict[str, float]:
    n = len(stamps)
    return {"rate": (n - 1) / (stamps[-1] - stamps[0]) if n > 1 else float("nan"),
            "first": stamps[0] - submitted, "last": stamps[-1] - submitted}


# -- Argo -----------------------------------------------------------------------------------

def install_crds(cluster) -> None:
    api = cluster.api()
    for f in sorted(argo_crds().glob("argoproj.io_*.yaml")):
        crd = yaml.safe_load(f.read_text())
        code, raw = api.call("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd, timeout=60)
        if code not in (201, 409):
            raise RuntimeError(f"installing {f.name}: HTTP {code}: {raw[:300]!r}")
    deadline = time.monotonic() + 60
    for f in sorted(argo_crds().glob("argoproj.io_*.yaml")):
        name = yaml.safe_load(f.read_text())["metadata"]["name"]
        while True:
            crd = api.json("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            if any(c["type"] == "Established" and c["status"] == "True"
                   for c in crd.get("status", {}).get("conditions", [])):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"CRD {name} never became Established")
            time.sleep(0.2)


def workflow(name: str, ns: str, n: int) -> dict:
    from tests.integration.k8s_helpers import outcome

    return {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "entrypoint": "fan",
            "schedulerName": NO_SCHEDULER,
            "podMetadata": {"annotations": outcome(run_for=RUN_FOR)},
            "templates": [
                {"name": "step", "container": {"image": "flowd/step:test", "command": ["step"]}},
                {"name": "fan", "dag": {"tasks": [{"name": f"fan-{i}", "template": "step"} for i in range(n)]}},
            ],
        },
    }


class ArgoController:
    """One namespaced workflow-controller against the cluster's kubeconfig, stopped by PID."""

    def __init__(self, cluster, ns: str, qps: float, burst: int, log: Path) -> None:
        from tests.infra.common import spawn

        cluster.api().json("POST", f"/api/v1/namespaces/{ns}/configmaps", {
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "workflow-controller-configmap"},
            # no metrics servers (ports 9090 would collide on a shared machine); defaults otherwise
            "data": {"metricsConfig": "enabled: false\n", "telemetryConfig": "enabled: false\n"}})
        self.proc = spawn([str(argo_bin()), "--kubeconfig", str(cluster.kubeconfig), "--namespace", ns,
                           "--namespaced", "--managed-namespace", ns, "--qps", str(qps), "--burst", str(burst),
                           "--executor-image", f"quay.io/argoproj/argoexec:{ARGO_VERSION}", "--loglevel", "warn"],
                          log, env={**os.environ, "LEADER_ELECTION_DISABLE": "true"}, cwd=log.parent)

    def stop(self) -> None:
        from tests.infra.common import stop_pid

        stop_pid(self.proc.pid, term_timeout=10.0)
        self.proc.wait()


async def argo_round(cluster, n: int, args, log_dir: Path, rnd: int) -> dict:
    ns = await cluster.create_namespace("argo")
    ctl = ArgoController(cluster, ns, args.qps, args.burst, log_dir / f"argo-controller-{rnd}.log")
    try:
        # warm-up: the controller's informers are synced once it has created this one pod
        warm = Observer(cluster.kubeconfig, ns, 1, "workflows.argoproj.io/workflow=warm")
        try:
            cluster.api().json("POST", f"/apis/argoproj.io/v1alpha1/namespaces/{ns}/workflows",
                               workflow("warm", ns, 1))
            await warm.times(120)
        finally:
            warm.stop()
        obs = Observer(cluster.kubeconfig, ns, n, "workflows.argoproj.io/workflow=fan")
        try:
            submitted = time.time()
            await asyncio.to_thread(cluster.api().json, "POST",
                                    f"/apis/argoproj.io/v1alpha1/namespaces/{ns}/workflows", workflow("fan", ns, n))
            return figures(await obs.times(args.timeout), submitted)
        finally:
            obs.stop()
    finally:
        ctl.stop()


# -- flowd ----------------------------------------------------------------------------------

async def flowd_round(cluster, n: int, args) -> dict:
    from flowd.engine.messages import Submit
    from flowd.k8s.executor import KubernetesExecutor
    from flowd.k8s.harness import Harness
    from tests.integration.k8s_helpers import dag, job, outcome

    ns = await cluster.create_namespace("flowd")
    ops = [job(f"fan-{i}", environment={"schedulerName": NO_SCHEDULER}, annotations=outcome(run_for=RUN_FOR))
           for i in range(n)]
    obs = Observer(cluster.kubeconfig, ns, n)
    try:
        h = Harness()
        async with KubernetesExecutor(send=h.send, kubeconfig=str(cluster.kubeconfig), namespace=ns,
                                      watch_namespaces=[ns], qps=args.qps, burst=args.burst,
                                      create_workers=args.concurrency) as ex:
            submitted = time.time()
            task = asyncio.create_task(h.run(ex, Submit(run_id="fan", pipeline=dag("fan", ops), time=submitted)))
            try:
                stamps = await obs.times(args.timeout)
            finally:
                task.cancel()
            if ex.stats["create_errors"]:
                raise RuntimeError(f"flowd: {ex.stats['create_errors']} create errors")
        return figures(stamps, submitted)
    finally:
        obs.stop()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pods", type=int, default=1000, help="fan-out size (independent tasks/ops)")
    ap.add_argument("--repeat", type=int, default=3, help="rounds (argo, flowd alternating); medians printed")
    ap.add_argument("--qps", type=float, default=1000, help="client QPS for both (Argo's default is 20)")
    ap.add_argument("--burst", type=int, default=2000, help="client burst for both (Argo's default is 30)")
    ap.add_argument("--concurrency", type=int, default=64, help="flowd's creates in flight")
    ap.add_argument("--timeout", type=float, default=900, help="seconds a phase may take")
    ap.add_argument("--busy", action="store_true", help="run a CPU burner (a busy loop) for the whole bench")
    ap.add_argument("--build-only", action="store_true", help="build/locate Argo's controller, then exit")
    args = ap.parse_args()

    binary = build_argo()
    print(f"argo workflow-controller {ARGO_VERSION}: {binary}", flush=True)
    if args.build_only:
        return

    from tests.infra import k8s as infra
    from tests.integration.k8s_helpers import ensure_nodes

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still stop what we started
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
    run_dir = Path(tempfile.mkdtemp(prefix="flowd-argo-bench-"))
    cluster = infra.K8sCluster(run_dir=run_dir / "k8s")
    try:
        await cluster.start()
        ensure_nodes(cluster, 1)
        install_crds(cluster)
        print(f"control plane: k8s {infra.K8S_VERSION} + kwok {infra.KWOK_VERSION}, 1 fake node; "
              f"{args.pods}-pod fan-out; client qps {args.qps:g} burst {args.burst}; flowd {args.concurrency} "
              f"creates in flight; {os.cpu_count()} cores shared" + ("; a CPU burner busy-loops" if args.busy else ""))
        print(f"{'round':>5} | {'who':>5} | {'pods/s':>7} | {'submit->first':>13} | {'submit->last':>12} | load avg")
        rows: dict[str, list[dict]] = {"argo": [], "flowd": []}
        for rnd in range(args.repeat):
            # alternate who goes first: etcd grows from phase to phase and the machine's load drifts
            order = ["argo", "flowd"] if rnd % 2 == 0 else ["flowd", "argo"]
            for who in order:
                f = (await argo_round(cluster, args.pods, args, run_dir, rnd) if who == "argo"
                     else await flowd_round(cluster, args.pods, args))
                rows[who].append(f)
                print(f"{rnd:>5} | {who:>5} | {f['rate']:>7.1f} | {f['first']:>11.2f} s | {f['last']:>10.2f} s | "
                      f"{load_avg()}", flush=True)
        print()
        print(f"{'':>5}   {'':>5} | {'pods/s':>7} | {'submit->first':>13} | {'submit->last':>12}   (medians)")
        med = {}
        for who, rs in rows.items():
            med[who] = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
            m = med[who]
            print(f"{'':>5}   {who:>5} | {m['rate']:>7.1f} | {m['first']:>11.2f} s | {m['last']:>10.2f} s")
        print(f"flowd/argo pod-create rate: {med['flowd']['rate'] / med['argo']['rate']:.2f}x; "
              f"time to all pods created: {med['argo']['last'] / med['flowd']['last']:.2f}x shorter with flowd")
    finally:
        cluster.stop()
        if burner is not None:
            burner.kill()
            burner.wait()
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--watch-child":
        asyncio.run(_watch_child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])))
    else:
        asyncio.run(main())
