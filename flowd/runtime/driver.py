"""The driver loop: the only place where events meet commands.

One way through: executor reports, timers, Ctrl-C and the initial ``Submit`` all become events
on one queue. The loop takes everything queued (a batch), feeds it to ``Engine.handle``,
records what the commands will change (attempts in flight, timers), saves the snapshot
*before* acting (write-ahead, so a crash never loses a started attempt), then routes each
command to exactly one adapter::

    StartOp -> executor.start      StopOp -> executor.stop
    SetTimer -> timers.set         CancelTimer -> timers.cancel
    StatusChanged -> progress      PipelineDone -> finish

Time is the driver's clock (``time.time()``), stamped on events where they are made. The loop
ends when the pipeline is done and no process is left. If nothing can ever happen again (no
process, no timer, nothing queued) while the pipeline is not done, the run is stuck (e.g. an op
awaiting approval): the driver says so and stops the pipeline rather than hang.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Protocol

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from flowd.engine import (
    DONE,
    Approve,
    CancelTimer,
    Command,
    Event,
    OpStatus,
    PipelineDone,
    RunView,
    SetTimer,
    StartOp,
    StatusChanged,
    Stop,
    StopOp,
    TimerFired,
)
from flowd.outputs import DEFAULT_MAX_BYTES as DEFAULT_MAX_OUTPUTS
from flowd.runtime.connections import LocalConnections
from flowd.runtime.executor import LocalExecutor
from flowd.runtime.store import RunRecord, SnapshotStore
from flowd.runtime.timers import TimerService

__all__ = ["Driver", "EngineLike", "Progress"]


class EngineLike(Protocol):
    def handle(self, event: Event) -> list[Command]: ...
    def snapshot(self) -> bytes: ...
    def view(self, run_id: str) -> RunView: ...


class Progress(Protocol):
    """Where status changes and driver notes go (a live view, plain lines, or nothing)."""

    def status(self, change: StatusChanged) -> None: ...
    def note(self, text: str) -> None: ...


class DrivenExecutor(Protocol):
    """What the driver needs of an executor besides flowd.executor.Executor's start/stop:
    adopting in-flight attempts on --resume, stopping everything, and a live count."""

    @property
    def active(self) -> int: ...

    async def start(self, cmd: StartOp) -> None: ...
    async def stop(self, cmd: StopOp) -> None: ...
    async def adopt(self, cmd: StartOp, *, stopping: bool) -> None: ...
    async def stop_all(self, *, reason: str, shutdown: bool = False) -> None: ...
    def kill_all(self) -> None: ...


# (send, run directory) -> an async context manager yielding the executor
ExecutorFactory = Callable[[Callable[[Event], None], Path], AbstractAsyncContextManager[DrivenExecutor]]


class Driver:
    """Runs one pipeline run to its end. ``record`` is the run's saved state (a fresh one for a
    new run, the loaded one for ``--resume``); it is kept up to date and saved after each batch."""

    def __init__(
        self,
        engine: EngineLike,
        *,
        record: RunRecord,
        store: SnapshotStore,
        progress: Progress,
        clock: Callable[[], float] = time.time,
        grace: float = 5.0,
        handle_signals: bool = True,
        approve: Collection[str] = (),
        executor: ExecutorFactory | None = None,
        max_procs: int | None = None,
        max_outputs_bytes: int | None = None,
        connections: LocalConnections | None = None,
    ) -> None:
        self.engine = engine
        # the connection catalog and secrets folder of the local executor (None: no catalog)
        self.connections = connections
        self.max_outputs_bytes = max_outputs_bytes
        self.record = record
        self.run_id = record.run_id
        self.store = store
        self.progress = progress
        self.clock = clock
        self.grace = grace
        self.handle_signals = handle_signals
        # op paths approved in advance (``--approve``): approved as soon as they exist
        self.approve = frozenset(approve)
        # builds the executor as an async context manager; default: local subprocesses
        self.executor_factory = executor
        self.max_procs = max_procs
        self.done: PipelineDone | None = None
        self._keys: dict[tuple[str, int], str] = {k_path_attempt(c): k for k, c in record.attempts.items()}
        self._stopping = set(record.stopping)
        self._stalls = 0
        send, receive = anyio.create_memory_object_stream[Event](math.inf)
        # unbounded on purpose: producers are bounded by live attempts + timers + signals, and a
        # signal handler must never block
        self._send: MemoryObjectSendStream[Event] = send
        self._receive: MemoryObjectReceiveStream[Event] = receive

    def send(self, event: Event) -> None:
        """The one way in."""
        self._send.send_nowait(event)

    async def run(self, initial: Sequence[Event] = ()) -> RunView:
        """Drive the run until it is done; on ``--resume`` first re-arm saved timers and take over
        the attempts that were in flight. Returns the final view."""
        if self.record.done is not None:
            return self.engine.view(self.run_id)
        run_dir = self.store.run_dir(self.run_id)
        async with anyio.create_task_group() as tg:
            if self.executor_factory is not None:
                opened = self.executor_factory(self.send, run_dir)
            else:
                opened = LocalExecutor(run_dir=run_dir, send=self.send, clock=self.clock, grace=self.grace,
                                       max_procs=self.max_procs,
                                       max_outputs_bytes=self.max_outputs_bytes or DEFAULT_MAX_OUTPUTS,
                                       connections=self.connections)
            async with opened as executor:  # noqa: SIM117
                async with TimerService(run_id=self.run_id, send=self.send, clock=self.clock) as timers:
                    self._executor, self._timers = executor, timers
                    if self.handle_signals:
                        tg.start_soon(self._run_signals, name="signals")
                    for event in initial:
                        self.send(event)
                    for timer_id, at in self.record.timers.items():
                        timers.set(timer_id, at)
                    for key, cmd in list(self.record.attempts.items()):
                        await executor.adopt(cmd, stopping=key in self._stopping)
                    await self._loop(tg)
            tg.cancel_scope.cancel()
        return self.engine.view(self.run_id)

    # --------------------------------------------------------------------------- the loop

    async def _loop(self, tg: anyio.abc.TaskGroup) -> None:
        while True:
            batch = self._drain()
            if not batch:
                if self.done is not None and self._executor.active == 0:
                    return
                if self.done is None and self._executor.active == 0 and not self.record.timers:
                    if not self._stalled():
                        return
                    continue
                batch = [await self._receive.receive(), *self._drain()]
            commands: list[Command] = []
            for event in batch:
                self._note_event(event)
                commands.extend(self.engine.handle(event))
            for command in commands:
                self._note_command(command)
            self._save()
            for command in commands:
                await self._dispatch(command, tg)

    def _drain(self) -> list[Event]:
        batch: list[Event] = []
        while True:
            try:
                batch.append(self._receive.receive_nowait())
            except anyio.WouldBlock:
                return batch

    async def _dispatch(self, command: Command, tg: anyio.abc.TaskGroup) -> None:
        match command:
            case StartOp():
                await self._executor.start(command)
            case StopOp():
                await self._executor.stop(command)
            case SetTimer():
                self._timers.set(command.timer_id, command.at)
            case CancelTimer():
                self._timers.cancel(command.timer_id)
            case StatusChanged():
                self.progress.status(command)
                if command.path in self.approve and command.status in ("created", "compiled"):
                    self.send(Approve(run_id=self.run_id, path=command.path, time=self.clock()))
            case PipelineDone():
                self.done = command
                if self._executor.active:
                    # the engine is done with them; whatever still runs (e.g. a service) goes now
                    tg.start_soon(self._stop_leftovers, name="stop leftovers")

    async def _stop_leftovers(self) -> None:
        await self._executor.stop_all(reason="pipeline finished")

    def _stalled(self) -> bool:
        """Nothing can happen any more. Stop the run once; a second stall gives up."""
        self._stalls += 1
        view = self.engine.view(self.run_id)
        waits = getattr(self.engine, "waiting_for", None)
        reasons = waits(self.run_id) if waits is not None else {}
        waiting = sorted(f"{p} waits for {reasons[p]}" if p in reasons else p
                         for p, op in view.ops.items() if op.status not in DONE)
        if self._stalls > 1:
            self.progress.note(f"flowd: the run is stuck and does not stop; giving up (waiting: {', '.join(waiting)})")
            return False
        self.progress.note(
            "flowd: nothing is running and nothing is scheduled, but the pipeline is not done "
            f"(waiting: {', '.join(waiting) or '-'}; an op held for approval needs --approve PATH); stopping it"
        )
        self.send(Stop(run_id=self.run_id, time=self.clock(), reason="Stalled"))
        return True

    async def _run_signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            interrupts = 0
            async for signum in signals:
                interrupts += 1
                if interrupts == 1:
                    name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
                    self.progress.note(f"flowd: {name}: stopping the pipeline (again to kill at once)")
                    self.send(Stop(run_id=self.run_id, time=self.clock(), reason="Interrupted"))
                else:
                    self.progress.note("flowd: killing every op process now")
                    self._executor.kill_all()

    # ----------------------------------------------------------------------- bookkeeping

    def _note_event(self, event: Event) -> None:
        if isinstance(event, OpStatus) and event.status in DONE:
            key = self._keys.pop((event.path, event.attempt), None)
            if key is not None:
                self.record.attempts.pop(key, None)
                self._stopping.discard(key)
        elif isinstance(event, TimerFired):
            at = self.record.timers.get(event.timer_id)
            if at is not None and event.time >= at:
                del self.record.timers[event.timer_id]

    def _note_command(self, command: Command) -> None:
        match command:
            case StartOp():
                self.record.attempts[command.key] = command
                self._keys[k_path_attempt(command)] = command.key
            case StopOp():
                if command.key in self.record.attempts:
                    self._stopping.add(command.key)
            case SetTimer():
                self.record.timers[command.timer_id] = command.at
            case CancelTimer():
                self.record.timers.pop(command.timer_id, None)
            case PipelineDone():
                self.record.done = command.status

    def _save(self) -> None:
        self.record.engine = self.engine.snapshot()
        self.record.stopping = sorted(self._stopping)
        self.store.save(self.record)


def k_path_attempt(cmd: StartOp) -> tuple[str, int]:
    return (cmd.path, cmd.attempt)
