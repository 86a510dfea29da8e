"""The daemon end to end on the real broker, with an instant executor.

    eval "$(.venv/bin/python -m tests.infra env)"   # or: python -m tests.infra up kafka
    .venv/bin/python bench/daemon_bench.py [--brokers HOST:PORT] [--runs 300] [--chain 10] [--partitions 3]

Printed figures:

* submissions/s accepted: submissions published back to back, until the daemon has committed
  the first status event of each (it owns the run);
* op transitions/s sustained: status transitions committed through Kafka transactions per
  second, from the first submission to the last completion event;
* p50/p99 "status event produced -> downstream start": in chains, the time from an op's
  ``succeeded`` report being produced (the instant executor reports as it starts) to the start
  of the next op, i.e. report -> runs topic -> consume -> engine -> transaction commit -> start;
* recovery of a partition holding 100,000 op states: 1,000 runs x 100 running ops put in a
  snapshot (plus a log tail to replay), then a fresh daemon is started on it: time from
  assignment to ready (restore + replay + re-issuing 100,000 attempts to the executor), and
  from process start of the daemon to ``/readyz``.

Targets (issue 5): >= 5,000 op transitions/s, p99 <= 50 ms, recovery <= 5 s. Measured figures and
the conditions they were taken in: docs/daemon.md, "Figures".
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import anyio
from aiokafka import TopicPartition

from flowd.daemon import wire
from flowd.daemon.executors import InstantExecutor
from flowd.daemon.kafka import ensure_topics, producer
from flowd.daemon.partition import Outcome, PartitionState, Record
from flowd.daemon.serve import Daemon
from flowd.daemon.testing import EventCollector, test_config
from flowd.engine.messages import StartOp, StopOp
from flowd.spec.compiled import Component, Dag, Op

RUN = {"container": {"image": "busybox", "command": ["true"]}}


def chain(n: int) -> Op:
    ops = [Op(name=f"c{i}", component=Component(kind="job", run=RUN), upstream=[f"c{i-1}"] if i else [])
           for i in range(n)]
    return Op(name="chain", component=Component(kind="dag", dag=Dag(ops=ops)))


def wide(n: int) -> Op:
    ops = [Op(name=f"w{i}", component=Component(kind="job", run=RUN)) for i in range(n)]
    return Op(name="wide", component=Component(kind="dag", dag=Dag(ops=ops)))


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def throughput(brokers: str, runs: int, length: int, partitions: int, *, rate: float = 0.0) -> None:
    """``rate`` 0: submit everything at once (saturation); else that many submissions per second."""
    config = test_config(brokers, name="bench", partitions=partitions, metrics_port=-1, snapshot_interval=5.0,
                         state_dir="/tmp/flowd-bench-state")
    starts: dict[tuple[str, str], float] = {}

    def on_start(cmd: StartOp) -> None:
        starts[(cmd.run_id, cmd.path)] = time.time()

    daemon = Daemon(config, executor_factory=lambda send: InstantExecutor(send=send, on_start=on_start))
    events = EventCollector(config)
    pipeline = chain(length)
    async with anyio.create_task_group() as tg:
        await tg.start(daemon.run)
        await daemon.wait_ready()
        await tg.start(events.run)
        run_ids = [str(uuid.uuid4()) for _ in range(runs)]
        p = producer(config, enable_idempotence=True)
        await p.start()
        t0 = time.time()
        futures = []
        for r in run_ids:
            futures.append(await p.send(config.topics.runs, wire.encode(wire.Submission(run_id=r, time=time.time(),
                                        pipeline=pipeline)), key=r.encode()))
            if rate:
                await anyio.sleep(1 / rate)
        for f in futures:
            await f
        t_published = time.time()
        await p.stop()
        first_seen: dict[str, float] = {}

        def all_accepted() -> bool:
            for e in events.events:
                first_seen.setdefault(e.run_id, time.time())
            return len(first_seen) >= runs

        await events.wait_for(all_accepted, timeout=600)
        t_accepted = time.time()
        await events.wait_for(lambda: len(events.completions()) >= runs, timeout=900)
        t_done = time.time()
        tg.cancel_scope.cancel()
    transitions = sum(1 for e in events.events if isinstance(e, wire.StatusEvent))
    m = daemon.metrics
    txn_n = m.transaction_seconds._sum.get(), sum(b.get() for b in m.transaction_seconds._buckets)
    batch = m.batch_records._sum.get(), sum(b.get() for b in m.batch_records._buckets)
    hist = {float(b): c for b, c in zip(m.input_delay._upper_bounds, (x.get() for x in m.input_delay._buckets), strict=True)}
    n_in = sum(hist.values())
    acc, med = 0.0, 0.0
    for bound, c in hist.items():
        acc += c
        if acc >= n_in / 2:
            med = bound
            break
    lat = [starts[(r, f"c{i}")] - starts[(r, f"c{i-1}")] for r in run_ids for i in range(1, length)
           if (r, f"c{i}") in starts and (r, f"c{i-1}") in starts]
    ok = sum(1 for e in events.completions() if e.status == "succeeded")
    load = f"submitted at {rate:g}/s" if rate else "submitted at once"
    print(f"\n== {runs} chains of {length} ops over {partitions} partitions, {load}; {ok} succeeded")
    print(f"submissions/s accepted: {runs / (t_accepted - t0):,.0f}  (published {runs / (t_published - t0):,.0f}/s)")
    print(f"op transitions/s sustained: {transitions / (t_done - t0):,.0f}  ({transitions:,} status events "
          f"in {t_done - t0:.2f}s, read_committed)")
    print(f"status event produced -> downstream start: p50 {pct(lat, .5) * 1000:.1f} ms, "
          f"p99 {pct(lat, .99) * 1000:.1f} ms, max {max(lat) * 1000:.1f} ms ({len(lat):,} samples)")
    # inside the daemon, for reading the figures above
    print(f"  input record timestamp -> processing: mean {1000 * m.input_delay._sum.get() / max(1, n_in):.1f} ms, "
          f"median <= {1000 * med:.0f} ms")
    lag_n = sum(b.get() for b in m.loop_lag._buckets)
    print(f"  event-loop lag: mean {1000 * m.loop_lag._sum.get() / max(1, lag_n):.1f} ms")
    print(f"  transactions: {txn_n[1]:.0f}, mean {1000 * txn_n[0] / max(1, txn_n[1]):.1f} ms, "
          f"mean batch {batch[0] / max(1, batch[1]):.1f} records")


class NullExecutor:
    """Accepts every command and reports nothing: attempts stay running (recovery bench)."""

    def __init__(self) -> None:
        self.started = 0

    async def start(self, cmd: StartOp) -> None:
        self.started += 1

    async def stop(self, cmd: StopOp) -> None:
        pass


async def recovery(brokers: str, *, runs: int = 1000, width: int = 100, tail: int = 5000) -> None:
    config = test_config(brokers, name="recov", partitions=1, metrics_port=-1, snapshot_interval=3600.0,
                         snapshot_records=10**9, state_dir="/tmp/flowd-bench-state")
    await ensure_topics(config)
    pipeline = wide(width)
    state = PartitionState(0, compiler=lambda m: (None, []))
    p = producer(config, enable_idempotence=True)
    await p.start()
    t = time.monotonic()
    subs = [wire.Submission(run_id=f"run-{i:05d}", time=1.0, pipeline=pipeline) for i in range(runs)]
    offset = 0
    for batch in range(0, runs, 100):
        futures = [await p.send(config.topics.runs, wire.encode(s), key=s.run_id.encode(), partition=0)
                   for s in subs[batch:batch + 100]]
        for f in futures:
            meta = await f
            offset = meta.offset + 1
    for s in subs:
        state.apply(Record(config.topics.runs, 0, 0, s.run_id.encode(), wire.encode(s)), Outcome())
    ops = sum(len(r.nodes) - 1 for r in state.engine.runs.values())
    snap = wire.encode_snapshot(state.snapshot(offset=offset, time=time.time()))
    # a tail of the log after the snapshot, already committed: replayed on recovery
    reports = [wire.OpReport(run_id=f"run-{i % runs:05d}", path=f"w{i // runs}", attempt=1, status="running", time=2.0)
               for i in range(tail)]
    futures = [await p.send(config.topics.runs, wire.encode(r), key=r.run_id.encode(), partition=0) for r in reports]
    end = offset
    for f in futures:
        end = (await f).offset + 1
    tx = producer(config, transactional_id=f"bench-{uuid.uuid4().hex[:6]}", enable_idempotence=True)
    await tx.start()
    await tx.begin_transaction()
    await tx.send(config.topics.snapshots, snap, key=b"0", partition=0)
    await tx.send_offsets_to_transaction({TopicPartition(config.topics.runs, 0): end}, config.group_id)
    await tx.commit_transaction()
    await tx.stop()
    await p.stop()
    print(f"recovery state: {runs:,} runs x {width} ops = {ops:,} op states, snapshot {len(snap) / 1e6:.1f} MB, "
          f"{tail:,} records to replay (prepared in {time.monotonic() - t:.1f}s)")
    null = NullExecutor()
    daemon = Daemon(config, executor_factory=lambda send: null)
    t0 = time.monotonic()
    async with anyio.create_task_group() as tg:
        await tg.start(daemon.run)
        with anyio.fail_after(120):
            await daemon.wait_ready()
        ready = time.monotonic() - t0
        tg.cancel_scope.cancel()
    partition = daemon.metrics.recovery_seconds.labels("0")._value.get()
    print(f"recovery of a partition holding {ops:,} op states: {partition:.2f}s from assignment to ready "
          f"(snapshot load + restore + replay of {tail:,} + {null.started:,} attempts re-issued); "
          f"{ready:.2f}s from daemon start (incl. group join)")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--brokers", default=os.environ.get("FLOWD_BROKERS") or os.environ.get("FLOWD_TEST_KAFKA"))
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--chain", type=int, default=10)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--skip-recovery", action="store_true")
    ap.add_argument("--latency-runs", type=int, default=100)
    ap.add_argument("--latency-rate", type=float, default=20.0)
    args = ap.parse_args()
    if not args.brokers:
        sys.exit("no broker: pass --brokers or eval \"$(python -m tests.infra env)\"")
    import logging

    from flowd.cli.serve import configure_logging

    configure_logging(os.environ.get("FLOWD_LOG_LEVEL", "warning"))
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    await throughput(args.brokers, args.runs, args.chain, args.partitions)
    if args.latency_runs:
        await throughput(args.brokers, args.latency_runs, args.chain, args.partitions, rate=args.latency_rate)
    if not args.skip_recovery:
        await recovery(args.brokers)


if __name__ == "__main__":
    anyio.run(main)
