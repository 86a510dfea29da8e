"""Fan-in cost: a grid matrix of N children (instant executor) whose outputs a downstream op
receives as one list (``ref: ops.tune, value: outputs.loss``).

    .venv/bin/python bench/fan_in_bench.py [N]     # default 10000

Prints the engine time for the whole run and for the matrix's end (building the lists).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for tests.unit.engine.sim

from flowd.spec import compile_text
from tests.unit.engine.sim import Sim

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
TEXT = f"""
kind: component
name: big
run:
  kind: dag
  operations:
    - name: tune
      matrix: {{kind: grid, params: {{i: {{kind: range, value: [0, {N}, 1]}}}}}}
      component:
        inputs: [{{name: i, type: int}}]
        outputs: [{{name: loss, type: float}}]
        run: {{kind: job, container: {{image: busybox, command: [echo]}}}}
    - name: pick
      params: {{losses: {{ref: ops.tune, value: outputs.loss}}}}
      component:
        inputs: [{{name: losses, type: float, isList: true}}]
        run: {{kind: job, container: {{image: busybox, command: [echo]}}}}
"""


def main() -> None:
    op = compile_text(TEXT, source="bench").op
    started = time.perf_counter()
    sim = Sim(op, outputs=lambda s: {"loss": s.params.get("i", 0) / 7} if s.path.startswith("tune[") else None)
    sim.run()
    total = time.perf_counter() - started
    pick = next(s for s in sim.started if s.path == "pick")
    assert sim.done is not None and sim.done.status == "succeeded" and len(pick.params["losses"]) == N
    print(f"fan-in of {N} children: whole run {total:.2f} s ({N / total:,.0f} children/s), "
          f"pick received {len(pick.params['losses'])} values")


if __name__ == "__main__":
    main()
