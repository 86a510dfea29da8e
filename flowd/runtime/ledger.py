"""What the driver keeps besides the engine: attempts in flight, stops asked for, timers, done.

The same bookkeeping runs live (the driver, batch by batch) and on replay (flowd.runtime.replay,
over the journal's batches), so a run rebuilt from its snapshot and journal has exactly the
attempts, timers and final status the live driver had after the same batches. Per batch, in the
driver's order: every event is noted, then handled by the engine, then every command is noted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from flowd.engine import (
    DONE,
    CancelTimer,
    Command,
    Event,
    OpStatus,
    PipelineDone,
    Resume,
    SetTimer,
    StartOp,
    StopOp,
    TimerFired,
)
from flowd.runtime.store import RunRecord
from flowd.runtime.timers import RUN_SEP

__all__ = ["Ledger", "timer_key"]


class _Handles(Protocol):
    def handle(self, event: Event) -> list[Command]: ...


class Ledger:
    """Keeps ``record.attempts``, ``.stopping``, ``.timers`` and ``.done`` up to date.

    The hook runs a pipeline starts are driven with it (POLYFLOW §8.3): their attempts are kept
    with the pipeline's, their timers under :func:`timer_key`, and only the pipeline's own
    ``PipelineDone`` sets ``done``."""

    def __init__(self, record: RunRecord) -> None:
        self.record = record
        self._keys: dict[tuple[str, str, int], str] = {
            (c.run_id, c.path, c.attempt): k for k, c in record.attempts.items()}
        self.stopping: set[str] = set(record.stopping)

    def apply(self, engine: _Handles, batch: Sequence[Event]) -> list[Command]:
        """Feed one batch to the engine; returns the commands, in order."""
        commands: list[Command] = []
        for event in batch:
            self.note_event(event)
            commands.extend(engine.handle(event))
        for command in commands:
            self.note_command(command)
        return commands

    def note_event(self, event: Event) -> None:
        record = self.record
        if isinstance(event, OpStatus) and event.status in DONE:
            key = self._keys.pop((event.run_id, event.path, event.attempt), None)
            if key is not None:
                record.attempts.pop(key, None)
                self.stopping.discard(key)
        elif isinstance(event, TimerFired):
            key = timer_key(record.run_id, event.run_id, event.timer_id)
            at = record.timers.get(key)
            if at is not None and event.time >= at:
                del record.timers[key]
        elif isinstance(event, Resume) and event.run_id == record.run_id:
            record.done = None  # a finished run runs again (flowd run --resume, flowd resume)

    def note_command(self, command: Command) -> None:
        record = self.record
        match command:
            case StartOp():
                record.attempts[command.key] = command
                self._keys[(command.run_id, command.path, command.attempt)] = command.key
            case StopOp():
                if command.key in record.attempts:
                    self.stopping.add(command.key)
            case SetTimer():
                record.timers[timer_key(record.run_id, command.run_id, command.timer_id)] = command.at
            case CancelTimer():
                record.timers.pop(timer_key(record.run_id, command.run_id, command.timer_id), None)
            case PipelineDone() if command.run_id == record.run_id:
                record.done = command.status

    def sync(self) -> RunRecord:
        """The record with the stop set written back (before it is saved)."""
        self.record.stopping = sorted(self.stopping)
        return self.record


def timer_key(driven: str, run_id: str, timer_id: str) -> str:
    """The driver's name of a timer: its own id for the driven run, qualified by the run id for
    a hook run driven with it."""
    return timer_id if run_id == driven else f"{run_id}{RUN_SEP}{timer_id}"
