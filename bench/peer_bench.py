"""flowd's engine against Python DAG peers on the same shapes, with no-op tasks.

    .venv/bin/python bench/peer_bench.py

The peers (dask's synchronous scheduler, luigi's local scheduler) are installed into their own
venv under ~/.cache/flowd-bench/peers on first use — they are not flowd dependencies. Each peer
runs the shape with tasks that do nothing, which is what flowd's engine bench does with its
instant executor, so the figures compare scheduling overhead only. Luigi is given smaller
shapes (its local scheduler is far slower; the ratio is per op). Each figure is the best of three
runs, for both sides.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEERS = Path(os.environ.get("FLOWD_PEERS_VENV", Path.home() / ".cache" / "flowd-bench" / "peers"))

PEER_CODE = r'''
import json, sys, time
shape, n, peer = sys.argv[1], int(sys.argv[2]), sys.argv[3]

def noop(*args):
    return 1

if peer == "dask":
    import dask
    if shape == "fanout":
        graph = {"src": (noop,)}
        for i in range(n):
            graph[f"w{i}"] = (noop, "src")
        graph["sink"] = (noop, [f"w{i}" for i in range(n)])
        target = "sink"
    else:
        graph = {"c0": (noop,)}
        for i in range(1, n):
            graph[f"c{i}"] = (noop, f"c{i-1}")
        target = f"c{n-1}"
    t0 = time.perf_counter()
    dask.get(graph, target)
    elapsed = time.perf_counter() - t0
    ops = len(graph)
else:
    import logging
    import luigi
    logging.getLogger("luigi-interface").setLevel(logging.ERROR)
    done = set()

    class T(luigi.Task):
        key = luigi.Parameter()
        upstream = luigi.ListParameter(default=[])
        def requires(self):
            return [DEPS[d] for d in self.upstream]
        def complete(self):
            return self.key in done
        def run(self):
            done.add(self.key)

    DEPS = {}
    if shape == "fanout":
        DEPS["src"] = T(key="src")
        for i in range(n):
            DEPS[f"w{i}"] = T(key=f"w{i}", upstream=["src"])
        DEPS["sink"] = T(key="sink", upstream=[f"w{i}" for i in range(n)])
        target = DEPS["sink"]
    else:
        DEPS["c0"] = T(key="c0")
        for i in range(1, n):
            DEPS[f"c{i}"] = T(key=f"c{i}", upstream=[f"c{i-1}"])
        target = DEPS[f"c{n-1}"]
    t0 = time.perf_counter()
    ok = luigi.build([target], local_scheduler=True, workers=1, log_level="ERROR")
    elapsed = time.perf_counter() - t0
    assert ok and len(done) == len(DEPS), (ok, len(done))
    ops = len(DEPS)
print(json.dumps({"ops": ops, "seconds": elapsed}))
'''


def ensure_peers() -> Path | None:
    python = PEERS / "bin" / "python"
    if not python.exists():
        try:
            subprocess.run([sys.executable, "-m", "venv", str(PEERS)], check=True)
            subprocess.run([str(python), "-m", "pip", "install", "-q", "dask", "luigi"], check=True)
        except subprocess.CalledProcessError as exc:
            print(f"peers unavailable: {exc}", file=sys.stderr)
            return None
    return python


def flowd_figure(shape: str, n: int) -> dict:
    code = (
        f"import json, sys, time; sys.path.insert(0, {str(HERE)!r}); import engine_bench as b\n"
        f"b.SHAPES['x'] = (lambda: b.fanout({n:d})) if {shape!r} == 'fanout' else (lambda: b.chain({n:d}))\n"
        "print(json.dumps(b.run_shape('x')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def peer_figure(python: Path, peer: str, shape: str, n: int) -> dict | None:
    try:
        out = subprocess.run([str(python), "-c", PEER_CODE, shape, str(n), peer], capture_output=True, text=True,
                             check=True, timeout=600)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        detail = (getattr(exc, "stderr", "") or "").strip().splitlines()[-1:] or [str(exc)]
        print(f"{peer} {shape}-{n}: failed: {detail[0]}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    python = ensure_peers()
    cases = [("dask", "fanout", 10_000), ("dask", "fanout", 100_000), ("dask", "chain", 1_000),
             ("luigi", "fanout", 1_000), ("luigi", "chain", 300)]
    print("peer\tshape\tops\tpeer_ops_per_s\tflowd_ops_per_s\tflowd/peer")
    for peer, shape, n in cases:
        # best of 3 for both sides: the small shapes run for milliseconds and one run is noise
        mine = max((flowd_figure(shape, n) for _ in range(3)), key=lambda r: r["ops_per_s"])
        tries = [peer_figure(python, peer, shape, n) for _ in range(3)] if python else []
        tries = [t for t in tries if t is not None]
        theirs = min(tries, key=lambda r: r["seconds"]) if tries else None
        if theirs is None:
            print(f"{peer}\t{shape}-{n}\t-\tunavailable\t{mine['ops_per_s']}\t-")
            continue
        peer_rate = theirs["ops"] / theirs["seconds"]
        print(f"{peer}\t{shape}-{n}\t{theirs['ops']}\t{peer_rate:.0f}\t{mine['ops_per_s']}\t{mine['ops_per_s'] / peer_rate:.1f}x",
              flush=True)


if __name__ == "__main__":
    started = time.time()
    main()
    print(f"# {time.time() - started:.0f}s", file=sys.stderr)
