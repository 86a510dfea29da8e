"""What persisting a ``flowd run`` costs per op, and that it does not grow with the run.

    .venv/bin/python bench/store_bench.py [--sizes 1000,10000,100000] [--per-report 1]

For each size N: the real Driver (flowd.runtime.driver) with the real store (snapshot +
journal, fdatasync'ed, in a temp dir on this disk) drives a fan-out ``src -> N workers -> sink``
through an instant executor. The executor reports ``running`` then ``succeeded`` for
``--per-report`` ops at a time and yields to the loop in between, so the driver sees small
batches, as with a real executor whose ops end one by one (group commit still merges what
arrives during a write). Printed per size:

* batches, journal appends, snapshots (the first batch, compactions, the end);
* persist time per op: the driver's wait for durability (appends + snapshots, in the worker
  thread; the loop runs meanwhile), the same for the appends alone, and the part spent in the
  loop itself (encoding, snapshots included); the seconds the two snapshots took (the first
  batch and the end: O(N) once each);
* the mean time of one journal append (write + fdatasync of one batch): flat in N;
* journal bytes per op;
* what the previous store would have cost: one whole-state save (engine snapshot + atomic write
  with two fsyncs, in the loop) at this run's size, measured once, times the number of batches.

The figure to read: ``persist us/op`` stays flat from 1k to 100k ops (the previous store's
grows linearly per op, i.e. the square of N per run).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import deque
from contextlib import asynccontextmanager
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.engine_bench import fanout
from flowd.engine.core import Engine
from flowd.engine.messages import OpStatus, StartOp, StopOp, Submit
from flowd.runtime.driver import Driver
from flowd.runtime.store import RunRecord, SnapshotStore, write_atomic


class Quiet:
    def status(self, change: object) -> None:
        pass

    def note(self, text: str) -> None:
        pass


class InstantExecutor:
    def __init__(self, send, per_report: int) -> None:
        self.send = send
        self.per_report = per_report
        self.queue: deque[StartOp] = deque()
        self.wake = anyio.Event()
        self.active = 0

    async def start(self, cmd: StartOp) -> None:
        self.queue.append(cmd)
        self.active += 1
        self.wake.set()

    async def stop(self, cmd: StopOp) -> None:
        pass

    async def adopt(self, cmd: StartOp, *, stopping: bool) -> None:
        await self.start(cmd)

    async def stop_all(self, *, reason: str, shutdown: bool = False) -> None:
        pass

    def kill_all(self) -> None:
        pass

    async def worker(self) -> None:
        while True:
            if not self.queue:
                self.wake = anyio.Event()
                await self.wake.wait()
            for _ in range(min(self.per_report, len(self.queue))):
                cmd = self.queue.popleft()
                now = time.time()
                self.send(OpStatus(run_id=cmd.run_id, path=cmd.path, attempt=cmd.attempt, status="running", time=now))
                self.send(OpStatus(run_id=cmd.run_id, path=cmd.path, attempt=cmd.attempt, status="succeeded",
                                   time=now, outputs={"x": 1}))
                self.active -= 1
            await anyio.sleep(0)


def factory(per_report: int):
    @asynccontextmanager
    async def make(send, run_dir):
        ex = InstantExecutor(send, per_report)
        async with anyio.create_task_group() as tg:
            tg.start_soon(ex.worker)
            yield ex
            tg.cancel_scope.cancel()
    return make


async def one(n: int, per_report: int, root: Path) -> dict:
    store = SnapshotStore(root)
    record = RunRecord(run_id="bench-1", file="f.yaml", file_sha256="", params={}, engine=b"")
    engine = Engine()
    driver = Driver(engine, record=record, store=store, progress=Quiet(), handle_signals=False,
                    executor=factory(per_report))
    t0 = time.perf_counter()
    view = await driver.run([Submit(run_id="bench-1", pipeline=fanout(n), time=time.time())])
    wall = time.perf_counter() - t0
    assert view.status == "succeeded", view.status
    # the previous store: the whole state, encoded in the loop and written with two fsyncs, per batch
    t1 = time.perf_counter()
    record.engine = engine.snapshot()
    data = store.encode(record)
    write_atomic(root / "old-style.bin", data)
    full_save = time.perf_counter() - t1
    s = driver.stats
    return {"n": n, "wall": wall, "batches": s["batches"], "appends": s["appends"], "snapshots": s["snapshots"],
            "persist_us": s["persist_seconds"] / n * 1e6, "loop_us": s["encode_seconds"] / n * 1e6,
            "journal_b": s["append_bytes"] / n, "append_us": s["append_seconds"] / max(1, s["appends"]) * 1e6, "snapshot_mb": len(data) / 1e6,
            "old_us": full_save * s["batches"] / n * 1e6, "full_save_s": full_save,
            "append_path_us": (s["persist_seconds"] - s["snapshot_seconds"]) / n * 1e6,
            "snapshot_s": s["snapshot_seconds"]}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--per-report", type=int, default=1, help="ops the instant executor finishes per loop turn")
    args = ap.parse_args()
    print(f"{'ops':>7} | {'wall s':>6} | {'batches':>7} | {'appends':>7} | {'snaps':>5} | {'persist us/op':>13} | "
          f"{'appends us/op':>13} | {'in loop us/op':>13} | {'us/append':>9} | {'snapshots s':>11} | {'journal B/op':>12} | {'state MB':>8} | {'one whole save s':>16} | {'previous store us/op (est.)':>27}")
    for n in [int(x) for x in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory(prefix="flowd-store-bench-", dir=str(Path.home() / ".cache")) as tmp:
            r = await one(n, args.per_report, Path(tmp))
        print(f"{r['n']:>7} | {r['wall']:>6.1f} | {r['batches']:>7} | {r['appends']:>7} | {r['snapshots']:>5} | "
              f"{r['persist_us']:>13.1f} | {r['append_path_us']:>13.1f} | {r['loop_us']:>13.1f} | {r['append_us']:>9.0f} | "
              f"{r['snapshot_s']:>11.2f} | {r['journal_b']:>12.0f} | {r['snapshot_mb']:>8.1f} | "
              f"{r['full_save_s']:>16.3f} | {r['old_us']:>27.0f}", flush=True)


if __name__ == "__main__":
    anyio.run(main)
