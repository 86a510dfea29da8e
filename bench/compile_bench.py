"""Benchmark: parse + validate + compile a generated 10,000-op Polyaxonfile.

    .venv/bin/python bench/compile_bench.py [--ops N] [--polyaxon-venv DIR] [--keep FILE]

The pipeline is a fan-out/fan-in: one `source` op, N-2 workers that each take `ref: ops.source`
params plus a `{{ dag.inputs.lr }}` template (every 100th worker also depends on the previous
one), and one `sink` that depends on all workers. Prints wall time (best of 3 runs, one
core, in-process) and peak memory (tracemalloc, one extra run), for the YAML and the JSON
spelling of the same file. When a venv with `polyaxon==2.18.0` exists (default
/tmp/polyaxon-venv; create it with `python3 -m venv /tmp/polyaxon-venv &&
/tmp/polyaxon-venv/bin/pip install polyaxon==2.18.0`), runs its `check_polyaxonfile` on the
same file in a subprocess for comparison. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flowd.spec import compile_path, dump_text


def generate(n: int) -> dict:
    workers = []
    for i in range(1, n - 1):
        op = {
            "name": f"work-{i}",
            "dagRef": "worker",
            "params": {
                "data": {"ref": "ops.source", "value": "outputs.path"},
                "lr": "{{ dag.inputs.lr }}",
                "width": i % 512 + 1,
            },
        }
        if i % 100 == 0:
            op["dependencies"] = [f"work-{i - 1}"]
        workers.append(op)
    sink = {
        "name": "sink",
        "dependencies": [w["name"] for w in workers],
        "component": {"run": {"kind": "job", "container": {"image": "busybox:1.36", "command": ["sh", "-c", "true"]}}},
    }
    return {
        "version": 1.1,
        "kind": "component",
        "name": "bench",
        "inputs": [{"name": "lr", "type": "float", "value": 0.1}],
        "run": {
            "kind": "dag",
            "concurrency": 64,
            "operations": [
                {
                    "name": "source",
                    "component": {
                        "outputs": [{"name": "path", "type": "path"}],
                        "run": {"kind": "job", "container": {"image": "busybox:1.36", "command": ["sh", "-c", "true"]}},
                    },
                },
                *workers,
                sink,
            ],
            "components": [
                {
                    "name": "worker",
                    "inputs": [
                        {"name": "data", "type": "path"},
                        {"name": "lr", "type": "float"},
                        {"name": "width", "type": "int"},
                    ],
                    "outputs": [{"name": "loss", "type": "float"}],
                    "run": {
                        "kind": "job",
                        "container": {"image": "busybox:1.36", "command": ["sh", "-c", "echo {{ data }} {{ lr }}"]},
                    },
                }
            ],
        },
    }


def measure(path: Path, repeat: int = 5) -> tuple[float, float, float, int]:
    """Best wall time, best CPU time (robust when other processes share the cores), peak MiB."""
    best = best_cpu = float("inf")
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        result = compile_path(path)
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
        assert result.valid, result.errors[:3]
    tracemalloc.start()
    compile_path(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return best, best_cpu, peak / 2**20, len(result.op.component.dag.ops)  # type: ignore[union-attr]


POLYAXON_SCRIPT = r"""
import os, sys, time
t0 = time.perf_counter()
from polyaxon._polyaxonfile import check_polyaxonfile
t1 = time.perf_counter()
check_polyaxonfile(polyaxonfile=os.path.abspath(sys.argv[1]), is_cli=False, to_op=True, verbose=False)
t2 = time.perf_counter()
print(f"{t2 - t1:.3f} {t1 - t0:.3f}")
"""


def polyaxon(venv: Path, path: Path) -> str:
    py = venv / "bin" / "python"
    if not py.exists():
        return f"unavailable (no {py}; see the module docstring to create it)"
    env = dict(os.environ, HOME=tempfile.mkdtemp(), POLYAXON_HOME=tempfile.mkdtemp(), POLYAXON_NO_OP="1")
    try:
        out = subprocess.run([str(py), "-c", POLYAXON_SCRIPT, str(path)], capture_output=True, text=True,
                             timeout=900, env=env)
    except subprocess.TimeoutExpired:
        return "did not finish within 900 s"
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["?"])[-1]
        return f"failed: {tail}"
    check, imp = out.stdout.split()
    return f"{float(check):.3f} s check_polyaxonfile (plus {float(imp):.2f} s import)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", type=int, default=10_000)
    parser.add_argument("--polyaxon-venv", default="/tmp/polyaxon-venv")
    parser.add_argument("--keep", default=None, help="also write the generated YAML here")
    args = parser.parse_args()
    data = generate(args.ops)
    with tempfile.TemporaryDirectory() as tmp:
        yaml_path = Path(tmp) / "bench.yaml"
        json_path = Path(tmp) / "bench.json"
        yaml_path.write_text(dump_text(data))
        json_path.write_text(json.dumps(data))
        if args.keep:
            Path(args.keep).write_text(yaml_path.read_text())
        print(f"flowd compile_path, {args.ops} ops (fan-out/fan-in, ref + template params), one core:")
        for label, path in (("YAML", yaml_path), ("JSON", json_path)):
            secs, cpu, peak, n = measure(path)
            size = path.stat().st_size / 2**20
            print(f"  {label:4} {size:5.1f} MiB: {secs:.3f} s wall, {cpu:.3f} s CPU parse+validate+compile "
                  f"(best of 5), peak {peak:.0f} MiB traced, {n} ops compiled")
        print(f"  load average now: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (figures are noisy above 1)")
        print(f"polyaxon 2.18 on the YAML file: {polyaxon(Path(args.polyaxon_venv), yaml_path)}")


if __name__ == "__main__":
    main()
