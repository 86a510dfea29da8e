"""Start/stop the stack and remember it in a state file (for `up`/`down`/`env` and reuse)."""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from . import k8s, kafka
from .common import pid_alive, port_open, run_root, stop_pid


def state_file() -> Path:
    return run_root() / "state.json"


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """Serialise `up`/`down` (read-modify-write of the state file) across processes."""
    run_root().mkdir(parents=True, exist_ok=True)
    with open(run_root() / "lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def load_state() -> dict:
    try:
        return json.loads(state_file().read_text())
    except (OSError, ValueError):
        return {}


def save_state(state: dict) -> None:
    run_root().mkdir(parents=True, exist_ok=True)
    tmp = state_file().with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(state_file())


def kafka_state(b: kafka.KafkaBroker) -> dict:
    return {"bootstrap": b.bootstrap, "port": b.port, "controller_port": b.controller_port,
            "pid": b.pid, "run_dir": str(b.run_dir), "version": b.version}


def k8s_state(c: k8s.K8sCluster) -> dict:
    return {"kubeconfig": str(c.kubeconfig), "server": c.server, "pids": c.pids,
            "ports": c.ports, "run_dir": str(c.run_dir), "nodes": c.nodes,
            "version": k8s.K8S_VERSION}


def running_kafka() -> kafka.KafkaBroker | None:
    """The broker started by `up`, if it is still alive (reused, never stopped by tests)."""
    s = load_state().get("kafka")
    if not s or not pid_alive(s["pid"]) or not port_open(s["port"]):
        return None
    return kafka.KafkaBroker(run_dir=Path(s["run_dir"]), version=s["version"], port=s["port"],
                             controller_port=s["controller_port"], pid=s["pid"], owned=False)


def running_k8s() -> k8s.K8sCluster | None:
    s = load_state().get("k8s")
    if not s or not all(pid_alive(p) for p in s["pids"].values()) \
            or not port_open(s["ports"]["apiserver"]):
        return None
    return k8s.K8sCluster(run_dir=Path(s["run_dir"]), nodes=s["nodes"], ports=s["ports"],
                          pids=s["pids"], owned=False)


def stop_recorded(which: str) -> None:
    state = load_state()
    if which in ("k8s", "all") and "k8s" in state:
        pids = state["k8s"]["pids"]
        for name in reversed(k8s.K8sCluster.ORDER):
            if name in pids:
                stop_pid(pids[name], term_timeout=10.0)
        shutil.rmtree(state["k8s"]["run_dir"], ignore_errors=True)
        del state["k8s"]
    if which in ("kafka", "all") and "kafka" in state:
        stop_pid(state["kafka"]["pid"], term_timeout=30.0)
        shutil.rmtree(state["kafka"]["run_dir"], ignore_errors=True)
        del state["kafka"]
    if state:
        save_state(state)
    else:
        try:
            state_file().unlink()
        except FileNotFoundError:
            pass


def env_exports() -> dict[str, str]:
    state = load_state()
    out = {}
    if "kafka" in state:
        out["FLOWD_TEST_KAFKA"] = state["kafka"]["bootstrap"]
    if "k8s" in state:
        out["KUBECONFIG"] = state["k8s"]["kubeconfig"]
        out["FLOWD_TEST_KUBECONFIG"] = state["k8s"]["kubeconfig"]
    return out


def reuse_allowed() -> bool:
    return os.environ.get("FLOWD_INFRA_REUSE", "1") not in ("0", "false", "no")
