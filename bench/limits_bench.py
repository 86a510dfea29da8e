"""What refusing an over-limit submission costs: time and peak memory (docs/limits.md).

    .venv/bin/python bench/limits_bench.py                       # flowd check + the daemon's compile path
    .venv/bin/python bench/limits_bench.py --start-broker        # + a real `flowd serve` (starts a Kafka broker)
    .venv/bin/python bench/limits_bench.py --brokers HOST:PORT   # + a real `flowd serve` on that broker

Inputs (written to a temporary folder):

* ``bomb.yaml``: a 9-level YAML alias bomb, 9 aliases per level (9^9 = 387,420,489 strings when
  expanded; before the limits, ``flowd check`` ran 2 min and peaked at 6.8 GB on it);
* ``grid.yaml``: a grid matrix of three ``range`` params of 1,000 values each (10^9 runs; before,
  ``flowd run`` reached 21.9 GB in 60 s);
* ``small.yaml``: a valid 3-op pipeline, the baseline of a process that only starts and checks.

Figures (each measured in a fresh subprocess, so one does not inherit the other's heap):

1. ``flowd check FILE``: wall time of the whole command and the child's peak RSS
   (``os.wait4`` rusage ``ru_maxrss``), its exit code and first error line;
2. the daemon's compile path: ``PartitionState.apply`` of one ``Submission`` record with the
   daemon's compiler and engine (what ``flowd serve`` does per record), in a child: time of the
   call, tracemalloc peak of the call, and the child's peak RSS; also for the grid sent as a
   pipeline compiled elsewhere (counted by the engine);
3. with a broker: a ``flowd serve`` subprocess; its VmRSS before, its VmHWM (peak RSS) after it
   has answered all three with a failed completion event, and the time to each completion.

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PY = sys.executable

GRID = """
version: 1.1
kind: component
name: big-grid
run:
  kind: dag
  operations:
    - name: sweep
      matrix:
        kind: grid
        params:
          a: {kind: range, value: [0, 1000, 1]}
          b: {kind: range, value: [0, 1000, 1]}
          c: {kind: range, value: [0, 1000, 1]}
      component:
        run: {kind: job, container: {image: busybox, command: ["true"]}}
"""

SMALL = """
version: 1.1
kind: component
name: small
run:
  kind: dag
  operations:
    - {name: a, component: {run: {kind: job, container: {image: x, command: ["true"]}}}}
    - {name: b, dependencies: [a], component: {run: {kind: job, container: {image: x, command: ["true"]}}}}
    - {name: c, dependencies: [b], component: {run: {kind: job, container: {image: x, command: ["true"]}}}}
"""


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    lines = ['a0: &a0 ["lol"' + ', "lol"' * (width - 1) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def write_inputs(folder: Path) -> dict[str, Path]:
    files = {"bomb": folder / "bomb.yaml", "grid": folder / "grid.yaml", "small": folder / "small.yaml"}
    files["bomb"].write_text(alias_bomb())
    files["grid"].write_text(textwrap.dedent(GRID))
    files["small"].write_text(textwrap.dedent(SMALL))
    return files


def measure(argv: list[str]) -> tuple[float, int, int, str]:
    """(wall seconds, peak RSS in KiB, exit code, stdout) of a child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT)
    out = proc.stdout.read() if proc.stdout is not None else b""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - start, usage.ru_maxrss, proc.returncode, out.decode(errors="replace")


# the daemon's compile path, in a child: argv = [kind, path]; prints one JSON line
CHILD = r"""
import json, resource, sys, textwrap, time, tracemalloc
sys.path.insert(0, sys.argv[3])
from flowd.daemon import wire
from flowd.daemon.compiler import make_compiler
from flowd.daemon.partition import Outcome, PartitionState, Record
from flowd.spec import compile_text
from flowd.spec.limits import Limits

kind, path, warm = sys.argv[1], sys.argv[2], sys.argv[4]
text = open(path).read()
limits = Limits()
state = PartitionState(0, compiler=make_compiler(None, limits), limits=limits)
# a running daemon has compiled before: warm the compiler up (first-use imports) on a small spec
warmup = wire.Submission(run_id="warm", time=1.0, spec=open(warm).read(), source=warm)
state.apply(Record("flowd.runs", 0, 0, b"warm", wire.encode(warmup), 1.0), Outcome())
if kind == "pipeline":  # compiled elsewhere with the limit raised: the daemon's engine counts it
    op = compile_text(text, source=path, limits=Limits(max_ops=2 * 10**9)).op
    msg = wire.Submission(run_id="r", time=1.0, pipeline=op)
else:
    msg = wire.Submission(run_id="r", time=1.0, spec=text, source=path)
record = Record("flowd.runs", 0, 1, b"r", wire.encode(msg), 1.0)
out = Outcome()
tracemalloc.start()
start = time.perf_counter()
state.apply(record, out)
seconds = time.perf_counter() - start
peak = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
done = [e for _, e in out.events if isinstance(e, wire.CompletionEvent)]
status, message = (done[0].status, done[0].message) if done else ("accepted", f"{len(out.effects)} effect(s)")
print(json.dumps({"seconds": seconds, "traced_peak": peak, "status": status, "message": message,
                  "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def first_error(out: str) -> str:
    for line in out.splitlines():
        if ": error: " in line:
            return line.split(": error: ", 1)[1]
    return out.strip().splitlines()[-1] if out.strip() else ""


def bench_check(files: dict[str, Path]) -> None:
    print("flowd check FILE (a subprocess each; wall time, peak RSS of the child)")
    seconds, rss, code, _ = measure([PY, "-m", "flowd", "check", "--help"])
    print(f"  {'--help':6} {seconds:6.2f} s  {rss / 1024:6.1f} MiB  exit {code}  (baseline: interpreter start + imports)")
    for name in ("small", "bomb", "grid"):
        seconds, rss, code, out = measure([PY, "-m", "flowd", "check", str(files[name]), "--no-snippets"])
        print(f"  {name:6} {seconds:6.2f} s  {rss / 1024:6.1f} MiB  exit {code}  {first_error(out)[:110]}")


def bench_compile_path(files: dict[str, Path]) -> None:
    print("daemon compile path: PartitionState.apply(Submission) in a child, after one warm-up submission "
          "(time and tracemalloc peak of the call; peak RSS of the child)")
    for label, kind, name in (("bomb", "spec", "bomb"), ("grid", "spec", "grid"),
                              ("grid, compiled elsewhere", "pipeline", "grid"), ("small", "spec", "small")):
        proc = subprocess.run([PY, "-c", CHILD, kind, str(files[name]), str(ROOT), str(files["small"])],
                              capture_output=True, text=True,
                              cwd=ROOT, check=True)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"  {label:25} {r['seconds'] * 1000:8.1f} ms  traced peak {r['traced_peak'] / 1e6:6.2f} MB  "
              f"child RSS {r['maxrss_kib'] / 1024:6.1f} MiB  -> {r['status']}: {(r['message'] or '')[:80]}")


def proc_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


async def bench_daemon(brokers: str, files: dict[str, Path], workdir: Path) -> None:
    import anyio

    from flowd.daemon import wire
    from flowd.daemon.client import publish
    from flowd.daemon.testing import DaemonProcess, EventCollector, test_config
    from flowd.spec import compile_text
    from flowd.spec.limits import Limits

    config = test_config(brokers, name="limits-bench", state_dir=str(workdir / "state"), partitions=1)
    daemon = DaemonProcess(config, log_path=workdir / "daemon.log").start()
    try:
        await daemon.wait_ready(60)
        assert daemon.proc is not None
        pid = daemon.proc.pid
        rss_before, hwm_before = proc_kib(pid, "VmRSS"), proc_kib(pid, "VmHWM")
        events = EventCollector(config)
        big = compile_text(files["grid"].read_text(), source="grid.yaml", limits=Limits(max_ops=2 * 10**9)).op
        subs = {
            "bomb": wire.Submission(run_id="bomb", time=time.time(), spec=files["bomb"].read_text(), source="bomb.yaml"),
            "grid": wire.Submission(run_id="grid", time=time.time(), spec=files["grid"].read_text(), source="grid.yaml"),
            "grid, compiled elsewhere": wire.Submission(run_id="compiled", time=time.time(), pipeline=big),
            "small (after them)": wire.Submission(run_id="small", time=time.time(), spec=files["small"].read_text(),
                                                  source="small.yaml"),
        }
        async with anyio.create_task_group() as tg:
            await tg.start(events.run)
            print(f"flowd serve (pid {pid}): VmRSS {rss_before / 1024:.1f} MiB, VmHWM {hwm_before / 1024:.1f} MiB "
                  "when ready")
            for label, msg in subs.items():
                start = time.perf_counter()
                await publish(config, config.topics.runs, msg.run_id, msg)
                done = await events.wait_done(msg.run_id, timeout=60)
                print(f"  {label:25} completion '{done.status}' {time.perf_counter() - start:6.2f} s after publishing  "
                      f"VmRSS {proc_kib(pid, 'VmRSS') / 1024:6.1f} MiB  VmHWM {proc_kib(pid, 'VmHWM') / 1024:6.1f} MiB")
            tg.cancel_scope.cancel()
    finally:
        daemon.terminate()


async def with_broker(files: dict[str, Path], workdir: Path) -> None:
    from tests.infra import kafka

    broker = kafka.KafkaBroker(run_dir=workdir / "kafka")
    await broker.start()
    try:
        await bench_daemon(broker.bootstrap, files, workdir)
    finally:
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--brokers", default=None, help="also measure a real `flowd serve` on this Kafka")
    parser.add_argument("--start-broker", action="store_true", help="start a Kafka broker for that (tests.infra)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flowd-limits-bench-") as tmp:
        workdir = Path(tmp)
        files = write_inputs(workdir)
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
        bench_check(files)
        bench_compile_path(files)
        if args.brokers or args.start_broker:
            import anyio

            if args.brokers:
                anyio.run(bench_daemon, args.brokers, files, workdir)
            else:
                anyio.run(with_broker, files, workdir)


if __name__ == "__main__":
    main()
