"""Engine throughput with an instant in-process executor.

    .venv/bin/python bench/engine_bench.py            # the shapes up to 100k ops
    .venv/bin/python bench/engine_bench.py fanout-100k
    .venv/bin/python bench/engine_bench.py nested-1000x1000   # 1M ops; likewise matrix-1m

Each shape is run in a fresh process so peak RSS is its own. Figures printed per shape:
op transitions/s (status changes the engine emitted per second of engine time), ops/s (wall
clock) and ops per CPU second (``ops_per_cpu_s``: on a shared machine the one to compare),
p50/p99 latency from "upstream reported done" to "start command emitted" (the duration of the
handle() call that received the report: in a fan-out one report starts every worker, so that
single call is the whole burst), the same per start (call duration / starts it emitted), peak RSS,
engine memory per op, snapshot size and snapshot+restore time. Targets (issue 3): >= 50,000
transitions/s on the 100k fan-out, p99 <= 1 ms, <= 2 KB per op, snapshot+restore of 100k ops <= 1 s;
(issue 15 §3) >= 50,000 ops/s on the 1M shapes in <= 2 GB peak resident.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from collections import deque

import msgspec

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from flowd.engine.core import Engine
from flowd.engine.messages import OpStatus, StartOp, StatusChanged, Submit
from flowd.spec.compiled import Component, Dag, HpParam, IOSpec, Matrix, Op, ParamSpec
from flowd.spec.limits import Limits

RUN = {"container": {"image": "busybox", "command": ["true"]}}


def _job(name: str, upstream: list[str], params: dict | None = None, inputs: list | None = None) -> Op:
    return Op(name=name, component=Component(kind="job", run=RUN, inputs=inputs or [], outputs=[IOSpec("x", type="int")]),
              upstream=upstream, params=params or {})


def fanout(n: int) -> Op:
    ops = [_job("src", [])]
    ref = {"x": ParamSpec(ref="ops.src", value="outputs.x")}
    ops += [_job(f"w{i}", ["src"], ref, [IOSpec("x", type="int")]) for i in range(n)]
    ops.append(_job("sink", [f"w{i}" for i in range(n)]))
    return Op(name="fanout", component=Component(kind="dag", dag=Dag(ops=ops)))


def chain(n: int) -> Op:
    ops = [_job("c0", [])] + [_job(f"c{i}", [f"c{i-1}"]) for i in range(1, n)]
    return Op(name="chain", component=Component(kind="dag", dag=Dag(ops=ops)))


def nested(outer: int, inner: int) -> Op:
    body = Component(kind="dag", dag=Dag(ops=[_job("i0", [])] + [_job(f"i{j}", ["i0"]) for j in range(1, inner)]))
    ops = [Op(name=f"d{i}", component=body) for i in range(outer)]
    return Op(name="nested", component=Component(kind="dag", dag=Dag(ops=ops)))


def matrix(rows: int, cols: int) -> Op:
    """A grid matrix of rows x cols children of one job: every child shares the job's spec."""
    grid = Matrix(kind="grid", params={"a": HpParam("choice", list(range(rows))), "b": HpParam("choice", list(range(cols)))})
    inputs = [IOSpec("a", type="int"), IOSpec("b", type="int")]
    sweep = Op(name="sweep", component=Component(kind="job", run=RUN, inputs=inputs, outputs=[IOSpec("x", type="int")]),
               matrix=grid)
    return Op(name="grid", component=Component(kind="dag", dag=Dag(ops=[sweep])))


SHAPES = {
    "fanout-10k": lambda: fanout(10_000),
    "fanout-100k": lambda: fanout(100_000),
    "chain-1k": lambda: chain(1_000),
    "nested-100x100": lambda: nested(100, 100),
    "matrix-100k": lambda: matrix(100, 1_000),
    # a million ops (issue 15 §3): run these one at a time, each alone on the machine
    "nested-1000x1000": lambda: nested(1_000, 1_000),
    "matrix-1m": lambda: matrix(1_000, 1_000),
}
DEFAULT = ["fanout-10k", "fanout-100k", "chain-1k", "nested-100x100", "matrix-100k"]
# the engine's default max_ops (250,000) would refuse the million-op shapes
LIMITS = Limits(max_ops=2_000_000)


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def hwm_kb() -> int:
    """Peak resident so far (VmHWM, what ru_maxrss reports), in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def view_digest(engine: Engine) -> str:
    """SHA-256 of what ``Engine.view`` shows of the run (its head, then each op's view, encoded
    op by op through ``Engine.op_views``): equal digests, equal views."""
    run = engine.runs["bench"]
    root = run.nodes[""]
    digest = hashlib.sha256(msgspec.msgpack.encode([run.pipeline.name, root.status, root.started_at,
                                                    root.finished_at, root.message, run.hooks, run.hook_of]))
    for path, op in engine.op_views("bench"):
        digest.update(msgspec.msgpack.encode((path, op)))
    return digest.hexdigest()


def run_shape(name: str) -> dict:
    pipeline = SHAPES[name]()
    gc.collect()
    base_rss = rss_kb()
    engine = Engine(LIMITS)
    transitions = 0
    latencies: list[float] = []
    per_start: list[float] = []
    # the instant executor: it takes each command as the engine produces it (Engine.handle's
    # sink) and keeps of a StartOp only what it reports back, as an executor that started the
    # op would; it never holds a whole burst (a 1M-child matrix starts every child in one call)
    queue: deque[tuple[str, int]] = deque()
    clock = 0.0
    starts = 0

    def sink(command) -> None:
        nonlocal transitions, starts
        if type(command) is StartOp:
            queue.append((command.path, command.attempt))
            starts += 1
        elif type(command) is StatusChanged:
            transitions += 1

    def feed(event) -> None:
        nonlocal starts
        starts = 0
        t0 = time.perf_counter()
        engine.handle(event, sink)
        dt = time.perf_counter() - t0
        if starts and isinstance(event, OpStatus):
            # every start emitted by this call waited at most the whole call; a burst of n starts
            # from one report (a fan-out) is charged to each of them in full
            latencies.append(dt)
            per_start.append(dt / starts)

    t_start = time.perf_counter()
    cpu_start = time.process_time()
    feed(Submit("bench", pipeline, clock))
    peak_state_rss = rss_kb()
    while queue:
        path, attempt = queue.popleft()
        clock += 0.001
        feed(OpStatus("bench", path, attempt, "succeeded", clock, outputs={"x": 1}))
    elapsed = time.perf_counter() - t_start
    cpu = time.process_time() - cpu_start
    run = engine.runs["bench"]
    assert run.done and run.nodes[""].status == "succeeded", run.nodes[""].status
    n_ops = len(run.nodes) - 1
    state_kb = max(peak_state_rss, rss_kb()) - base_rss
    run_peak_kb = hwm_kb()

    t0 = time.perf_counter()
    blob = engine.snapshot()
    t1 = time.perf_counter()
    # the restored engine must show exactly what the first one showed. The first is freed
    # before the second is built and each view is kept only as a digest of its encoding, op
    # by op, so the check needs about what the run needed (two engines and two 1M-op views
    # did not fit in 2 GB)
    expected = view_digest(engine)
    engine = run = None  # the closures above hold these cells: unbinding frees the engine
    gc.collect()
    t1r = time.perf_counter()
    restored = Engine.restore(blob, limits=LIMITS)
    t2 = time.perf_counter()
    snapshot_bytes = len(blob)
    del blob
    assert view_digest(restored) == expected
    latencies.sort()
    per_start.sort()

    def pct(p: float, values: list[float] = latencies) -> float:
        return values[min(len(values) - 1, int(p * len(values)))] * 1000 if values else 0.0

    return {
        "shape": name,
        "ops": n_ops,
        "seconds": round(elapsed, 3),
        "ops_per_s": round(n_ops / elapsed),
        # the same over the process's CPU time: on a shared machine (load above the cores)
        # wall time also counts the time other processes had the CPU
        "cpu_s": round(cpu, 3),
        "ops_per_cpu_s": round(n_ops / cpu),
        "transitions": transitions,
        "transitions_per_s": round(transitions / elapsed),
        "p50_ms": round(pct(0.50), 4),
        "p99_ms": round(pct(0.99), 4),
        "p99_per_start_ms": round(pct(0.99, per_start), 4),
        # the pipeline's run, and the whole process (the check below restores a second copy of
        # the engine next to the first and compares their views)
        "peak_rss_mb": round(run_peak_kb / 1024, 1),
        "check_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "bytes_per_op": round(state_kb * 1024 / max(n_ops, 1)),
        # peak resident (VmHWM, the OS's figure) over the ops: engine, commands in flight, harness
        "peak_bytes_per_op": round(run_peak_kb * 1024 / max(n_ops, 1)),
        "snapshot_bytes": snapshot_bytes,
        "snapshot_s": round(t1 - t0, 3),
        "restore_s": round(t2 - t1r, 3),
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        print(json.dumps(run_shape(sys.argv[2])))
        return
    names = sys.argv[1:] or DEFAULT
    header = ("shape", "ops", "seconds", "ops_per_s", "ops_per_cpu_s", "transitions_per_s", "p50_ms", "p99_ms", "p99_per_start_ms", "peak_rss_mb", "check_peak_rss_mb",
              "peak_bytes_per_op", "bytes_per_op", "snapshot_bytes", "snapshot_s", "restore_s")
    print("\t".join(header))
    for name in names:
        out = subprocess.run([sys.executable, __file__, "--one", name], capture_output=True, text=True, check=True)
        row = json.loads(out.stdout)
        print("\t".join(str(row[h]) for h in header), flush=True)


if __name__ == "__main__":
    main()
