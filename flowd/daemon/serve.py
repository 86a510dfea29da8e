"""``flowd serve``: the daemon's task tree.

::

    Daemon.run
    ├── run_consumer   getmany over ``runs`` -> one PartitionWorker per owned partition
    ├── run_reporter   executor reports and timer firings -> ``runs`` (the run's partition)
    ├── run_timers     the timer wheel (flowd.daemon.timers)
    ├── run_router     event triggers (flowd.daemon.triggers)
    ├── run_http       /metrics /healthz /readyz (flowd.daemon.http)
    └── run_loop_lag   event-loop lag probe

The rebalance listener is tiny (STYLE §5): on revoke it closes the partition's worker (finish the
batch in flight, final snapshot, release); on assign it opens one (restore, seek). Partitions
are processed concurrently, each in its own transactions; a round of ``getmany`` waits for all.
aiokafka has no cooperative rebalancing: every rebalance revokes every partition of every member
(eager). Static membership (``instance_id``) and the sticky assignor limit how often that hurts.

Every ``run_*`` task runs forever; if one ends or fails, the task group (and the daemon) ends.
"""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.coordinator.assignors.sticky.sticky_assignor import (
    StickyPartitionAssignor,
)
from aiokafka.errors import IllegalStateError, ProducerFenced

from flowd.daemon import wire
from flowd.daemon.client import partition_for
from flowd.daemon.compiler import make_compiler
from flowd.daemon.config import DaemonConfig
from flowd.daemon.executors import open_executor
from flowd.daemon.kafka import (
    SnapshotStore,
    check_topics,
    consumer,
    ensure_topics,
    map_errors,
    producer,
)
from flowd.daemon.metrics import Metrics, phases
from flowd.daemon.partition import Compiler, Outcome
from flowd.daemon.timers import TimerWheel
from flowd.daemon.worker import PartitionWorker
from flowd.engine import CancelTimer, OpStatus, SetTimer, StartOp, StopOp
from flowd.executor import Executor

__all__ = ["Daemon"]

log = structlog.get_logger("flowd.daemon")


class _Listener(ConsumerRebalanceListener):
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.daemon.revoke([tp.partition for tp in revoked])

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.daemon.assign([tp.partition for tp in assigned])


class Daemon:
    def __init__(self, config: DaemonConfig, *, compiler: Compiler | None = None,
                 on_start: Callable[[StartOp], None] | None = None,
                 executor_factory: Callable[[Any], Executor] | None = None,
                 on_released: Callable[[], None] | None = None) -> None:
        self.config = config
        self.topics = config.topics
        self.metrics = Metrics()
        self.url_policy = config.url_policy
        self.compiler = compiler or make_compiler(config.hub, self.url_policy, config.limits)
        self.on_start = on_start
        # benchmarks plug their own executor in: ``factory(send) -> Executor``
        self.executor_factory = executor_factory
        # called once every partition is released on shutdown, before the executor is closed
        # (``flowd serve`` exits there to leave local op processes running: see _detach)
        self.on_released = on_released
        self.workers: dict[int, PartitionWorker] = {}
        self.run_partition: dict[str, int] = {}
        self.assigned_once = False
        self.http_port: int | None = None
        self.timers = TimerWheel(self._fire_timer)
        self._reports: list[wire.OpReport | wire.TimerFiring] = []
        self._reports_ready = anyio.Event()
        self._changed = anyio.Event()
        self._fatal: Exception | None = None
        self._frozen = False
        self.consumer: AIOKafkaConsumer
        self.executor: Executor
        self.snapshots: SnapshotStore
        self.metrics.add_state_collector(self._collect_state)
        self.transition_counters: dict[tuple[str, str], Any] = {}
        self._events_partitions = 0
        self._events_partition_of: dict[str, int] = {}
        # this process, in the handling markers it writes (its own markers never mean a death)
        self.owner = f"{config.instance_id or socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        # partition -> offset -> error of records whose handling raised: dead-lettered when the
        # rebuilt worker reaches them again (kept here because the worker is replaced)
        self.poisoned: dict[int, dict[int, str]] = {}

    # ------------------------------------------------------------------------------ queries

    @property
    def ready(self) -> bool:
        return self.assigned_once and all(w.live for w in self.workers.values())

    def events_partition(self, run_id: str) -> int:
        """The ``events`` partition of a run: Kafka's default partitioner (murmur2) on the run
        id, cached (bounded) because aiokafka computes it in pure Python."""
        part = self._events_partition_of.get(run_id)
        if part is None:
            if len(self._events_partition_of) > 100_000:
                self._events_partition_of.clear()
            part = self._events_partition_of[run_id] = partition_for(run_id, self._events_partitions)
        return part

    def changed(self) -> None:
        set_partitions = getattr(getattr(self, "executor", None), "set_partitions", None)
        if set_partitions is not None:
            set_partitions({str(p) for p in self.workers})
        ready = self.ready
        if ready and not self._frozen:
            # everything built so far (clients, restored state) lives as long as the daemon:
            # keep it out of the full collections whose pauses would show in the latency tail
            gc.freeze()
            self._frozen = True
        self.metrics.ready.set(1 if ready else 0)
        self._changed.set()

    async def wait_ready(self) -> None:
        while not self.ready:
            self._changed = anyio.Event()
            await self._changed.wait()

    def _collect_state(self) -> list[tuple[str, Any]]:
        states = [w.state for w in list(self.workers.values()) if w.state is not None]
        runs, ops = phases(states)
        now = time.time()
        return [
            ("flowd_runs", dict(runs)),
            ("flowd_ops", dict(ops)),
            ("flowd_partitions_owned", len(self.workers)),
            ("flowd_timers_pending", len(self.timers)),
            ("flowd_snapshot_age_seconds",
             {w.partition: now - w.snapshot_time for w in list(self.workers.values()) if w.has_snapshot}),
        ]

    # ----------------------------------------------------------------------------- the tree

    async def run(self, *, task_status: anyio.abc.TaskStatus[Daemon] = anyio.TASK_STATUS_IGNORED) -> None:
        c = self.config
        if c.create_topics:
            await ensure_topics(c)
        partitions = await check_topics(c)
        self._events_partitions = partitions["events"]
        Path(c.state_dir).mkdir(parents=True, exist_ok=True)
        async with contextlib.AsyncExitStack() as stack:
            if self.executor_factory is not None:
                self.executor = self.executor_factory(self.report)
            else:
                config = dict(c.executor_config or {})
                if c.executor == "local":
                    config.setdefault("max_outputs_bytes", c.limits.max_outputs_bytes)
                if c.executor == "k8s":
                    # label pods with the runs partition that owns them (so after a rebalance each
                    # replica follows only its own pods) and serve the executor's metrics here
                    config.setdefault("partition_count", partitions["runs"])
                    config.setdefault("registry", self.metrics.registry)
                self.executor = await stack.enter_async_context(open_executor(
                    c.executor, send=self.report, state_dir=Path(c.state_dir), config=config,
                    on_start=self.on_start))
            self.feedback = producer(c, enable_idempotence=True)
            with map_errors("feedback producer"):
                await self.feedback.start()
            stack.push_async_callback(_shielded, self.feedback.stop)
            # handling markers: one awaited write before each batch, so no linger and no queueing
            # behind the executor reports on the feedback producer
            self.marker_producer = producer(c, enable_idempotence=True, linger_ms=0)
            with map_errors("marker producer"):
                await self.marker_producer.start()
            stack.push_async_callback(_shielded, self.marker_producer.stop)
            self.snapshots = SnapshotStore(c)
            await self.snapshots.start()
            stack.push_async_callback(_shielded, self.snapshots.stop)
            # urlRef fetches (off the partitions' path; flowd.daemon.urlrefs)
            self._fetch_limiter = anyio.CapacityLimiter(max(1, self.url_policy.concurrency))
            self._fetch_tg = await stack.enter_async_context(anyio.create_task_group())
            # one task per owned partition lives here (started by the rebalance listener)
            self._workers_tg = await stack.enter_async_context(anyio.create_task_group())
            self.consumer = consumer(
                c, group_id=c.group_id, group_instance_id=c.instance_id, session_timeout_ms=c.session_timeout_ms,
                heartbeat_interval_ms=c.heartbeat_interval_ms, max_poll_interval_ms=600_000,
                rebalance_timeout_ms=60_000, partition_assignment_strategy=(StickyPartitionAssignor,),
                max_partition_fetch_bytes=4 * 1024 * 1024)
            self.consumer.subscribe(topics=[self.topics.runs], listener=_Listener(self))
            with map_errors("consumer"):
                await self.consumer.start()
            stack.push_async_callback(self._shutdown)
            from flowd.daemon.triggers import Router

            router = Router(self)
            async with anyio.create_task_group() as tg:
                if c.metrics_port >= 0:
                    from flowd.daemon.http import serve_http

                    self.http_port = await tg.start(serve_http, self, c.metrics_host, c.metrics_port)
                    log.info("http_listening", host=c.metrics_host, port=self.http_port)
                tg.start_soon(_guard, self.timers.run_timers, name="run_timers")
                tg.start_soon(_guard, self.run_reporter, name="run_reporter")
                tg.start_soon(_guard, self.run_consumer, name="run_consumer")
                tg.start_soon(_guard, self.run_loop_lag, name="run_loop_lag")
                tg.start_soon(_guard, router.run_router, name="run_router")
                log.info("daemon_started", brokers=c.brokers, group=c.group_id, executor=c.executor,
                         prefix=c.prefix, instance_id=c.instance_id)
                task_status.started(self)

    async def _shutdown(self) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(30):
            for partition in list(self.workers):
                worker = self.workers.pop(partition)
                await worker.close()
            await self.consumer.stop()
            # reports still queued go out now (the reporter task is gone)
            batch, self._reports = self._reports, []
            with contextlib.suppress(Exception):
                for msg in batch:
                    await self.feedback.send(self.topics.runs, wire.encode(msg), key=msg.run_id.encode(),
                                             partition=self.run_partition.get(msg.run_id))
                await self.feedback.flush()
            log.info("daemon_stopped")
        if self.on_released is not None:
            self.on_released()

    # --------------------------------------------------------------------- partition changes

    async def revoke(self, partitions: list[int]) -> None:
        for p in partitions:
            worker = self.workers.pop(p, None)
            if worker is not None:
                await worker.close()
            self.metrics.forget_partition(p)
        self.changed()

    async def assign(self, partitions: list[int]) -> None:
        try:
            for p in partitions:
                if p in self.workers:
                    continue
                worker = PartitionWorker(self, p)
                await worker.open()
                self.workers[p] = worker
                self._workers_tg.start_soon(self._run_worker, worker, name=f"partition {p}")
        except Exception as exc:  # noqa: BLE001 - aiokafka swallows listener errors: end the daemon
            log.error("assignment_failed", error=f"{type(exc).__name__}: {exc}")
            self._fatal = exc
        self.assigned_once = True
        self.changed()

    async def _reopen(self, worker: PartitionWorker) -> None:
        """A transaction failed: rebuild the partition from its snapshot and the log."""
        await worker.close(final_snapshot=False)
        if self.workers.get(worker.partition) is not worker:
            return  # revoked meanwhile
        fresh = PartitionWorker(self, worker.partition)
        await fresh.open()
        if self.workers.get(worker.partition) is not worker:
            await fresh.close(final_snapshot=False)  # revoked while it opened
            return
        self.workers[worker.partition] = fresh
        self._workers_tg.start_soon(self._run_worker, fresh, name=f"partition {fresh.partition}")
        self.changed()

    # -------------------------------------------------------------------------- consuming

    async def run_consumer(self) -> None:
        """Fetch and hand each partition's records to its worker's queue; pause a partition whose
        worker is behind (backpressure), and tell a recovering worker when it has caught up."""
        while True:
            if self._fatal is not None:
                raise self._fatal
            with map_errors("consumer"):
                batches = await self.consumer.getmany(timeout_ms=100, max_records=self.config.max_batch)
            n = 0
            for tp, records in batches.items():
                worker = self.workers.get(tp.partition)
                if worker is not None:
                    worker.feed(records)
                    n += len(records)
            if n:
                self.metrics.consumed.labels(self.topics.runs).inc(n)
            await self._check_progress()

    async def _run_worker(self, worker: PartitionWorker) -> None:
        try:
            await worker.run_worker()
        except Exception as exc:  # noqa: BLE001 - rebuilt from the log; the batch is redelivered
            worker.log.error("batch_failed", error=f"{type(exc).__name__}: {exc}")
            if _fenced(exc):
                # another daemon owns the partition now (we were presumed dead): give the
                # rebalance that revokes it from us time to arrive instead of fencing it back
                await anyio.sleep(self.config.session_timeout_ms / 1000)
            await self._reopen(worker)

    async def _check_progress(self) -> None:
        paused = self.consumer.paused()
        for worker in list(self.workers.values()):
            tp = worker.tp
            try:
                position = await self.consumer.position(tp)
            except Exception:  # noqa: BLE001 - unassigned meanwhile
                continue
            if not worker.live and position >= worker.committed:
                worker.caught_up()
            backlog = len(worker.pending)
            try:
                if backlog > 4 * self.config.max_batch and tp not in paused:
                    self.consumer.pause(tp)
                elif backlog <= self.config.max_batch and tp in paused:
                    self.consumer.resume(tp)
                high = self.consumer.highwater(tp)
            except IllegalStateError:  # revoked meanwhile
                continue
            if high is not None:
                self.metrics.lag.labels(str(tp.partition)).set(max(0, high - position) + backlog)

    # ----------------------------------------------------------------------- side effects

    async def carry_out(self, partition: int, out: Outcome) -> None:
        m = self.metrics
        for cmd in out.effects:
            if isinstance(cmd, StartOp):
                self.run_partition[cmd.run_id] = partition
                await self.start_attempt(cmd)
            elif isinstance(cmd, StopOp):
                await self.stop_attempt(cmd)
            elif isinstance(cmd, SetTimer):
                self.run_partition[cmd.run_id] = partition
                self.timers.set(cmd.run_id, cmd.timer_id, cmd.at)
            elif isinstance(cmd, CancelTimer):
                self.timers.cancel(cmd.run_id, cmd.timer_id)
            m.commands.labels(type(cmd).__name__).inc()
        self.fetch_urls(partition, out.fetches)
        for done in out.finished:
            # late reports of a finished run go by key (the default partitioner), like its stop
            self.run_partition.pop(done.run_id, None)
            forget = getattr(self.executor, "forget_run", None)
            if forget is not None:
                forget(done.run_id)

    async def mark_handling(self, partition: int, marker: wire.HandlingMarker) -> None:
        """Record durably, before handling a batch, which records are being handled (one small
        write per batch): if they kill this process, the next owner knows which ones."""
        with map_errors(f"handling marker of partition {partition}"):
            await self.marker_producer.send_and_wait(self.topics.snapshots, wire.encode_marker(marker),
                                              key=wire.marker_key(partition), partition=partition)
    def fetch_urls(self, partition: int, submissions: Any) -> None:
        """Fetch the urlRefs of these submissions in the background; each comes back on its
        ``runs`` partition with the documents (flowd.daemon.urlrefs)."""
        for msg in list(submissions):
            self._fetch_tg.start_soon(self._fetch_urls, partition, msg, name=f"urlRef fetch {msg.run_id}")

    async def _fetch_urls(self, partition: int, msg: wire.Submission) -> None:
        from flowd.daemon.compiler import compile_with
        from flowd.daemon.urlrefs import resolve_submission

        hub = self.config.hub
        t0 = time.monotonic()
        async with self._fetch_limiter:
            resolved = await anyio.to_thread.run_sync(
                resolve_submission, msg, self.url_policy, lambda m, f: compile_with(m, f, hub), abandon_on_cancel=True)
        log.info("url_refs_fetched", run_id=msg.run_id, documents=len(resolved.url_documents),
                 errors=list(resolved.url_errors.values())[:3], seconds=round(time.monotonic() - t0, 3))
        for attempt in range(5):
            try:
                with map_errors("publishing fetched urlRefs"):
                    await self.feedback.send_and_wait(self.topics.runs, wire.encode(resolved),
                                                      key=msg.run_id.encode(), partition=partition)
                return
            except Exception as exc:  # noqa: BLE001 - the next owner of the partition fetches again
                log.error("url_refs_publish_failed", run_id=msg.run_id, error=str(exc))
                await anyio.sleep(min(0.5 * 2**attempt, 5))

    async def start_attempt(self, cmd: StartOp) -> None:
        log.debug("start_op", run_id=cmd.run_id, op_path=cmd.path, attempt=cmd.attempt, key=cmd.key)
        try:
            # an executor that logs with structlog gets the run and op in its context
            with structlog.contextvars.bound_contextvars(run_id=cmd.run_id, op_path=cmd.path):
                await self.executor.start(cmd)
        except Exception as exc:  # noqa: BLE001 - the executor's failure is the op's failure
            self.metrics.executor_errors.inc()
            log.error("start_failed", run_id=cmd.run_id, op_path=cmd.path, attempt=cmd.attempt, error=str(exc))
            self.report(OpStatus(run_id=cmd.run_id, path=cmd.path, attempt=cmd.attempt, status="failed",
                                 time=time.time(), reason="ExecutorError", message=str(exc)))

    async def stop_attempt(self, cmd: StartOp | StopOp) -> None:
        stop = cmd if isinstance(cmd, StopOp) else StopOp(cmd.run_id, cmd.path, cmd.attempt, cmd.key)
        try:
            with structlog.contextvars.bound_contextvars(run_id=cmd.run_id, op_path=cmd.path):
                await self.executor.stop(stop)
        except Exception as exc:  # noqa: BLE001
            self.metrics.executor_errors.inc()
            log.error("stop_failed", run_id=cmd.run_id, op_path=cmd.path, error=str(exc))

    # ---------------------------------------------------------------------------- feedback

    def report(self, status: OpStatus) -> None:
        """The executors' ``send``: queue the report for the run's partition of ``runs``."""
        self._reports.append(wire.OpReport(
            run_id=status.run_id, path=status.path, attempt=status.attempt, status=status.status,
            time=status.time, message=status.message, reason=status.reason, exit_code=status.exit_code,
            outputs=status.outputs, metrics=status.metrics))
        self._reports_ready.set()

    def _fire_timer(self, run_id: str, timer_id: str, now: float) -> None:
        self._reports.append(wire.TimerFiring(run_id=run_id, timer_id=timer_id, time=now))
        self._reports_ready.set()

    async def run_reporter(self) -> None:
        topic = self.topics.runs
        while True:
            await self._reports_ready.wait()
            self._reports_ready = anyio.Event()
            batch, self._reports = self._reports, []
            futures = []
            with map_errors("reporting to runs"):
                for msg in batch:
                    futures.append(await self.feedback.send(
                        topic, wire.encode(msg), key=msg.run_id.encode(), partition=self.run_partition.get(msg.run_id)))
                for fut in futures:
                    await fut
            self.metrics.produced.labels(topic).inc(len(batch))

    async def run_loop_lag(self) -> None:
        while True:
            t = time.monotonic()
            await anyio.sleep(0.25)
            self.metrics.loop_lag.observe(max(0.0, time.monotonic() - t - 0.25))


def _fenced(exc: BaseException) -> bool:
    while exc is not None:
        if isinstance(exc, ProducerFenced):
            return True
        exc = exc.__cause__  # type: ignore[assignment]
    return False


async def _shielded(fn: Callable[[], Any]) -> None:
    with anyio.CancelScope(shield=True), anyio.move_on_after(10):
        await fn()


async def _guard(fn: Callable[[], Any]) -> None:
    """A ``run_*`` task must never return: if it does, say so and bring the tree down."""
    await fn()
    log.error("task_returned", task=getattr(fn, "__name__", str(fn)))
    raise RuntimeError(f"{getattr(fn, '__name__', fn)} returned; it should run forever")

