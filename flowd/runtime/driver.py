"""The driver loop: the only place where events meet commands.

One way through: executor reports, timers, Ctrl-C and the initial ``Submit`` all become events
on one queue. The loop takes everything queued (a batch), feeds it to ``Engine.handle``,
records what the commands will change (attempts in flight, timers: flowd.runtime.ledger),
appends the batch to the run's journal *before* acting (write-ahead, so a crash never loses a
started attempt), then routes each command to exactly one adapter::

    StartOp -> executor.start      StopOp -> executor.stop
    SetTimer -> timers.set         CancelTimer -> timers.cancel
    StatusChanged -> progress      PipelineDone -> finish
    StartHook -> a Submit of the hook run, into this same loop

Hook runs (POLYFLOW §8.3) are separate runs of the same engine, driven by this loop next to the
pipeline (their snapshot is the pipeline's, so ``--resume`` resumes them too): the loop ends
when the pipeline is done and every hook run it started is done too.

Persisting a batch is a journal append (flowd.runtime.journal): the batch's events, written and
fdatasync'ed in a worker thread while the event loop goes on with everything else (the
executor's creates and watches, timers, signals); the events that arrive meanwhile make the
next, larger batch (group commit). Its cost does not depend on the size of the run. The whole
state is written (a snapshot) for the first batch of this process, then only when the journal
has grown as big as the last snapshot, and once when the pipeline is done.

Time is the driver's clock (``time.time()``), stamped on events where they are made. The loop
ends when the pipeline is done and no process is left. If nothing can ever happen again (no
process, no timer, nothing queued) while the pipeline is not done, the run is stuck (e.g. an op
awaiting approval): the driver says so and stops the pipeline rather than hang.
"""

from __future__ import annotations

import gc
import math
import signal
import time
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Protocol

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from flowd.engine import (
    DONE,
    Approve,
    CancelTimer,
    Command,
    Event,
    PipelineDone,
    RunView,
    SetTimer,
    StartHook,
    StartOp,
    StatusChanged,
    Stop,
    StopOp,
    Submit,
)
from flowd.faults import crash_point
from flowd.outputs import DEFAULT_MAX_BYTES as DEFAULT_MAX_OUTPUTS
from flowd.runtime.connections import LocalConnections
from flowd.runtime.executor import LocalExecutor
from flowd.runtime.journal import COMPACT_MIN_BYTES, JournalEntry, JournalFile, encode_entry
from flowd.runtime.ledger import Ledger, timer_key
from flowd.runtime.store import RECORD_VERSION, RunRecord, SnapshotStore, StoreError
from flowd.runtime.timers import TimerService

__all__ = ["Driver", "EngineLike", "Progress"]

# commands carried out between two yields to the event loop (see Driver._loop)
DISPATCH_SLICE = 64


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
    new run, the restored one for ``--resume``: flowd.runtime.replay); it is kept up to date and
    each batch is journaled before its commands are carried out."""

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
        # why the driver stopped a run that could not progress (the --output json message)
        self.stall_message: str | None = None
        self.ledger = Ledger(record)
        self.journal = JournalFile(store.journal_path(self.run_id))
        self._seq = record.seq
        # the first batch of this process writes a snapshot: a new run gets its snapshot.bin (what
        # lists it), a resumed one drops the journal it was restored from (and any torn tail)
        self._snapshot_bytes: int | None = None
        # hook runs started and not done yet (restored from the engine on --resume)
        runs = getattr(engine, "runs", {})
        self.hooks_open: set[str] = {r for r, st in runs.items() if st.hook_of is not None and not st.done}
        self._stalls = 0
        # persistence figures (bench/store_bench.py): batches, appends, snapshots, seconds waited
        self.stats = {"batches": 0, "appends": 0, "snapshots": 0, "append_bytes": 0, "snapshot_bytes": 0,
                      "persist_seconds": 0.0, "encode_seconds": 0.0, "append_seconds": 0.0,
                      "snapshot_seconds": 0.0}
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
            if not self.hooks_open:
                return self.engine.view(self.run_id)
            # the pipeline ended before a crash, its hook runs did not: drive them to their end
            self.done = PipelineDone(self.run_id, self.record.done, self.clock())
        run_dir = self.store.run_dir(self.run_id)
        async with anyio.create_task_group() as tg:
            if self.executor_factory is not None:
                opened = self.executor_factory(self.send, run_dir)
            else:
                opened = LocalExecutor(run_dir=run_dir, send=self.send, clock=self.clock, grace=self.grace,
                                       max_procs=self.max_procs,
                                       max_outputs_bytes=self.max_outputs_bytes or DEFAULT_MAX_OUTPUTS,
                                       run_id=self.run_id, connections=self.connections)
            async with opened as executor:  # noqa: SIM117
                async with TimerService(run_id=self.run_id, send=self.send, clock=self.clock) as timers:
                    self._executor, self._timers = executor, timers
                    _freeze_once()
                    if self.handle_signals:
                        tg.start_soon(self._run_signals, name="signals")
                    for event in initial:
                        self.send(event)
                    for timer_id, at in self.record.timers.items():
                        timers.set(timer_id, at)
                    for key, cmd in list(self.record.attempts.items()):
                        await executor.adopt(cmd, stopping=key in self.ledger.stopping)
                    try:
                        await self._loop(tg)
                    finally:
                        self.journal.close()
            tg.cancel_scope.cancel()
        return self.engine.view(self.run_id)

    # --------------------------------------------------------------------------- the loop

    async def _loop(self, tg: anyio.abc.TaskGroup) -> None:
        while True:
            batch = self._drain()
            if not batch:
                if self.done is not None and self._executor.active == 0 and not self.hooks_open:
                    return
                if self.done is not None and self._executor.active == 0 and not self.record.timers:
                    # a hook run that can never move on (held for approval...): stop it
                    if self._stalls:
                        return
                    self._stalls += 1
                    for run_id in sorted(self.hooks_open):
                        self.send(Stop(run_id=run_id, time=self.clock(), reason="Stalled"))
                    continue
                if self.done is None and self._executor.active == 0 and not self.record.timers:
                    if not self._stalled():
                        return
                    continue
                batch = [await self._receive.receive(), *self._drain()]
            was_done = self.record.done is not None
            commands = self.ledger.apply(self.engine, batch)
            await self._persist(batch, final=not was_done and self.record.done is not None)
            for i, command in enumerate(commands, 1):
                await self._dispatch(command, tg)
                if i % DISPATCH_SLICE == 0:
                    # a fan-out's thousand starts would otherwise all be converted before the
                    # executor sends its first create: let the creates begin meanwhile
                    await anyio.lowlevel.checkpoint()

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
                self._timers.set(timer_key(self.run_id, command.run_id, command.timer_id), command.at)
            case CancelTimer():
                self._timers.cancel(timer_key(self.run_id, command.run_id, command.timer_id))
            case StartHook():
                self._start_hook(command)
            case StatusChanged() if command.run_id != self.run_id:
                pass  # a hook run's op: the hook's own lines are enough
            case StatusChanged():
                self.progress.status(command)
                if command.path in self.approve and command.status in ("created", "compiled"):
                    self.send(Approve(run_id=self.run_id, path=command.path, time=self.clock()))
            case PipelineDone() if command.run_id != self.run_id:
                self.hooks_open.discard(command.run_id)
                self.progress.note(f"flowd: hook run {command.run_id} {command.status}"
                                   + (f": {command.message}" if command.message else ""))
            case PipelineDone():
                self.done = command
                if self._executor.active:
                    # the engine is done with them; whatever still runs (e.g. a service) goes now
                    tg.start_soon(self._stop_leftovers, name="stop leftovers")

    def _start_hook(self, command: StartHook) -> None:
        """A hook run enters on the path every run enters by: a ``Submit`` event."""
        src = command.source
        what = f"hook {src.index} ({src.hub_ref}) of {src.path or 'the pipeline'} ({src.status})"
        if command.status != "created" or command.pipeline is None:
            self.progress.note(f"flowd: {what}: {command.status}" + (f": {command.message}" if command.message else ""))
            return
        if command.hook_run_id in self.hooks_open:
            return
        self.hooks_open.add(command.hook_run_id)
        self.progress.note(f"flowd: {what}: run {command.hook_run_id}")
        self.send(Submit(run_id=command.hook_run_id, pipeline=command.pipeline, time=self.clock(), seed=command.seed,
                         context=command.context, hook_of=command.source))

    async def _stop_leftovers(self) -> None:
        if not self.hooks_open:
            await self._executor.stop_all(reason="pipeline finished")
            return
        # hook runs go on after the pipeline: stop only the pipeline's own leftovers
        for cmd in [c for c in self.record.attempts.values() if c.run_id == self.run_id]:
            await self._executor.stop(StopOp(cmd.run_id, cmd.path, cmd.attempt, cmd.key, reason="pipeline finished"))

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
        self.stall_message = (f"stopped: nothing could progress (waiting: {', '.join(waiting) or '-'}; an op held "
                              "for approval needs --approve PATH)")
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

    # ------------------------------------------------------------------------ persistence

    async def _persist(self, batch: list[Event], *, final: bool) -> None:
        """Make the batch durable before its commands are carried out: one journal append, or a
        snapshot (the first batch of this process, a journal as big as the last snapshot, the
        pipeline just done). The disk is waited on in a worker thread, never in the loop."""
        self._seq += 1
        self.stats["batches"] += 1
        t0 = time.perf_counter()
        limit = max(COMPACT_MIN_BYTES, self._snapshot_bytes or 0)
        if self._snapshot_bytes is None or final or self.journal.size >= limit:
            self.record.engine = self.engine.snapshot()
            self.record.seq = self._seq
            self.record.version = RECORD_VERSION  # a run of an earlier release is written in this format now
            data = self.store.encode(self.ledger.sync())
            self.stats["encode_seconds"] += time.perf_counter() - t0
            await anyio.to_thread.run_sync(self._write_snapshot, data)
            self._snapshot_bytes = len(data)
            self.stats["snapshot_seconds"] += time.perf_counter() - t0
            self.stats["snapshots"] += 1
            self.stats["snapshot_bytes"] += len(data)
        else:
            frame = encode_entry(JournalEntry(seq=self._seq, events=batch))
            t1 = time.perf_counter()
            self.stats["encode_seconds"] += t1 - t0
            await anyio.to_thread.run_sync(self._append, frame)
            self.stats["append_seconds"] += time.perf_counter() - t1
            self.stats["appends"] += 1
            self.stats["append_bytes"] += len(frame)
        self.stats["persist_seconds"] += time.perf_counter() - t0
        crash_point("run.persisted", f"{self.run_id}#{self._seq}")  # tests only: durable, nothing carried out

    def _write_snapshot(self, data: bytes) -> None:
        self.store.write(self.run_id, data)
        crash_point("run.snapshot_written", f"{self.run_id}#{self._seq}")  # tests only: journal not emptied yet
        try:
            self.journal.clear()
        except OSError as exc:
            raise StoreError(f"cannot empty the journal {self.journal.path}: {exc}") from exc

    def _append(self, frame: bytes) -> None:
        try:
            self.journal.append(frame, key=f"{self.run_id}#{self._seq}")
        except OSError as exc:
            raise StoreError(f"cannot append to the journal {self.journal.path}: {exc}") from exc


_frozen = False


def _freeze_once() -> None:
    """Everything built before the first run of this process (the imports — the Kubernetes
    client's are ~100k objects —, the executor's clients, a restored run) lives as long as the
    process: moved out of the cyclic collector's full collections, whose pauses stood the loop
    still for up to 0.5 s during a 1,000-pod fan-out on a busy machine (the daemon freezes its
    start-up the same way). Once per process: a later freeze would pin what earlier runs left."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.freeze()
