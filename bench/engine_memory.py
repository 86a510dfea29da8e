"""Engine state per op, counted by tracemalloc (not the OS): what the engine itself holds.

    .venv/bin/python bench/engine_memory.py                 # matrix(100, 100) and nested(100, 100)
    .venv/bin/python bench/engine_memory.py "matrix(100, 1000)"

For each shape, with an instant executor that takes every command as it is produced
(``Engine.handle(event, sink)``) and keeps nothing of them: the bytes per op held after the
submission (every op of a matrix with no concurrency is live then), at the peak of the run, and
after the run ended, plus the largest allocation sites at the end. Target (issue 15 §3): engine
state <= 1 KB per op.
"""

from __future__ import annotations

import os
import sys
import tracemalloc
from collections import deque

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import engine_bench
from flowd.engine.core import Engine
from flowd.engine.messages import OpStatus, StartOp, Submit

SHAPES = {"matrix": engine_bench.matrix, "nested": engine_bench.nested, "fanout": engine_bench.fanout,
          "chain": engine_bench.chain}


def measure(expr: str) -> None:
    name, _, args = expr.partition("(")
    pipeline = SHAPES[name.strip()](*(int(a) for a in args.rstrip(")").split(",")))
    tracemalloc.start(1)
    engine = Engine(engine_bench.LIMITS)
    base = tracemalloc.get_traced_memory()[0]
    queue: deque[tuple[str, int]] = deque()

    def sink(command: object) -> None:
        if type(command) is StartOp:
            queue.append((command.path, command.attempt))

    engine.handle(Submit("m", pipeline, 0.0), sink)
    after_submit = tracemalloc.get_traced_memory()[0] - base
    peak = after_submit
    clock = 0.0
    while queue:
        path, attempt = queue.popleft()
        clock += 0.001
        engine.handle(OpStatus("m", path, attempt, "succeeded", clock, outputs={"x": 1}), sink)
        if len(queue) % 1024 == 0:
            peak = max(peak, tracemalloc.get_traced_memory()[0] - base)
    run = engine.runs["m"]
    assert run.done and run.nodes[""].status == "succeeded"
    n = len(run.nodes) - 1
    end = tracemalloc.get_traced_memory()[0] - base
    peak = max(peak, end)
    print(f"{expr}: {n} ops; state after submit {after_submit / n:.0f} B/op, "
          f"peak {peak / n:.0f} B/op, after the run {end / n:.0f} B/op")
    for stat in tracemalloc.take_snapshot().statistics("lineno")[:6]:
        print(f"    {stat.size / n:6.0f} B/op  {stat.traceback}")
    tracemalloc.stop()


def main() -> None:
    for expr in sys.argv[1:] or ["matrix(100, 100)", "nested(100, 100)"]:
        measure(expr)


if __name__ == "__main__":
    main()
