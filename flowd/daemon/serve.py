"""``flowd serve``: the daemon's task tree.

::

    Daemon.run
    ├── run_consumer   getmany over ``runs`` -> one PartitionWorker per owned partition
    ├── run_reporter   executor reports and timer firings -> ``runs`` (flowd.daemon.effects)
    ├── run_timers     the timer wheel (flowd.daemon.timers)
    ├── run_cache_tail ``<prefix>cache`` -> the result cache table (flowd.daemon.cache)
    ├── run_router     event triggers (flowd.daemon.triggers)
    ├── run_http       /metrics /healthz /readyz (flowd.daemon.http)
    └── run_loop_lag   event-loop lag probe

Each part gets only what it needs: a worker a :class:`~flowd.daemon.worker.PartitionContext`,
the side effects an :class:`~flowd.daemon.effects.Effects` (executor, timers, feedback), the
router and the HTTP server a few callables. None of them imports this module.

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
from functools import partial
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
from flowd.daemon.artifacts import executor_settings
from flowd.daemon.client import partition_for
from flowd.daemon.compiler import make_compiler
from flowd.daemon.config import DaemonConfig
from flowd.daemon.effects import Effects
from flowd.daemon.executors import open_executor
from flowd.daemon.kafka import (
    SnapshotStore,
    check_topics,
    consumer,
    ensure_topics,
    map_errors,
    producer,
)
from flowd.daemon.metrics import Metrics, op_backlog, phases
from flowd.daemon.partition import Compiler
from flowd.daemon.worker import PartitionContext, PartitionWorker
from flowd.engine import StartOp
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
        self.assigned_once = False
        self.http_port: int | None = None
        self.effects = Effects(config, self.metrics)
        self.timers = self.effects.timers
        self._changed = anyio.Event()
        self._fatal: Exception | None = None
        self._frozen = False
        self.consumer: AIOKafkaConsumer
        self.executor: Executor
        self.snapshots: SnapshotStore
        self.metrics.add_state_collector(self._collect_state)
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

    def health(self) -> tuple[bool, str]:
        """(ready, what for /readyz): ready once every assigned partition is restored and replayed."""
        if self.ready:
            return True, f"ready: {len(self.workers)} partition(s)"
        waiting = sorted(p for p, w in self.workers.items() if not w.live)
        return False, "not ready: " + ("no assignment yet" if not self.assigned_once else f"recovering partitions {waiting}")

    def _context(self, partition: int) -> PartitionContext:
        return PartitionContext(
            config=self.config, owner=self.owner, compiler=self.compiler, metrics=self.metrics,
            consumer=self.consumer, snapshots=self.snapshots, effects=self.effects, mark_handling=self.mark_handling,
            events_partition=self.events_partition, on_live=self.changed,
            poisoned=self.poisoned.setdefault(partition, {}))

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
        pending, lost = op_backlog(states)
        now = time.time()
        return [
            ("flowd_runs", dict(runs)),
            ("flowd_ops", dict(ops)),
            ("flowd_ops_pending", pending),
            ("flowd_ops_lost", lost),
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
            report = self.effects.report
            if self.executor_factory is not None:
                self.executor = self.executor_factory(report)
            else:
                config = dict(c.executor_config or {})
                if c.executor in ("local", "k8s"):
                    config.setdefault("max_outputs_bytes", c.limits.max_outputs_bytes)
                # the artifact store (flowd.daemon.artifacts): settings for pods, env for processes
                store_settings = executor_settings(c)
                if c.executor == "local":
                    for key, value in store_settings.items():
                        os.environ[key] = str(Path(value).absolute()) if key == "FLOWD_ARTIFACTS_STORE" \
                            and "://" not in value else value
                if c.executor == "k8s":
                    for key, value in store_settings.items():
                        config.setdefault(key, value)
                    # label pods with the runs partition that owns them (so after a rebalance each
                    # replica follows only its own pods) and serve the executor's metrics here
                    config.setdefault("partition_count", partitions["runs"])
                    config.setdefault("registry", self.metrics.registry)
                self.executor = await stack.enter_async_context(open_executor(
                    c.executor, send=report, state_dir=Path(c.state_dir), config=config,
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
            fetch_tg = await stack.enter_async_context(anyio.create_task_group())
            self.effects.attach(executor=self.executor, feedback=self.feedback, fetch_tg=fetch_tg)
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

            router = Router(c, feedback=self.feedback, metrics=self.metrics, owned=lambda: set(self.workers))
            async with anyio.create_task_group() as tg:
                if c.metrics_port >= 0:
                    from flowd.daemon.http import serve_http

                    self.http_port = await tg.start(serve_http, self.health, self.metrics.registry,
                                                    c.metrics_host, c.metrics_port)
                    log.info("http_listening", host=c.metrics_host, port=self.http_port)
                tg.start_soon(_guard, self.timers.run_timers, name="run_timers")
                tg.start_soon(_guard, self.effects.run_reporter, name="run_reporter")
                if c.cache:
                    tg.start_soon(_guard, partial(self.effects.cache.tail, c, ready=self.effects.cache_ready),
                                  name="run_cache_tail")
                tg.start_soon(_guard, self.run_consumer, name="run_consumer")
                tg.start_soon(_guard, self.run_loop_lag, name="run_loop_lag")
                tg.start_soon(_guard, router.run_router, name="run_router")
                log.info("daemon_started", brokers=c.brokers, group=c.group_id, executor=c.executor,
                         prefix=c.prefix, instance_id=c.instance_id)
                task_status.started(self)

    async def _shutdown(self) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(30):
            for partition in list(self.workers):
                # a rebalance may revoke (and close) a partition while an earlier one closes here
                worker = self.workers.pop(partition, None)
                if worker is not None:
                    await worker.close()
            await self.consumer.stop()
            # reports still queued go out now (the reporter task is gone)
            with contextlib.suppress(Exception):
                await self.effects.flush_reports()
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
                worker = PartitionWorker(self._context(p), p)
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
        fresh = PartitionWorker(self._context(worker.partition), worker.partition)
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

    # --------------------------------------------------------------------- handling markers

    async def mark_handling(self, partition: int, marker: wire.HandlingMarker) -> None:
        """Record durably, before handling a batch, which records are being handled (one small
        write per batch): if they kill this process, the next owner knows which ones."""
        with map_errors(f"handling marker of partition {partition}"):
            await self.marker_producer.send_and_wait(self.topics.snapshots, wire.encode_marker(marker),
                                              key=wire.marker_key(partition), partition=partition)

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

