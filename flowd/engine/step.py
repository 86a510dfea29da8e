"""What every part of the engine shares while it handles an event: its limits, each run's derived
index, and the outbox of the ``handle()`` call in progress — the time of the event, the commands
going out, and the nodes that reached a terminal status and still have to be propagated.

The primitives here only record: a status event, a timer, a terminal status. Propagating a
terminal status (downstream triggers, parent counters, pipeline ends) is
:meth:`flowd.engine.pipelines.Pipelines.drain`'s work, run once the event's own work is done."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from flowd.engine import status as S
from flowd.engine.index import Index
from flowd.engine.joins import JoinSource
from flowd.engine.messages import CancelTimer, Command, SetTimer, StatusChanged
from flowd.engine.state import OTHER_BIT, PIPELINE_KINDS, STATUS_BITS, Node, RunState
from flowd.spec.limits import Limits

# attempt numbers as text, formatted once (four event keys per op)
_NUMBERS = tuple(str(n) for n in range(16))


class Outbox(Protocol):
    """Where the commands of the ``handle()`` call in progress go: a list the call returns, or a
    caller's sink that takes each command as it is produced (``Engine.handle(event, sink)``)."""

    def append(self, command: Command, /) -> None: ...

    def extend(self, commands: Iterable[Command], /) -> None: ...


class Forward:
    """An outbox that hands each command to a sink at once. A caller that consumes commands as
    they come (an instant executor, a bench) then never holds one event's whole burst: a
    million-child matrix emits a million StartOps from one call."""

    __slots__ = ("append",)

    def __init__(self, sink: Callable[[Command], None]) -> None:
        self.append = sink

    def extend(self, commands: Iterable[Command]) -> None:
        for command in commands:
            self.append(command)


class Step:
    __slots__ = ("limits", "index", "out", "sink", "finished", "now", "joins", "_forward")

    def __init__(self, limits: Limits) -> None:
        # what a run may make the engine build (ops, rendered templates, reported outputs):
        # plain config from the adapter, never read from the environment (docs/limits.md)
        self.limits = limits
        # run id -> what is derived from that run's state and specs (rebuilt on restore)
        self.index: dict[str, Index] = {}
        # per handle() call
        self.out: Outbox = []
        self.sink: Callable[[Command], None] | None = None
        self.finished: list[tuple[RunState, Node]] = []
        self.now = 0.0
        # the runs joins select from (POLYFLOW §8.4): set by the Engine, which holds the runs
        self.joins: JoinSource | None = None
        # the outbox of the last sink: a caller hands the same sink to every handle() call
        self._forward: Forward | None = None

    def begin(self, now: float, sink: Callable[[Command], None] | None = None) -> None:
        self.sink = sink
        if sink is None:
            self.out = []
        else:
            forward = self._forward
            if forward is None or forward.append is not sink:
                forward = self._forward = Forward(sink)
            self.out = forward
        self.finished.clear()
        self.now = now

    def discard_out(self) -> None:
        """Drop the commands of the event in progress (its state is not to be trusted). A sink
        already has the ones produced so far: they told the truth when they were produced, and
        whatever they started is stopped by the caller of this (``recovery.quarantine``)."""
        self.out = [] if self.sink is None else Forward(self.sink)

    def emit_status(self, run: RunState, node: Node) -> None:
        """Emit ``node``'s status with its deterministic key (and record it as emitted):
        ``RUN/PATH#ATTEMPT:STATUS``, then ``~N`` when this status was already emitted for this
        attempt in this epoch, then ``@EPOCH`` after a resume. A replay of the same events yields
        the same keys: the bookkeeping (``emitted``, ``repeats``) is part of the snapshot."""
        status = node.status
        # four of these per op: the key is built here, not in a helper
        bit = STATUS_BITS.get(status, OTHER_BIT)
        attempt = node.attempt
        number = _NUMBERS[attempt] if attempt < 16 else str(attempt)
        if node.emitted & bit:
            node.repeats += 1
            key = f"{run.run_id}/{node.path}#{number}:{status}~{node.repeats}"
        else:
            node.emitted |= bit
            key = f"{run.run_id}/{node.path}#{number}:{status}"
        if run.epoch:
            key = f"{key}@{run.epoch}"
        # positional (run_id, path, status, time, attempt, key, message, reason, outputs, joined)
        self.out.append(StatusChanged(
            run.run_id, node.path, status, self.now, attempt, key, node.message, node.reason,
            node.outputs if status == S.SUCCEEDED else None, node.joined if status == S.COMPILED else None,
        ))

    def set_timer(self, run: RunState, timer_id: str, at: float) -> None:
        run.timers[timer_id] = at
        self.out.append(SetTimer(run.run_id, timer_id, at))

    def cancel_timer(self, run: RunState, timer_id: str) -> None:
        if run.timers.pop(timer_id, None) is not None:
            self.out.append(CancelTimer(run.run_id, timer_id))

    def finish(self, run: RunState, node: Node, status: str, *, message: str | None = None,
               reason: str | None = None, outputs: Any = None) -> None:
        """Record a terminal status; the drain propagates it."""
        if node.status in S.DONE:
            return
        node.status = status
        node.finished_at = self.now
        if message is not None:
            node.message = message
        if reason is not None:
            node.reason = reason
        if outputs is not None:
            node.outputs = outputs
        if run.timers and node.kind not in PIPELINE_KINDS and node.attempt:
            self.cancel_timer(run, f"timeout:{node.path}#{node.attempt}")
            self.cancel_timer(run, f"retry:{node.path}#{node.attempt}")
        self.emit_status(run, node)
        self.finished.append((run, node))
