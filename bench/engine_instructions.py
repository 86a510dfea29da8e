"""Machine instructions per op of the engine, counted by valgrind: the same figure on a busy
machine as on a quiet one, so two trees can be compared where wall and CPU time cannot (on this
shared 2-core machine, ops per CPU second of one tree varies by ±15 % from run to run).

    .venv/bin/python bench/engine_instructions.py                  # matrix and nested shapes
    .venv/bin/python bench/engine_instructions.py "matrix(5,1000)" "matrix(15,1000)"

Each pair of shapes (the same shape at two sizes, as bench/engine_bench.py builds them) runs in
a fresh interpreter (hash seed fixed) under ``valgrind --tool=callgrind``: Submit, then one ``succeeded`` report
per StartOp, as engine_bench's instant executor does. The difference of the two totals over the
difference of their op counts is the cost of one op, without the interpreter's start-up and
imports. Needs valgrind on PATH; about 40 s per pair (valgrind runs ~50x slower).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT = [("matrix(5,1000)", "matrix(15,1000)"), ("nested(5,1000)", "nested(15,1000)")]

# what runs under valgrind: build the shape, drive it to the end, print its op count
_DRIVE = """
import sys
from collections import deque
sys.path[:0] = [{root!r}, {bench!r}]
import engine_bench as eb
from flowd.engine.core import Engine
from flowd.engine.messages import OpStatus, StartOp, Submit
engine = Engine(eb.LIMITS)
queue = deque()
def sink(command):
    if type(command) is StartOp:
        queue.append((command.path, command.attempt))
clock = 0.0
engine.handle(Submit("bench", eb.{shape}, clock), sink)
while queue:
    path, attempt = queue.popleft()
    clock += 0.001
    engine.handle(OpStatus("bench", path, attempt, "succeeded", clock, outputs={{"x": 1}}), sink)
run = engine.runs["bench"]
assert run.done and run.nodes[""].status == "succeeded", run.nodes[""].status
print("ops", len(run.nodes) - 1)
"""


def count(shape: str) -> tuple[int, int]:
    """(instructions of the whole process, ops of the run) for ``shape``."""
    script = _DRIVE.format(root=ROOT, bench=os.path.join(ROOT, "bench"), shape=shape)
    # a fixed hash seed: dict layouts (and so the instructions) are the same on every run
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-c", script],
                         capture_output=True, text=True, check=True, env=env)
    instructions = re.search(r"Collected : (\d+)", out.stderr)
    ops = re.search(r"^ops (\d+)$", out.stdout, re.MULTILINE)
    if instructions is None or ops is None:
        raise SystemExit(f"no count from valgrind for {shape}:\n{out.stderr[-2000:]}")
    return int(instructions.group(1)), int(ops.group(1))


def main() -> None:
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not on PATH (Debian: apt-get install valgrind)")
    args = sys.argv[1:]
    if len(args) % 2:
        raise SystemExit("give shapes in pairs: SMALL BIG (the same shape at two sizes)")
    pairs = list(zip(args[::2], args[1::2], strict=True)) or DEFAULT
    print("shapes\tops\tinstructions_per_op")
    for small, big in pairs:
        (i_small, n_small), (i_big, n_big) = count(small), count(big)
        print(f"{small} -> {big}\t{n_big - n_small}\t{(i_big - i_small) // (n_big - n_small)}", flush=True)


if __name__ == "__main__":
    main()
