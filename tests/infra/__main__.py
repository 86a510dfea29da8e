"""python -m tests.infra build [kafka|k8s|promtool|s3|git|all] | up [kafka|k8s|all] | down [..] | env | status"""
from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import shutil
import sys
import time

from . import gitserver, k8s, kafka, promtool, s3, stack
from .common import InfraUnavailable, dir_size_mb, run_root, testbin


def _size(p) -> str:
    return f"{dir_size_mb(p):.0f} MB" if p.exists() else "-"


def cmd_build(which: str) -> int:
    print(f"binary cache: {testbin()}")
    if which in ("kafka", "all"):
        t = time.monotonic()
        cached = kafka.libs_present()
        kafka.ensure_libs(quiet=False)
        print(f"kafka {kafka.KAFKA_VERSION}: {'cached' if cached else 'fetched'} in "
              f"{time.monotonic() - t:.1f}s, libs {_size(kafka.libs_dir())} at {kafka.libs_dir()}")
        jsa = kafka.cds_archive(kafka.find_java())
        if os.environ.get("FLOWD_KAFKA_CDS", "1") != "0" and not jsa.is_file():
            # one broker start+stop writes the class-data-sharing archive (faster starts)
            t = time.monotonic()
            root = run_root() / f"cds-{os.getpid()}"
            b = asyncio.run(kafka.KafkaBroker(run_dir=root).start())
            b.stop()
            shutil.rmtree(root, ignore_errors=True)
            print(f"kafka: CDS archive {'written' if jsa.is_file() else 'NOT written'} in "
                  f"{time.monotonic() - t:.1f}s ({jsa})")
    if which in ("k8s", "all"):
        if shutil.which("go") is None and k8s.missing():
            raise InfraUnavailable("k8s: `go` is not installed and binaries are missing")
        t = time.monotonic()
        before = k8s.missing()
        if before:
            k8s.build("all")
        for name, p in k8s.binaries().items():
            print(f"  {name}: {p} ({p.stat().st_size / 1e6:.0f} MB)")
        print(f"k8s {k8s.K8S_VERSION} / etcd {k8s.ETCD_VERSION} / kwok {k8s.KWOK_VERSION}: "
              f"{'built ' + ', '.join(before) if before else 'cached'} in "
              f"{time.monotonic() - t:.1f}s")
    if which in ("git", "all"):
        gitserver.build()  # git's own http-backend: installed with git, nothing to fetch
        print(f"git server: {gitserver.BACKEND} (started per test on loopback, tests/infra/gitserver.py)")
    if which in ("promtool", "all"):
        t = time.monotonic()
        cached = not promtool.missing()
        promtool.build()
        print(f"promtool {promtool.PROMTOOL_VERSION}: {'cached' if cached else 'built'} in "
              f"{time.monotonic() - t:.1f}s ({promtool.promtool_bin()})")
    if which in ("s3", "all"):
        t = time.monotonic()
        cached = not s3.missing()
        s3.build()
        print(f"s3 (gofakes3 {s3.GOFAKES3_VERSION}): {'cached' if cached else 'built'} in "
              f"{time.monotonic() - t:.1f}s ({s3.s3_bin()})")
    return 0


async def _up(which: str, nodes: int) -> int:
    state = stack.load_state()
    root = run_root()
    for name in ("kafka", "k8s"):
        # a recorded stack that is no longer (fully) alive: stop what is left of it first
        if which in (name, "all") and name in state and not (
                stack.running_kafka() if name == "kafka" else stack.running_k8s()):
            stack.stop_recorded(name)
            state = stack.load_state()
    if which in ("kafka", "all"):
        if stack.running_kafka():
            print(f"kafka already up: {state['kafka']['bootstrap']}")
        else:
            b = await kafka.KafkaBroker(run_dir=root / "kafka").start()
            state["kafka"] = stack.kafka_state(b)
            stack.save_state(state)
            print(f"kafka ready in {b.start_seconds:.1f}s: {b.describe()}")
    if which in ("k8s", "all"):
        if stack.running_k8s():
            print(f"k8s already up: {state['k8s']['server']}")
        else:
            c = await k8s.K8sCluster(run_dir=root / "k8s", nodes=nodes).start()
            state["k8s"] = stack.k8s_state(c)
            stack.save_state(state)
            steps = ", ".join(f"{k} {v:.1f}s" for k, v in c.timings.items())
            print(f"k8s ready in {c.start_seconds:.1f}s ({steps}): {c.describe()}")
    print(f"state: {stack.state_file()}  (eval \"$(python -m tests.infra env)\")")
    return 0


def cmd_env() -> int:
    exports = stack.env_exports()
    if not exports:
        print("# nothing is up (python -m tests.infra up)", file=sys.stderr)
        return 1
    for k, v in exports.items():
        print(f"export {k}={shlex.quote(v)}")
    return 0


def cmd_status() -> int:
    kb, kc = stack.running_kafka(), stack.running_k8s()
    print(f"kafka: {kb.describe() if kb else 'down'}")
    print(f"k8s:   {kc.describe() if kc else 'down'}")
    missing = k8s.missing()
    print(f"built: kafka jars {'yes' if kafka.libs_present() else 'no'}; "
          f"k8s {'yes' if not missing else 'missing ' + ', '.join(missing)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.infra", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("build", "up", "down"):
        p = sub.add_parser(name)
        p.add_argument("what", nargs="?", default="all",
                       choices=["kafka", "k8s", "all"] + (["promtool", "s3", "git"] if name == "build" else []))
        if name == "up":
            p.add_argument("--nodes", type=int, default=int(os.environ.get("FLOWD_KWOK_NODES", 1)))
    sub.add_parser("env")
    sub.add_parser("status")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "build":
            return cmd_build(a.what)
        if a.cmd == "up":
            with stack.locked():
                return asyncio.run(_up(a.what, a.nodes))
        if a.cmd == "down":
            with stack.locked():
                stack.stop_recorded(a.what)
            print("stopped")
            return 0
        if a.cmd == "env":
            return cmd_env()
        return cmd_status()
    except InfraUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
