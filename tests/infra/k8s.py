"""A real Kubernetes control plane for tests: etcd + kube-apiserver + kube-scheduler + kwok.

Binaries are built from the Go module proxy by ``build-k8s.sh`` and cached by version in
``~/.cache/flowd-testbin``. Everything listens on 127.0.0.1 (free ports), uses a throw-away
PKI, and writes a kubeconfig that kubernetes_asyncio can load. kwok plays fake Nodes and
drives Pods Pending -> Running -> Succeeded/Failed according to pod annotations
(see ``assets/flowd-stages.yaml``). There is no kube-controller-manager.

Pod logs: kwok is the fake nodes' kubelet. Its server (``--server-address``) answers the
kubelet's ``/containerLogs`` API, and the fake nodes advertise it (``--node-ip=127.0.0.1``,
``--node-port``: the node's InternalIP and ``daemonEndpoints.kubeletEndpoint.Port``), so
kube-apiserver proxies ``GET pods/{name}/log`` to it (``--kubelet-preferred-address-types=
InternalIP``: the default tries the Hostname address first, which does not resolve; no
``--kubelet-certificate-authority``, so the apiserver does not verify kwok's self-signed
certificate). What kwok serves as a container's log is a file named by a ``Logs`` object
(kwok's CRD: installed here, watched by kwok with ``--enable-crds=Logs``) of the pod's name and namespace; the file is
in the CRI log format (``<RFC3339Nano time> stdout F <line>``). ``K8sCluster.write_pod_log``
writes one, and tests/integration/k8s_helpers.PodLogScript plays the lines a pod's
``flowd.test/log`` annotation lists while the pod runs.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .common import INFRA_DIR, InfraUnavailable, free_ports, log_tail, pid_alive, spawn, stop_pid, testbin, wait_until

K8S_VERSION = os.environ.get("FLOWD_K8S_VERSION", "v1.35.4")
ETCD_VERSION = os.environ.get("FLOWD_ETCD_VERSION", "v3.6.14")
KWOK_VERSION = os.environ.get("FLOWD_KWOK_VERSION", "v0.8.0")
ASSETS = INFRA_DIR / "assets"
BUILD_SCRIPT = INFRA_DIR / "build-k8s.sh"

# kwok's own upstream stages, copied at build time from the kwok module into the cache.
UPSTREAM_STAGES = ["node/fast/node-initialize.yaml", "pod/fast/pod-ready.yaml",
                   "pod/fast/pod-delete.yaml"]

# Annotation names understood by the kwok stages (see assets/flowd-stages.yaml).
A_OUTCOME = "flowd.test/outcome"
A_RUN_FOR = "flowd.test/run-for"
A_PENDING_FOR = "flowd.test/pending-for"
A_EXIT_CODE = "flowd.test/exit-code"
A_REASON = "flowd.test/reason"
A_MESSAGE = "flowd.test/message"
# pod logs (played by tests/integration/k8s_helpers.PodLogScript): a JSON list of lines, and
# the seconds between two of them
A_LOG = "flowd.test/log"
A_LOG_INTERVAL = "flowd.test/log-interval"
KWOK_API = "/apis/kwok.x-k8s.io/v1alpha1"


def etcd_bin() -> Path:
    return testbin() / f"etcd-{ETCD_VERSION}" / "etcd"


def kube_bin(name: str) -> Path:
    return testbin() / f"k8s-{K8S_VERSION}" / name


def kwok_bin() -> Path:
    return testbin() / f"kwok-{KWOK_VERSION}" / "kwok"


def kwok_stages_dir() -> Path:
    return testbin() / f"kwok-{KWOK_VERSION}" / "stages"


# kwok's CRDs the harness installs (copied at build time from the kwok module, like the stages)
KWOK_CRDS = ["kwok.x-k8s.io_logs.yaml"]


def kwok_crds_dir() -> Path:
    return testbin() / f"kwok-{KWOK_VERSION}" / "crds"


def binaries() -> dict[str, Path]:
    return {"etcd": etcd_bin(), "kube-apiserver": kube_bin("kube-apiserver"),
            "kube-scheduler": kube_bin("kube-scheduler"), "kwok": kwok_bin()}


def missing() -> list[str]:
    out = [n for n, p in binaries().items() if not os.access(p, os.X_OK)]
    if not all((kwok_stages_dir() / Path(s).name).is_file() for s in UPSTREAM_STAGES):
        out.append("kwok stages")
    if not all((kwok_crds_dir() / c).is_file() for c in KWOK_CRDS):
        out.append("kwok CRDs")
    return out


def build(what: str = "all") -> None:
    """Build missing binaries (slow when cold: see docs/infra.md). Raises on failure."""
    env = dict(os.environ, K8S_VERSION=K8S_VERSION, ETCD_VERSION=ETCD_VERSION,
               KWOK_VERSION=KWOK_VERSION, FLOWD_TESTBIN=str(testbin()))
    r = subprocess.run(["bash", str(BUILD_SCRIPT), what], env=env)
    if r.returncode != 0:
        raise InfraUnavailable(f"k8s: {BUILD_SCRIPT.name} {what} failed (exit {r.returncode})")


def cri_line(line: str, *, stream: str = "stdout", at: float | None = None) -> str:
    """One line of the CRI container log format, which kwok (as a kubelet) reads."""
    t = time.time() if at is None else at
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1e9):09d}Z"
    return f"{stamp} {stream} F {line}\n"


def append_pod_log(path: Path, lines: list[str]) -> None:
    with path.open("a") as f:
        for line in lines:
            f.write(cri_line(line))


# -- PKI / kubeconfig --------------------------------------------------------------------

def gen_pki(pki: Path) -> None:
    if shutil.which("openssl") is None:
        raise InfraUnavailable("k8s: openssl is needed to generate the test PKI")
    r = subprocess.run(["bash", str(ASSETS / "gen-pki.sh"), str(pki)], capture_output=True,
                       text=True)
    if r.returncode != 0:
        raise InfraUnavailable(f"k8s: gen-pki.sh failed: {r.stderr}")


def write_kubeconfig(pki: Path, server: str, out: Path) -> None:
    def b(name: str) -> str:
        return base64.b64encode((pki / name).read_bytes()).decode()

    cfg = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "flowd-test", "cluster": {
            "server": server, "certificate-authority-data": b("ca.crt")}}],
        "users": [{"name": "flowd-admin", "user": {
            "client-certificate-data": b("admin.crt"), "client-key-data": b("admin.key")}}],
        "contexts": [{"name": "flowd-test",
                      "context": {"cluster": "flowd-test", "user": "flowd-admin"}}],
        "current-context": "flowd-test",
    }
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    out.chmod(0o600)


def kwok_config() -> str:
    """kwok.yaml: kwok's upstream stages (pod-ready gets a pending-for delay) + flowd's."""
    docs = []
    for rel in UPSTREAM_STAGES:
        doc = yaml.safe_load((kwok_stages_dir() / Path(rel).name).read_text())
        if doc["metadata"]["name"] == "pod-ready":
            doc["spec"]["delay"] = {
                "durationMilliseconds": 0,
                "durationFrom": {"expressionFrom": f'.metadata.annotations["{A_PENDING_FOR}"]'}}
        docs.append(yaml.safe_dump(doc, sort_keys=False))
    docs.append((ASSETS / "flowd-stages.yaml").read_text())
    return "\n---\n".join(docs)


# -- tiny synchronous API client (stdlib only) --------------------------------------------

class _Api:
    def __init__(self, server: str, pki: Path):
        self.server = server
        self.ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        self.ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))

    def call(self, method: str, path: str, body: dict | None = None, *,
             timeout: float = 10.0, content_type: str = "application/json") -> tuple[int, bytes]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method,
                                     headers={"Content-Type": content_type,
                                              "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def json(self, method: str, path: str, body: dict | None = None) -> dict:
        code, raw = self.call(method, path, body)
        if code >= 300:
            raise RuntimeError(f"{method} {path}: HTTP {code}: {raw[:500]!r}")
        return json.loads(raw)


@dataclass
class K8sCluster:
    """A running control plane. ``kubeconfig`` is a file kubernetes_asyncio can load."""

    run_dir: Path
    nodes: int = 1
    ports: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    owned: bool = True
    start_seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    _procs: dict[str, subprocess.Popen] = field(default_factory=dict, repr=False)

    ORDER = ("etcd", "kube-apiserver", "kube-scheduler", "kwok")

    @property
    def pki(self) -> Path:
        return self.run_dir / "pki"

    @property
    def kubeconfig(self) -> Path:
        return self.run_dir / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    @property
    def node_names(self) -> list[str]:
        return [f"kwok-node-{i}" for i in range(self.nodes)]

    def log(self, name: str) -> Path:
        return self.run_dir / f"{name}.log"

    def api(self) -> _Api:
        return _Api(self.server, self.pki)

    # -- lifecycle --------------------------------------------------------------------
    async def start(self, *, timeout: float = 90.0) -> K8sCluster:
        miss = missing()
        if miss:
            raise InfraUnavailable(
                f"k8s: not built: {', '.join(miss)} (run `python -m tests.infra build k8s`; "
                f"a cold build takes ~8 min on 2 cores, see docs/infra.md)")
        t0 = time.monotonic()
        if self.run_dir.exists():
            shutil.rmtree(self.run_dir)
        self.run_dir.mkdir(parents=True)
        gen_pki(self.pki)
        etcd_c, etcd_p, api_p, sched_p, kwok_p = free_ports(5)
        self.ports = {"etcd": etcd_c, "etcd-peer": etcd_p, "apiserver": api_p,
                      "scheduler": sched_p, "kwok": kwok_p}
        try:
            await self._start_etcd(timeout)
            self.timings["etcd"] = time.monotonic() - t0
            await self._start_apiserver(timeout)
            self.timings["kube-apiserver"] = time.monotonic() - t0
            write_kubeconfig(self.pki, self.server, self.kubeconfig)
            await self._start_scheduler(timeout)
            self.timings["kube-scheduler"] = time.monotonic() - t0
            await self._start_kwok(timeout)
            self.timings["kwok+nodes"] = time.monotonic() - t0
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - t0
        return self

    def _spawn(self, name: str, cmd: list[str], env: dict | None = None) -> None:
        p = spawn(cmd, self.log(name), env=env, cwd=self.run_dir)
        self._procs[name] = p
        self.pids[name] = p.pid

    def _alive(self, name: str):
        return lambda: pid_alive(self.pids[name])

    async def _start_etcd(self, timeout: float) -> None:
        c, p = self.ports["etcd"], self.ports["etcd-peer"]
        self._spawn("etcd", [
            str(etcd_bin()), "--name", "flowd-test", "--data-dir", str(self.run_dir / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{c}",
            "--advertise-client-urls", f"http://127.0.0.1:{c}",
            "--listen-peer-urls", f"http://127.0.0.1:{p}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{p}",
            "--initial-cluster", f"flowd-test=http://127.0.0.1:{p}",
            "--unsafe-no-fsync", "--log-level", "warn"])

        async def ok() -> bool:
            def get() -> bool:
                with urllib.request.urlopen(f"http://127.0.0.1:{c}/health", timeout=2) as r:
                    return json.loads(r.read()).get("health") == "true"
            return await asyncio.to_thread(get)

        await wait_until(ok, timeout=timeout, what="etcd", alive=self._alive("etcd"),
                         log=self.log("etcd"))

    async def _start_apiserver(self, timeout: float) -> None:
        pki = self.pki
        self._spawn("kube-apiserver", [
            str(kube_bin("kube-apiserver")),
            f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}", "--etcd-prefix=/flowd-test",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={self.ports['apiserver']}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--authorization-mode=RBAC",
            "--disable-admission-plugins=ServiceAccount",
            "--allow-privileged=true", "--enable-priority-and-fairness=false",
            "--profiling=false", "--v=1",
            # pods/log is proxied to the node's kubelet (kwok): by its InternalIP (127.0.0.1)
            "--kubelet-preferred-address-types=InternalIP",
            f"--cert-dir={self.run_dir / 'apiserver-certs'}",
        ])
        api = self.api()

        async def ok() -> bool:
            def get() -> bool:
                code, _ = api.call("GET", "/readyz", timeout=3)
                if code != 200:
                    return False
                code, _ = api.call("GET", "/api/v1/namespaces/default", timeout=3)
                return code == 200
            return await asyncio.to_thread(get)

        await wait_until(ok, timeout=timeout, what="kube-apiserver", interval=0.3,
                         alive=self._alive("kube-apiserver"), log=self.log("kube-apiserver"))

    async def _start_scheduler(self, timeout: float) -> None:
        port = self.ports["scheduler"]
        self._spawn("kube-scheduler", [
            str(kube_bin("kube-scheduler")), f"--kubeconfig={self.kubeconfig}",
            "--leader-elect=false", "--bind-address=127.0.0.1", f"--secure-port={port}",
            # no client-side throttling (kwokctl's DisableQPSLimits): default is 50 qps
            "--kube-api-qps=5000", "--kube-api-burst=5000",
            f"--cert-dir={self.run_dir / 'scheduler-certs'}",
            "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics", "--v=1"])
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE

        async def ok() -> bool:
            def get() -> bool:
                with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=ctx,
                                            timeout=2) as r:
                    return r.status == 200
            return await asyncio.to_thread(get)

        await wait_until(ok, timeout=timeout, what="kube-scheduler",
                         alive=self._alive("kube-scheduler"), log=self.log("kube-scheduler"))

    async def _start_kwok(self, timeout: float) -> None:
        cfg = self.run_dir / "kwok.yaml"
        cfg.write_text(kwok_config())
        # kwok's Logs CRD, before kwok starts watching it (--enable-crds=Logs)
        def install_crds() -> None:
            for name in KWOK_CRDS:
                crd = yaml.safe_load((kwok_crds_dir() / name).read_text())
                code, raw = self.api().call("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
                if code not in (201, 409):
                    raise InfraUnavailable(f"k8s: installing kwok's CRD {name}: HTTP {code} {raw[:300]!r}")

        await asyncio.to_thread(install_crds)
        home = self.run_dir / "kwok-home"
        home.mkdir()
        self._spawn("kwok", [
            str(kwok_bin()), f"--kubeconfig={self.kubeconfig}", f"--config={cfg}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--cidr=10.244.0.0/16", "--node-lease-duration-seconds=40",
            # the nodes advertise kwok's server as their kubelet (pod logs, see the top)
            "--node-ip=127.0.0.1", f"--node-port={self.ports['kwok']}", "--enable-crds=Logs",
            f"--server-address=127.0.0.1:{self.ports['kwok']}"],
            env=dict(os.environ, HOME=str(home)))
        api = self.api()
        template = (ASSETS / "fake-node.yaml").read_text()


        def create_nodes() -> None:
            for name in self.node_names:
                node = yaml.safe_load(template.replace("NAME", name))
                code, raw = api.call("POST", "/api/v1/nodes", node)
                if code not in (201, 409):
                    raise InfraUnavailable(f"k8s: creating node {name}: HTTP {code} {raw[:300]!r}")

        await asyncio.to_thread(create_nodes)

        async def ok() -> bool:
            def get() -> bool:
                for name in self.node_names:
                    n = api.json("GET", f"/api/v1/nodes/{name}")
                    conds = {c["type"]: c["status"] for c in n.get("status", {}).get("conditions", [])}
                    if conds.get("Ready") != "True":
                        return False
                return True
            return await asyncio.to_thread(get)

        await wait_until(ok, timeout=timeout, what="kwok (fake nodes Ready)", interval=0.2,
                         alive=self._alive("kwok"), log=self.log("kwok"))

        # The TaintNodesByCondition admission plugin gives every new Node the taint
        # node.kubernetes.io/not-ready:NoSchedule; the node-lifecycle controller of
        # kube-controller-manager would lift it once the Node is Ready. There is none here.
        def untaint() -> None:
            for name in self.node_names:
                code, raw = api.call("PATCH", f"/api/v1/nodes/{name}", {"spec": {"taints": None}},
                                     content_type="application/merge-patch+json")
                if code != 200:
                    raise InfraUnavailable(f"k8s: untainting {name}: HTTP {code} {raw[:300]!r}")

        await asyncio.to_thread(untaint)

        # the Logs CRD is established: wait until the API serves it
        async def logs_served() -> bool:
            def get() -> bool:
                code, raw = api.call("GET", KWOK_API, timeout=3)
                return code == 200 and any(r.get("name") == "logs" for r in json.loads(raw).get("resources", []))
            return await asyncio.to_thread(get)

        await wait_until(logs_served, timeout=timeout, what="kwok's Logs CRD", interval=0.2,
                         alive=self._alive("kwok"), log=self.log("kwok"))

    async def restart_apiserver(self, *, down_for: float = 0.0, timeout: float = 60.0) -> None:
        """Stop kube-apiserver (SIGTERM, then SIGKILL), leave it down ``down_for`` seconds, and
        start it again on the same port; etcd keeps the data, scheduler and kwok reconnect."""
        stop_pid(self.pids.get("kube-apiserver"), term_timeout=10.0)
        if down_for:
            await asyncio.sleep(down_for)
        await self._start_apiserver(timeout)

    def alive(self) -> bool:
        return bool(self.pids) and all(pid_alive(self.pids.get(n, 0)) for n in self.ORDER)

    def stop(self) -> None:
        """Stop kwok, scheduler, apiserver, etcd (reverse start order), by PID."""
        if not self.owned:
            return
        for name in reversed(self.ORDER):
            pid = self.pids.get(name)
            if pid:
                stop_pid(pid, term_timeout=10.0)
                p = self._procs.get(name)
                if p is not None:
                    try:
                        p.wait(timeout=1)
                    except subprocess.TimeoutExpired:
                        pass
        self.pids.clear()

    # -- helpers for tests --------------------------------------------------------------
    def unique_namespace_name(self, prefix: str = "t") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:10]}"

    def create_namespace_sync(self, prefix: str = "t", labels: dict | None = None) -> str:
        name = self.unique_namespace_name(prefix)
        self.api().json("POST", "/api/v1/namespaces", {
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"flowd.test/ns": "1", **(labels or {})}}})
        return name

    async def create_namespace(self, prefix: str = "t", labels: dict | None = None) -> str:
        """Create a fresh namespace (never wait for deletion: no namespace controller)."""
        return await asyncio.to_thread(self.create_namespace_sync, prefix, labels)

    async def delete_namespace(self, name: str) -> None:
        await asyncio.to_thread(self.api().call, "DELETE", f"/api/v1/namespaces/{name}")

    def pod_log_path(self, namespace: str, pod: str) -> Path:
        return self.run_dir / "pod-logs" / namespace / f"{pod}.log"

    def write_pod_log(self, namespace: str, pod: str, lines: list[str] | None = None) -> Path:
        """Make kwok serve a file as the log of every container of ``namespace/pod``: the
        file gets ``lines`` (CRI format; append more with :func:`append_pod_log`) and a
        ``Logs`` object of the pod's name points kwok at it. Idempotent."""
        path = self.pod_log_path(namespace, pod)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        append_pod_log(path, lines or [])
        body = {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Logs",
                "metadata": {"name": pod, "namespace": namespace},
                "spec": {"logs": [{"logsFile": str(path), "follow": True}]}}
        code, raw = self.api().call("POST", f"{KWOK_API}/namespaces/{namespace}/logs", body)
        if code not in (201, 409):
            raise RuntimeError(f"creating Logs {namespace}/{pod}: HTTP {code} {raw[:300]!r}")
        return path

    def env(self) -> dict[str, str]:
        return {"KUBECONFIG": str(self.kubeconfig)}

    def describe(self) -> str:
        return (f"k8s {K8S_VERSION} at {self.server} (kubeconfig {self.kubeconfig}; "
                f"pids {self.pids})")

    def logs_tail(self) -> str:
        return "\n".join(f"== {n} ==\n{log_tail(self.log(n), 15)}" for n in self.ORDER)
