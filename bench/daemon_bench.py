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
* ``--million``: a partition holding 1,000,000 op states (1,000 runs x 1,000 ops, 10 of each in
  flight), built by the daemon from 1,000 submissions: a snapshot of every run (records, largest
  record, longest event-loop stall while it is written; written in the background: how long the
  partition was held to capture it, and produce -> committed of records sent one at a time
  while it was written), a new owner's restore (assignment -> ready), and an incremental
  snapshot after 10 runs changed (issue 15).

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

from flowd.daemon import snapshots, wire
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
    # the snapshot as the daemon writes it (format 2: chunked blobs; flowd.daemon.snapshots)
    plan = await snapshots.encode_changes(state)
    index, index_ref = await snapshots.write(tx, config.topics.snapshots, state, plan, offset)
    size = snapshots.size_of(index) + index_ref.size
    await tx.send_offsets_to_transaction({TopicPartition(config.topics.runs, 0): end}, config.group_id)
    await tx.commit_transaction()
    await tx.stop()
    await p.stop()
    print(f"recovery state: {runs:,} runs x {width} ops = {ops:,} op states, snapshot {size / 1e6:.1f} MB, "
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


class StallProbe:
    """Wakes every 2 ms and keeps the longest time the event loop made it wait beyond that."""

    def __init__(self) -> None:
        self.longest = 0.0

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            t = time.perf_counter()
            await anyio.sleep(0.002)
            self.longest = max(self.longest, time.perf_counter() - t - 0.002)


def wide_limited(n: int, concurrency: int) -> Op:
    ops = [Op(name=f"w{i}", component=Component(kind="job", run=RUN)) for i in range(n)]
    return Op(name="wide", component=Component(kind="dag", dag=Dag(ops=ops, concurrency=concurrency)))


async def million(brokers: str, *, runs: int = 1000, width: int = 1000, concurrency: int = 10) -> None:
    """A partition holding ``runs x width`` op states (``concurrency`` of each run in flight):
    a snapshot of every run (the loop's longest stall while it is written, records and their
    largest size), then a new owner restores it; then an incremental snapshot after 10 runs
    changed."""
    from flowd.daemon.testing import read_all

    config = test_config(brokers, name="million", partitions=1, metrics_port=-1, snapshot_interval=3600.0,
                         snapshot_records=10**9, state_dir="/tmp/flowd-bench-state", max_batch=50)
    await ensure_topics(config)
    pipeline = wide_limited(width, concurrency)
    p = producer(config, enable_idempotence=True)
    await p.start()
    ids = [f"run-{i:05d}" for i in range(runs)]
    futures = [await p.send(config.topics.runs, wire.encode(wire.Submission(run_id=r, time=1.0, pipeline=pipeline)),
                            key=r.encode(), partition=0) for r in ids]
    end = 0
    for f in futures:
        end = (await f).offset + 1
    null = NullExecutor()
    probe = StallProbe()
    t_build = time.monotonic()
    async with anyio.create_task_group() as tg:
        daemon = Daemon(config, executor_factory=lambda send: null)
        await tg.start(daemon.run)
        await daemon.wait_ready()
        worker = daemon.workers[0]
        while worker.committed < end:
            await anyio.sleep(0.5)
        state = worker.state
        assert state is not None
        ops = sum(len(r.nodes) - 1 for r in state.engine.runs.values())
        print(f"\n== {runs:,} runs x {width:,} ops = {ops:,} op states in one partition, "
              f"{len(state.daemon.inflight):,} attempts in flight (built by the daemon in {time.monotonic() - t_build:.0f}s)")
        # a snapshot of everything: every run marked changed, then one record makes it due
        state.dirty.update(state.engine.runs)
        worker.has_snapshot = False
        seq = state.written_seq
        await tg.start(probe.run)
        probe.longest = 0.0
        t0 = time.monotonic()
        await p.send_and_wait(config.topics.runs, wire.encode(wire.OpReport(
            run_id=ids[0], path="w0", attempt=1, status="running", time=2.0)), key=ids[0].encode(), partition=0)
        # meanwhile, records keep coming, one at a time, each to another run (so each may make
        # the snapshot encode its run first): how long does the partition take to commit each?
        latencies: list[float] = []
        worker.longest_batch = 0.0
        k = 0
        while state.written_seq == seq:
            k += 1
            r = ids[k % len(ids)]
            sent = time.monotonic()
            meta = await p.send_and_wait(config.topics.runs, wire.encode(wire.OpReport(
                run_id=r, path="w1", attempt=1, status="running", time=2.0)), key=r.encode(), partition=0)
            while worker.committed <= meta.offset:
                await anyio.sleep(0.001)
            latencies.append(time.monotonic() - sent)
            if os.environ.get("BENCH_TRACE"):
                print(f"    probe at +{sent - t0:.2f}s: {latencies[-1] * 1000:.0f} ms (job {'encoding' if worker.job and not worker.job.plan.encode_seconds else 'writing' if worker.job else 'none'})")
            await anyio.sleep(0.01)
        took = time.monotonic() - t0
        longest_batch = worker.longest_batch
        stall = probe.longest
        plan = worker.last_encode
        assert plan is not None
        full_seq = state.written_seq
        tg.cancel_scope.cancel()
    records = [r for r in await read_all(config, config.topics.snapshots) if r.value is not None]
    full = [r for r in records if r.key is not None and r.key.startswith(f"0/{full_seq}/".encode())]
    biggest = max(len(r.value) + len(r.key or b"") for r in records)
    print(f"full snapshot: {len(full):,} records ({sum(len(r.value) for r in full) / 1e6:.1f} MB), largest record on the "
          f"topic {biggest:,} bytes (key + value); encoded in {plan.encode_seconds:.2f}s in slices of at most "
          f"{plan.longest_slice * 1000:.0f} ms; longest event-loop stall while snapshotting {stall * 1000:.0f} ms; "
          f"record -> snapshot committed {took:.2f}s")
    if plan.background:
        print(f"  the partition meanwhile: held {plan.capture_seconds * 1000:.0f} ms to capture the snapshot at its offset; "
              f"{plan.forced} runs encoded ahead of a change, the longest in {plan.longest_forced * 1000:.1f} ms; "
              f"{len(latencies)} records sent one at a time while it was written: produce -> committed p50 "
              f"{(pct(latencies, 0.5) if latencies else 0) * 1000:.0f} ms, max {max(latencies, default=0) * 1000:.0f} ms; "
              f"longest batch (first record applied -> its transaction committed) {longest_batch * 1000:.0f} ms; "
              f"the snapshot's transaction took {plan.write_seconds:.2f}s")
    else:
        print(f"  written inside the partition's transaction: the partition waited {took:.2f}s")
    # a new owner
    null2 = NullExecutor()
    t0 = time.monotonic()
    async with anyio.create_task_group() as tg:
        daemon = Daemon(config, executor_factory=lambda send: null2)
        await tg.start(daemon.run)
        with anyio.fail_after(300):
            await daemon.wait_ready()
        ready = time.monotonic() - t0
        partition = daemon.metrics.recovery_seconds.labels("0")._value.get()
        worker = daemon.workers[0]
        state = worker.state
        assert state is not None
        timing = worker.loaded_timing
        if timing:
            print(f"  of which: reading the records {timing[0]:.2f}s, decoding + rebuilding {timing[1]:.2f}s")
        print(f"new owner: restored {sum(len(r.nodes) - 1 for r in state.engine.runs.values()):,} op states in "
              f"{partition:.2f}s from assignment to ready (snapshot read + restore + {null2.started:,} attempts "
              f"re-issued); {ready:.2f}s from daemon start (incl. group join)")
        # incremental: 10 runs change
        seq = state.written_seq
        await anyio.sleep(0.1)
        probe.longest = 0.0
        await tg.start(probe.run)
        for r in ids[:10]:
            meta = await p.send_and_wait(config.topics.runs, wire.encode(wire.OpReport(
                run_id=r, path="w2", attempt=1, status="running", time=3.0)), key=r.encode(), partition=0)
        while worker.committed <= meta.offset:
            await anyio.sleep(0.01)
        # the 10 runs changed (and those the records above changed after the last snapshot's
        # offset); one more record (to one of them) makes a snapshot due
        changed = len(state.dirty)
        worker.has_snapshot = False
        await p.send_and_wait(config.topics.runs, wire.encode(wire.OpReport(
            run_id=ids[0], path="w3", attempt=1, status="running", time=3.0)), key=ids[0].encode(), partition=0)
        while state.written_seq == seq or worker.job is not None:
            await anyio.sleep(0.01)
        inc_seq = state.written_seq
        tg.cancel_scope.cancel()
    records = await read_all(config, config.topics.snapshots)
    inc = [r for r in records if r.value is not None and r.key is not None
           and any(r.key.startswith(f"0/{q}/".encode()) for q in range(seq + 1, inc_seq + 1))]
    runs_rewritten = {r.key.split(b"/")[2] for r in inc if r.key is not None and b"/run:" in r.key}
    print(f"incremental snapshot after {changed} runs changed ({inc_seq - seq} written): {len(runs_rewritten)} run blobs rewritten, {len(inc)} records "
          f"({sum(len(r.value) for r in inc) / 1e6:.2f} MB); longest stall {probe.longest * 1000:.0f} ms")
    await p.stop()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--brokers", default=os.environ.get("FLOWD_BROKERS") or os.environ.get("FLOWD_TEST_KAFKA"))
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--chain", type=int, default=10)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--skip-recovery", action="store_true")
    ap.add_argument("--million", action="store_true", help="only the 1M-op-state partition case")
    ap.add_argument("--million-runs", type=int, default=1000)
    ap.add_argument("--million-width", type=int, default=1000)
    ap.add_argument("--million-concurrency", type=int, default=10)
    ap.add_argument("--latency-runs", type=int, default=100)
    ap.add_argument("--latency-rate", type=float, default=20.0)
    args = ap.parse_args()
    if not args.brokers:
        sys.exit("no broker: pass --brokers or eval \"$(python -m tests.infra env)\"")
    import logging

    from flowd.cli.serve import configure_logging

    configure_logging(os.environ.get("FLOWD_LOG_LEVEL", "warning"))
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    if args.million:
        await million(args.brokers, runs=args.million_runs, width=args.million_width,
                      concurrency=args.million_concurrency)
        return
    await throughput(args.brokers, args.runs, args.chain, args.partitions)
    if args.latency_runs:
        await throughput(args.brokers, args.latency_runs, args.chain, args.partitions, rate=args.latency_rate)
    if not args.skip_recovery:
        await recovery(args.brokers)


if __name__ == "__main__":
    anyio.run(main)
