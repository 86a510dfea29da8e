"""One owned ``runs`` partition: restore, replay, then consume-transform-produce in transactions.

Life of a worker (all driven by :mod:`flowd.daemon.serve`, which hands it a
:class:`PartitionContext`: the few things of the daemon a partition needs, and no more):

1. ``open()`` (from the rebalance listener, before any fetch): start the partition's
   transactional producer -- ``transactional_id = <group>.<runs>.<N>``, so its ``InitProducerId``
   fences a previous owner of the partition and aborts its open transaction -- then load the
   latest snapshot, restore, and seek the consumer to the snapshot's offset. ``committed`` is the
   group's committed offset: records before it were already handled (their events are on the
   topic), so they are *replayed* (state only, no output, no side effect).
2. ``go_live()`` once the consumer's position reaches ``committed``: re-arm the engine's timers
   and re-issue the attempts in flight to the (idempotent) executor.
3. ``process(records)``: apply the batch to the state, then in one transaction produce the
   events, dead letters, subscription changes and (when due) a snapshot, and commit the input
   offset with ``send_offsets_to_transaction``. Side effects (op starts/stops, timers) are carried
   out just before the commit: they are idempotent by attempt key, and a failed transaction is
   replayed from the log into the same commands, so nothing starts twice and no hop waits for
   a transaction.
4. ``close()`` (on revoke or shutdown): finish the batch in flight (the lock), write a final
   snapshot in a last transaction, stop the producer.

A failed transaction leaves memory ahead of the log: the worker is rebuilt from the snapshot
and the log (``serve`` calls ``open`` again), never patched up.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
import structlog
from aiokafka import AIOKafkaProducer, TopicPartition

from flowd.daemon import faults, snapshots, wire
from flowd.daemon.artifacts import artifacts_location
from flowd.daemon.kafka import BusError, SnapshotMissing, map_errors, producer
from flowd.daemon.partition import Outcome, PartitionState, Record
from flowd.daemon.snapshot_job import SnapshotJob
from flowd.faults import crash_point

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer

    from flowd.daemon.config import DaemonConfig
    from flowd.daemon.effects import Effects
    from flowd.daemon.kafka import SnapshotStore
    from flowd.daemon.metrics import Metrics
    from flowd.daemon.partition import Compiler

__all__ = ["PartitionContext", "PartitionWorker"]

log = structlog.get_logger("flowd.daemon")


@dataclass(frozen=True, slots=True)
class PartitionContext:
    """What a partition worker uses of the daemon that runs it. Shared by every partition of
    one daemon, except ``poisoned``, which outlives the worker: when a worker is rebuilt from
    the log, its successor gets the same dict and dead-letters the records that raised."""

    config: DaemonConfig
    owner: str  # this process, in the handling markers it writes
    compiler: Compiler
    metrics: Metrics
    consumer: AIOKafkaConsumer  # the group's consumer of ``runs``: offsets and seeks
    snapshots: SnapshotStore
    effects: Effects
    mark_handling: Callable[[int, wire.HandlingMarker], Awaitable[None]]
    events_partition: Callable[[str], int]
    on_live: Callable[[], None]  # the partition is restored and replayed
    poisoned: dict[int, str]  # offset -> error of a record whose handling raised


class PartitionWorker:
    def __init__(self, ctx: PartitionContext, partition: int) -> None:
        self.ctx = ctx
        self.partition = partition
        self.tp = TopicPartition(ctx.config.topics.runs, partition)
        self.state: PartitionState | None = None
        self.producer: AIOKafkaProducer | None = None
        # writes the snapshots taken in the background (flowd.daemon.snapshot_job), in its own
        # transactions: ``<partition's transactional id>.snapshots``
        self.snap_producer: AIOKafkaProducer | None = None
        self.job: SnapshotJob | None = None
        self._job_idle = anyio.Event()
        self._job_idle.set()
        self._jobs: anyio.abc.TaskGroup | None = None
        self.committed = 0
        self.live = False
        self.closed = False
        self.lock = anyio.Lock()
        self.last_snapshot = 0.0
        self.snapshot_time = 0.0
        self.has_snapshot = False
        self.records_since_snapshot = 0
        # the last snapshot's encoding figures, and the longest a batch took from its first
        # record applied to its commit (bench/daemon_bench.py reads and resets them)
        self.last_encode: snapshots.Plan | None = None
        self.longest_batch = 0.0
        # (reading, decoding + rebuilding) seconds of the restore in open()
        self.loaded_timing: tuple[float, float] | None = None
        self.opened_at = 0.0
        self.replayed = 0
        self.log = log.bind(partition=partition)
        # records fetched for this partition and not processed yet (fed by the consumer loop)
        self.pending: list[Any] = []
        self._wake = anyio.Event()
        self._caught_up = False
        # records [isolate_start, isolate_end) a previous owner died handling: handled with a
        # marker each; ``crashes``: offset -> how many owners died handling it (1 for its batch)
        self.isolate_start = self.isolate_end = 0
        self.crashes: dict[int, int] = {}
        # (first, end) offsets of fetched records marked in the last transaction as handled next
        self.premarked: tuple[int, int] | None = None

    # ------------------------------------------------------------------------- the task

    def feed(self, records: list[Any]) -> None:
        self.pending.extend(records)
        self._wake.set()

    def caught_up(self) -> None:
        """The consumer's position reached ``committed``: every replay record is queued."""
        self._caught_up = True
        self._wake.set()

    async def run_worker(self) -> None:
        """Process queued records in batches until closed (the partition's task; a snapshot
        being written in the background is its child, cancelled if it fails)."""
        limit = self.ctx.config.max_batch
        async with anyio.create_task_group() as jobs:
            self._jobs = jobs
            try:
                while not self.closed:
                    if self.pending:
                        batch, self.pending = self.pending[:limit], self.pending[limit:]
                        await self.process(batch)
                        continue
                    if not self.live and self._caught_up:
                        await self.go_live()
                        continue
                    self._wake = anyio.Event()
                    await self._wake.wait()
            finally:
                self._jobs = None

    # ---------------------------------------------------------------------------- lifecycle

    async def open(self) -> None:
        d = self.ctx
        self.opened_at = time.monotonic()
        txn_id = f"{d.config.group_id}.{d.config.topics.runs}.{self.partition}"
        self.producer = await self._transactional(txn_id)
        # before the load: fences (and aborts) a background snapshot of a previous owner, so
        # the head read below stays the latest
        self.snap_producer = await self._transactional(f"{txn_id}.snapshots")
        t_load = time.monotonic()
        try:
            loaded = await snapshots.load(d.snapshots, self.partition, compiler=d.compiler, limits=d.config.limits)
        except SnapshotMissing as exc:
            # the log is the truth: rebuild from its start rather than from half a snapshot
            self.log.error("snapshot_unreadable", error=str(exc))
            loaded = snapshots.Loaded(None, 0, 0.0, 0, 0, None)
        marker = loaded.marker
        size = loaded.size
        t_done = time.monotonic()
        self.loaded_timing = (loaded.read_seconds, loaded.restore_seconds)
        if loaded.state is not None:
            self.state = loaded.state
            # long-lived now: keep them out of future full collections
            gc.freeze()
            start = loaded.offset
            self.has_snapshot = True
            self.snapshot_time = loaded.time
            d.metrics.snapshot_bytes.labels(str(self.partition)).set(size)
        else:
            self.state = PartitionState(self.partition, compiler=d.compiler, limits=d.config.limits)
            start = (await d.consumer.beginning_offsets([self.tp]))[self.tp]
        # where this deployment's artifacts refs point (a setting, not state: never snapshotted)
        self.state.artifacts_store = artifacts_location(d.config)
        snap = loaded.state
        t_restore = t_load
        committed = await d.consumer.committed(self.tp)
        self.committed = max(start, committed if committed is not None else start)
        d.consumer.seek(self.tp, start)
        self._suspect(marker)
        self.last_snapshot = time.monotonic()
        assert self.state is not None
        self.log.info("partition_assigned", snapshot_offset=start if snap else None, committed=self.committed,
                      snapshot_bytes=size, runs=len(self.state.engine.runs),
                      snapshot_format=loaded.format, read_seconds=round(loaded.read_seconds, 3),
                      restore_seconds=round(loaded.restore_seconds, 3), open_seconds=round(t_done - t_restore, 3))

    async def _transactional(self, txn_id: str) -> AIOKafkaProducer:
        d = self.ctx
        for attempt in range(8):
            p = producer(d.config, transactional_id=txn_id, enable_idempotence=True, retry_backoff_ms=10)
            try:
                with map_errors(f"transactional producer of partition {self.partition}"):
                    await p.start()
                return p
            except BusError as exc:
                # the first transactional producer on a fresh broker may race the creation of
                # __transaction_state; a fenced predecessor may still be ending its transaction
                self.log.warning("producer_start_retry", attempt=attempt, error=str(exc))
                await p.stop()
                if attempt == 7 or exc.denied:  # a missing ACL is no race: say so now
                    raise
                await anyio.sleep(min(0.25 * 2**attempt, 5))
        raise AssertionError("unreachable")

    def _suspect(self, data: bytes | None) -> None:
        """A handling marker at or past the committed offset, written by another daemon, says
        that daemon died while handling those records: handle them one at a time."""
        if data is None:
            return
        try:
            m = wire.decode_marker(data)
        except msgspec.DecodeError:
            self.log.warning("handling_marker_unreadable")
            return
        if (m.owner == self.ctx.owner or m.offset < self.committed or m.end <= m.offset
                or m.partition != self.partition):
            return  # ours (we are alive), handled and committed since, or released
        # records before ``m.offset`` (a record marked alone, in a range being isolated) were
        # handled by the dead owner without harm: only [offset, end) is suspect
        self.isolate_start, self.isolate_end = m.offset, max(m.end, m.range_end)
        if m.end - m.offset == 1:
            self.crashes[m.offset] = m.attempt
        self.log.warning("handling_interrupted", offset=m.offset, end=m.end, attempt=m.attempt, owner=m.owner,
                         isolate_until=self.isolate_end)

    async def go_live(self) -> None:
        assert self.state is not None
        if self.closed:
            return
        d, effects = self.ctx, self.ctx.effects
        for run_id, timer_id, at in self.state.pending_timers():
            effects.set_timer(self.partition, run_id, timer_id, at)
        attempts = self.state.pending_attempts()
        for cmd, stopping in attempts:
            await effects.start_attempt(cmd, self.partition)
            if stopping:
                await effects.stop_attempt(cmd)
        effects.fetch_urls(self.partition, self.state.daemon.fetching.values())  # urlRefs still being fetched
        self.live = True
        took = time.monotonic() - self.opened_at
        d.metrics.recovery_seconds.labels(str(self.partition)).set(took)
        self.log.info("partition_ready", recovery_seconds=round(took, 3), replayed=self.replayed,
                      runs=len(self.state.engine.runs), attempts_adopted=len(attempts))
        d.on_live()

    async def close(self, *, final_snapshot: bool = True) -> None:
        self._wake.set()
        async with self.lock:
            if self.closed:
                return
            self.closed = True
            try:
                try:
                    if final_snapshot and self.live and self.records_since_snapshot and self.producer is not None:
                        await self._commit(Outcome(), None, snapshot=True, in_transaction=True)
                except Exception as exc:  # noqa: BLE001 - the next owner replays instead
                    self.log.warning("final_snapshot_failed", error=str(exc))
                if self.premarked is not None:
                    # marked as handled next, and not handled: say so, or the next owner would
                    # take our clean exit for a death while handling them
                    with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                        try:
                            await self.ctx.mark_handling(self.partition, wire.HandlingMarker(
                                partition=self.partition, offset=self.premarked[0], end=self.premarked[0],
                                owner=self.ctx.owner, time=time.time()))
                        except Exception as exc:  # noqa: BLE001 - at worst the next owner isolates them
                            self.log.warning("marker_release_failed", error=str(exc))
            finally:
                if self.state is not None:
                    self.ctx.effects.release_runs(self.state.run_ids())
                with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                    await self._job_idle.wait()  # a background snapshot finishes (or fails) first
                for p in (self.producer, self.snap_producer):
                    if p is not None:
                        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                            await p.stop()
        self.log.info("partition_released")

    # ------------------------------------------------------------------------------ batches

    async def process(self, records: list[Any]) -> None:
        async with self.lock:
            if self.closed or self.state is None:
                return
            replay = [r for r in records if r.offset < self.committed]
            if replay:
                scratch = Outcome()
                for r in replay:
                    try:
                        self.state.apply(_record(r), scratch)
                    except Exception as exc:  # noqa: BLE001 - handled once already: never a crash loop
                        self.log.error("replay_record_failed", offset=r.offset, error=f"{type(exc).__name__}: {exc}")
                self.replayed += len(replay)
                self.ctx.metrics.replayed.inc(len(replay))
            live = [r for r in records if r.offset >= self.committed] if replay else records
            if not live:
                return
            if not self.live:
                # the first record past ``committed``: the replay is complete (records come in
                # offset order), so re-arm and re-issue before anything new happens
                await self.go_live()
            while live:
                first = live[0].offset
                if self.isolate_end and first >= self.isolate_end:
                    self.isolate_end = 0
                    self.log.info("handling_isolation_done", committed=self.committed)
                isolated = bool(self.isolate_end) and first >= self.isolate_start
                if isolated:
                    # a previous owner died handling these: a marker before each record, so the
                    # one that kills us is known, and dead-lettered the next time
                    n = sum(1 for r in live if r.offset < self.isolate_end)
                    # commit at once up to a record about to be dead-lettered (crashed): that
                    # verdict must not hang on the handling of the records after it
                    n = next((i + 1 for i, r in enumerate(live[:n]) if self.crashes.get(r.offset, 1) >= 2), n)
                elif self.isolate_end:
                    # handled before the record the last owner died on, without harm
                    n = sum(1 for r in live if r.offset < self.isolate_start)
                elif self.premarked is not None and self.premarked[0] == first:
                    # marked in the last transaction: handle exactly that range now
                    n = sum(1 for r in live if r.offset < self.premarked[1])
                else:
                    n = len(live)
                await self._handle(live[:n], isolated=isolated, last=n == len(live))
                live = live[n:]
            if self.isolate_end and self.committed >= self.isolate_end:
                self.isolate_end = 0
                self.log.info("handling_isolation_done", committed=self.committed)

    async def _handle(self, batch: list[Any], *, isolated: bool, last: bool) -> None:
        assert self.state is not None
        d = self.ctx
        t_batch = time.monotonic()
        next_offset = batch[-1].offset + 1
        premarked, self.premarked = self.premarked, None
        out = Outcome()
        poisoned = d.poisoned
        skipped: list[int] = []
        if not isolated and (premarked is None or premarked[0] != batch[0].offset or premarked[1] < next_offset):
            await d.mark_handling(self.partition, wire.HandlingMarker(
                partition=self.partition, offset=batch[0].offset, end=next_offset, owner=d.owner, time=time.time()))
        now_ms = time.time() * 1000
        delay = d.metrics.input_delay
        for r in batch:
            if isolated:
                deaths = self.crashes.get(r.offset, 1)
                if deaths >= 2:
                    out.deadletters.append(self.state.dead_letter(
                        _record(r), "crashed", f"the daemon died {deaths} times in a row while handling this record; "
                        "it was not handled again (see the daemon's log and flowd_events_dead_lettered_total)"))
                    skipped.append(r.offset)
                    continue
                # one awaited write per record, only while isolating after a death
                await d.mark_handling(self.partition, wire.HandlingMarker(
                    partition=self.partition, offset=r.offset, end=r.offset + 1, attempt=deaths + 1,
                    range_end=self.isolate_end, owner=d.owner, time=time.time()))
            error = poisoned.get(r.offset)
            if error is not None:
                out.deadletters.append(self.state.dead_letter(_record(r), "handler_error", error))
                skipped.append(r.offset)
                continue
            delay.observe(max(0.0, now_ms - r.timestamp) / 1000)
            try:
                faults.inject(r.value)
                self.state.apply(_record(r), out)
            except Exception as exc:
                # the state may be half changed: rebuild it from the log (the caller reopens the
                # partition), and dead-letter this record instead of handling it the next time
                poisoned[r.offset] = f"{type(exc).__name__}: {exc}"
                self.log.error("record_failed", offset=r.offset, error=poisoned[r.offset])
                raise
        self.records_since_snapshot += len(batch)
        # Effects go out before the commit: they are idempotent by attempt key and the engine
        # is deterministic, so if the transaction fails the partition is rebuilt from the log
        # and re-derives the very same commands (the executor adopts, never starts twice).
        # Waiting for the commit would add a whole transaction to every hop of a pipeline.
        await d.effects.carry_out(self.partition, out)
        # a skipped record: the snapshot moves past it, so no later restore replays it
        # a skipped record must be in the snapshot of this very transaction (so no restore
        # replays it); any other snapshot is taken after the commit and written in the background
        await self._commit(out, next_offset, snapshot=bool(skipped) or self._snapshot_due(),
                           in_transaction=bool(skipped), premark=last and not isolated)
        for offset in skipped:
            poisoned.pop(offset, None)
            self.crashes.pop(offset, None)
        d.metrics.batch_records.observe(len(batch))
        self.longest_batch = max(self.longest_batch, time.monotonic() - t_batch)

    def _premark(self, next_offset: int) -> wire.HandlingMarker | None:
        """The marker of the next batch, if its records are already fetched (as the next call of
        ``process`` will take them)."""
        nxt = [r for r in self.pending[:self.ctx.config.max_batch] if r.offset >= next_offset]
        if not nxt:
            return None
        return wire.HandlingMarker(partition=self.partition, offset=nxt[0].offset, end=nxt[-1].offset + 1,
                                   owner=self.ctx.owner, time=time.time())

    def _snapshot_due(self) -> bool:
        c = self.ctx.config
        return (not self.has_snapshot or self.records_since_snapshot >= c.snapshot_records
                or time.monotonic() - self.last_snapshot >= c.snapshot_interval)

    async def _commit(self, out: Outcome, next_offset: int | None, *, snapshot: bool, in_transaction: bool = False,
                      premark: bool = False) -> None:
        """One transaction: the batch's output, the input offset and (when due) a snapshot:
        taken at the offset once it is committed and written in the background
        (``SnapshotJob``), or with ``in_transaction`` inside this transaction. With ``premark``,
        records already fetched past the batch are marked as being handled next in the same
        transaction, which spares their batch its own marker write (see ``_handle``)."""
        assert self.producer is not None and self.state is not None
        d, m = self.ctx, self.ctx.metrics
        offset = next_offset if next_offset is not None else self.committed
        plan = None
        background = snapshot and not in_transaction and self._jobs is not None and self.snap_producer is not None
        if snapshot and not background:
            await self._job_idle.wait()  # one snapshot at a time: it builds on the previous one
            t = time.monotonic()
            self.state.compact(now=time.time(), retention=d.config.retention)
            # only the runs changed since the last snapshot, encoded in slices that yield to the
            # loop (the lock keeps the state still meanwhile): flowd.daemon.snapshots
            plan = await snapshots.encode_changes(self.state)
            m.snapshot_seconds.observe(time.monotonic() - t)
            self.last_encode = plan
        t0 = time.monotonic()
        p, topics = self.producer, d.config.topics
        marked = None
        written: tuple[wire.SnapshotIndex, wire.BlobRef] | None = None
        try:
            with map_errors(f"transaction of partition {self.partition}"):
                await p.begin_transaction()
                partition_of = d.events_partition
                for key, event in out.events:
                    # explicit partition = the default partitioner's choice, computed once per run
                    # (aiokafka's pure-Python murmur2 per record is a measurable cost)
                    await p.send(topics.events, wire.encode(event), key=key.encode(), partition=partition_of(key))
                # the compacted per-run status view, in the same transaction as the events
                engine_runs = self.state.engine.runs
                for run_id in dict.fromkeys(key for key, _ in out.events):
                    if run_id in engine_runs:
                        summary = wire.run_summary(self.state.engine.view(run_id), time=time.time(),
                                                   pipeline=engine_runs[run_id].pipeline)
                        await p.send(topics.status, wire.encode(summary), key=run_id.encode())
                for sub_msg in out.submissions:
                    # hook runs (POLYFLOW §8.3): on ``runs`` with the rest of the batch, or not at all
                    await p.send(topics.runs, wire.encode(sub_msg), key=sub_msg.run_id.encode())
                for key, sub in out.subscriptions:
                    await p.send(topics.subscriptions, None if sub is None else wire.encode(sub), key=key.encode())
                for dead in out.deadletters:
                    await p.send(topics.deadletter, wire.encode(dead), key=dead.key)
                # results to cache: in the transaction of the events completing their ops, so a
                # crash never leaves a hit for an op whose success was not recorded
                for entry in out.cache_entries if d.config.cache else ():
                    await p.send(topics.cache, wire.encode(entry), key=entry.key.encode())
                    crash_point("daemon.cache_sent", entry.key)  # tests only: sent, not committed
                if plan is not None:
                    written = await snapshots.write(p, self.ctx.config.topics.snapshots, self.state, plan, offset)
                await p.send_offsets_to_transaction({self.tp: offset}, d.config.group_id)
                marked = self._premark(offset) if premark else None
                if marked is not None:
                    await p.send(topics.snapshots, wire.encode_marker(marked), key=wire.marker_key(self.partition),
                                 partition=self.partition)
                if out.submissions:
                    # tests only (flowd.faults): die with the hook runs sent, not committed
                    crash_point("hooks.produced", out.submissions[0].run_id)
                await p.commit_transaction()
                if out.submissions:
                    # tests only: die with the hook runs committed, before anything else happens
                    crash_point("hooks.committed", out.submissions[0].run_id)
        except BaseException:
            m.transactions.labels("failed").inc()
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                try:
                    await p.abort_transaction()
                    m.transactions.labels("aborted").inc()
                except Exception:  # noqa: BLE001 - fenced or broken: the worker is rebuilt anyway
                    pass
            raise
        done = time.monotonic()
        now = time.time()
        self.committed = offset
        if marked is not None:
            self.premarked = (marked.offset, marked.end)
        m.transactions.labels("committed").inc()
        m.transaction_seconds.observe(done - t0)
        m.produced.labels(topics.events).inc(len(out.events))
        if out.cache_entries and d.config.cache:
            d.effects.cache.put(out.cache_entries)  # this replica sees them before its tail does
            m.cache_written.inc(len(out.cache_entries))
        if out.deadletters:
            m.produced.labels(topics.deadletter).inc(len(out.deadletters))
            for dead in out.deadletters:
                m.dead_lettered.labels(dead.reason).inc()
                self.log.warning("dead_lettered", reason=dead.reason, error=dead.error[:200], offset=dead.offset)
        if out.ignored:
            m.ignored.inc(out.ignored)
        for change in out.transitions:
            m.count_transition("run" if change.path == "" else "op", change.status)
            m.transition_latency.observe(max(0.0, now - change.time))
            if self.state is not None:
                m.observe_done(change, self.state.engine)
        for done_event in out.finished:
            log.info("pipeline_done", run_id=done_event.run_id, status=done_event.status, partition=self.partition)
        if plan is not None and written is not None:
            index, index_ref = written
            snapshots.committed(self.state, plan, index, index_ref)
            self.has_snapshot = True
            self.records_since_snapshot = 0
            self.last_snapshot = time.monotonic()
            self.snapshot_time = now
            m.snapshot_bytes.labels(str(self.partition)).set(snapshots.size_of(index) + index_ref.size)
        # due is asked again: a job that was in flight when this batch began may have committed
        if background and self.job is None and self._jobs is not None and self._snapshot_due():
            self._start_job(offset)

    # ---------------------------------------------------------------- background snapshots

    def _start_job(self, offset: int) -> None:
        """Capture the state at ``offset`` (just committed; the lock is held) and write it in
        the background while the partition goes on (flowd.daemon.snapshot_job)."""
        assert self.state is not None and self._jobs is not None
        self.state.compact(now=time.time(), retention=self.ctx.config.retention)
        job = SnapshotJob(self.state, offset)
        self.job = job
        self._job_idle = anyio.Event()
        self.last_encode = job.plan
        self.records_since_snapshot = 0
        self.last_snapshot = time.monotonic()
        self._jobs.start_soon(self._run_job, job, name=f"snapshot of partition {self.partition}")

    async def _run_job(self, job: SnapshotJob) -> None:
        m, state = self.ctx.metrics, job.state
        try:
            await job.encode(busy=lambda: self.lock.locked() or bool(self.pending))
            m.snapshot_seconds.observe(job.plan.encode_seconds)
            assert self.snap_producer is not None
            with map_errors(f"snapshot of partition {self.partition}"):
                index, index_ref = await job.write(self.snap_producer, self.ctx.config.topics.snapshots)
        except Exception as exc:  # noqa: BLE001 - the next snapshot writes these runs again
            job.failed()
            self.log.warning("snapshot_failed", offset=job.offset, error=f"{type(exc).__name__}: {exc}")
        except BaseException:
            job.failed()
            raise
        else:
            snapshots.committed(state, job.plan, index, index_ref, clear_dirty=False)
            self.has_snapshot = True
            self.snapshot_time = job.time
            m.snapshot_bytes.labels(str(self.partition)).set(snapshots.size_of(index) + index_ref.size)
        finally:
            self.job = None
            self._job_idle.set()

def _record(r: Any) -> Record:
    return Record(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp / 1000.0)
