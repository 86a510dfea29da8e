"""Cost of one join over the runs an engine holds (POLYFLOW §8.4).

    .venv/bin/python bench/joins_bench.py            # 1,000 / 10,000 / 50,000 matrix children
    .venv/bin/python bench/joins_bench.py 10000

A grid matrix of N children (each reports a loss), then one reducer whose join selects the
children by `pipeline`, sorts them by `metrics.loss` and keeps the best 10. A join scans every op
of every run the engine holds, so its cost grows with the engine's size: printed are the ops held,
the time of the handle() call that compiles the reducer (it also ends the matrix), and the same
join alone, in total and per op scanned.
"""

from __future__ import annotations

import os
import sys
import textwrap
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from flowd.engine.core import Engine
from flowd.engine.joins import JoinSource, select
from flowd.engine.messages import OpStatus, StartOp, Submit
from flowd.engine.resolve import op_uuid
from flowd.spec import compile_text
from flowd.spec.limits import Limits

SPEC = """
kind: component
name: sweep
run:
  kind: dag
  operations:
    - name: tune
      matrix: {{kind: grid, params: {{i: {{kind: range, value: [0, {n}, 1]}}}}}}
      component:
        inputs: [{{name: i, type: int}}]
        outputs: [{{name: loss, type: float}}]
        run: {{kind: job, container: {{image: x, command: [echo]}}}}
    - name: reduce
      dependencies: [tune]
      params: {{u: {{ref: ops.tune, value: globals.uuid, contextOnly: true}}}}
      joins:
        - {{query: "pipeline: {{{{ u }}}}, status: succeeded", sort: "metrics.loss", limit: 10,
           params: {{losses: {{value: outputs.loss}}}}}}
      component:
        inputs: [{{name: losses, type: float, isList: true}}]
        run: {{kind: job, container: {{image: x, command: [echo]}}}}
"""


def bench(n: int) -> None:
    op = compile_text(textwrap.dedent(SPEC.format(n=n)), source="b.yaml", limits=Limits(max_ops=10**7)).op
    engine = Engine(Limits(max_ops=10**7))
    pending = [c for c in engine.handle(Submit("r", op, 0.0)) if isinstance(c, StartOp)]
    t = 1.0
    reduce_seconds = None
    while pending:
        cmd = pending.pop()
        t += 0.001
        loss = ((cmd.params.get("i") or 0) * 7919 % 1000) / 1000.0
        start = time.perf_counter()
        out = engine.handle(OpStatus("r", cmd.path, cmd.attempt, "succeeded", t, outputs={"loss": loss}))
        took = time.perf_counter() - start
        new = [c for c in out if isinstance(c, StartOp)]
        if any(c.path == "reduce" for c in new):
            reduce_seconds = took
        pending.extend(new)
    node = engine.runs["r"].nodes["reduce"]
    assert node.status == "succeeded" and len(node.params["losses"]) == 10, node.message
    ops = len(engine.runs["r"].nodes)
    assert reduce_seconds is not None
    # the join alone, on a fresh source (no uuid memo): the same query over the same state
    source = JoinSource(lambda: engine.runs.values(), lambda run, node: [], engine.limits, op_uuid)
    start = time.perf_counter()
    picked = select(source, ("r", "reduce"), f"pipeline: {op_uuid('r', 'tune')}, status: succeeded", "metrics.loss", 10, 0)
    alone = time.perf_counter() - start
    assert len(picked) == 10
    print(f"children={n:>6}  ops held={ops:>6}  handle() that compiles the reducer={reduce_seconds * 1000:8.1f} ms  "
          f"join alone={alone * 1000:8.1f} ms ({alone / ops * 1e6:5.2f} us per op scanned)")


if __name__ == "__main__":
    for arg in sys.argv[1:] or ["1000", "10000", "50000"]:
        bench(int(arg))
