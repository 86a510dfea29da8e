"""The daemon's hands: carry out the engine's commands and bring what comes back to ``runs``.

A partition worker hands each batch's :class:`~flowd.daemon.partition.Outcome` to
:meth:`Effects.carry_out`: op starts and stops go to the executor, timers to the timer wheel,
urlRef fetches to a background task group. What comes back -- executor reports, timer firings,
fetched urlRefs -- is produced to the run's partition of ``runs`` by the feedback producer, so
it enters the engine on the same path as every other input.

This is one object shared by every partition of the daemon (one executor, one timer wheel), and
the only thing a worker knows of the side-effect world: the worker imports this module, never
:mod:`flowd.daemon.serve`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import structlog

from flowd.daemon import wire
from flowd.daemon.kafka import map_errors
from flowd.daemon.timers import TimerWheel
from flowd.engine import CancelTimer, OpStatus, SetTimer, StartOp, StopOp

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer

    from flowd.daemon.config import DaemonConfig
    from flowd.daemon.metrics import Metrics
    from flowd.daemon.partition import Outcome
    from flowd.executor import Executor

__all__ = ["Effects"]

log = structlog.get_logger("flowd.daemon")


class Effects:
    def __init__(self, config: DaemonConfig, metrics: Metrics) -> None:
        self.config = config
        self.topics = config.topics
        self.metrics = metrics
        self.timers = TimerWheel(self._fire_timer)
        # run id -> its ``runs`` partition, for reports (a finished run's late reports go by key)
        self.run_partition: dict[str, int] = {}
        self._reports: list[wire.OpReport | wire.TimerFiring] = []
        self._reports_ready = anyio.Event()
        self.executor: Executor
        self.feedback: AIOKafkaProducer
        self._fetch_tg: anyio.abc.TaskGroup
        self._fetch_limiter = anyio.CapacityLimiter(max(1, config.url_policy.concurrency))

    def attach(self, *, executor: Executor, feedback: AIOKafkaProducer, fetch_tg: anyio.abc.TaskGroup) -> None:
        """Wire in what only exists once the daemon runs (the serve task tree builds them)."""
        self.executor = executor
        self.feedback = feedback
        self._fetch_tg = fetch_tg

    # ----------------------------------------------------------------------- commands

    async def carry_out(self, partition: int, out: Outcome) -> None:
        m = self.metrics
        for cmd in out.effects:
            if isinstance(cmd, StartOp):
                self.run_partition[cmd.run_id] = partition
                await self.start_attempt(cmd)
            elif isinstance(cmd, StopOp):
                await self.stop_attempt(cmd)
            elif isinstance(cmd, SetTimer):
                self.set_timer(partition, cmd.run_id, cmd.timer_id, cmd.at)
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

    def set_timer(self, partition: int, run_id: str, timer_id: str, at: float) -> None:
        self.run_partition[run_id] = partition
        self.timers.set(run_id, timer_id, at)

    def release_runs(self, run_ids: Any) -> None:
        """A partition was released: its timers belong to the next owner now."""
        self.timers.cancel_runs(run_ids)

    async def start_attempt(self, cmd: StartOp, partition: int | None = None) -> None:
        if partition is not None:
            self.run_partition[cmd.run_id] = partition
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

    def fetch_urls(self, partition: int, submissions: Any) -> None:
        """Fetch the urlRefs of these submissions in the background; each comes back on its
        ``runs`` partition with the documents (flowd.daemon.urlrefs)."""
        for msg in list(submissions):
            self._fetch_tg.start_soon(self._fetch_urls, partition, msg, name=f"urlRef fetch {msg.run_id}")

    async def _fetch_urls(self, partition: int, msg: wire.Submission) -> None:
        from flowd.daemon.compiler import compile_with
        from flowd.daemon.urlrefs import resolve_submission

        hub, policy = self.config.hub, self.config.url_policy
        t0 = time.monotonic()
        async with self._fetch_limiter:
            resolved = await anyio.to_thread.run_sync(
                resolve_submission, msg, policy, lambda m, f: compile_with(m, f, hub), abandon_on_cancel=True)
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

    # ---------------------------------------------------------------------- feedback

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

    async def flush_reports(self) -> None:
        """On shutdown: reports still queued go out now (the reporter task is gone)."""
        batch, self._reports = self._reports, []
        for msg in batch:
            await self.feedback.send(self.topics.runs, wire.encode(msg), key=msg.run_id.encode(),
                                     partition=self.run_partition.get(msg.run_id))
        await self.feedback.flush()
