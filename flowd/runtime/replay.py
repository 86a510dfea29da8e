"""A run's state read back: its snapshot, then the journal's later batches replayed.

Used by ``flowd run --resume``/``flowd resume`` (to continue the run) and by every reader of a
state dir (``flowd runs``, ``gc``, ``graph RUN``, the web UI), which may read a run while its
flowd is writing it. A reader can race a compaction (new snapshot, then the journal emptied):
it notices the snapshot changed under it, or a gap in the batch numbers, and reads again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import msgspec

from flowd.engine import Engine
from flowd.runtime.journal import JournalEntry, read_journal
from flowd.runtime.ledger import Ledger
from flowd.runtime.store import RunRecord, SnapshotStore, StoreError

__all__ = ["Restored", "restore_run"]

_ATTEMPTS = 5


@dataclass
class Restored:
    record: RunRecord  # attempts, stopping, timers, done and seq as of the last replayed batch
    engine: Engine
    replayed: int  # journal entries replayed on top of the snapshot
    torn: bool  # the journal ended in a torn or corrupt frame (ignored)


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _consistent(record: RunRecord, entries: list[JournalEntry]) -> list[JournalEntry] | None:
    """The entries to replay (seq > the snapshot's, consecutive), or None for a gap."""
    tail = [e for e in entries if e.seq > record.seq]
    for expected, entry in enumerate(tail, start=record.seq + 1):
        if entry.seq != expected:
            return None
    return tail


def restore_run(store: SnapshotStore, run_id: str, *, limits: object | None = None) -> Restored | None:
    """The run as of its last durable batch, or None when it was never saved. Raises
    StoreError when it cannot be read."""
    snapshot = store.snapshot_path(run_id)
    for _ in range(_ATTEMPTS):
        before = _identity(snapshot)
        record = store.load(run_id)
        if record is None:
            return None
        entries, _, torn = read_journal(store.journal_path(run_id))
        tail = _consistent(record, entries)
        if tail is not None and _identity(snapshot) == before:
            break
    else:
        raise StoreError(f"the state of run {run_id} kept changing while it was read; try again")
    try:
        engine = Engine.restore(record.engine, limits=limits)  # type: ignore[arg-type]
    except (ValueError, KeyError, msgspec.DecodeError) as exc:
        raise StoreError(f"the engine state of run {run_id} is unreadable ({exc})") from exc
    ledger = Ledger(record)
    for entry in tail:
        ledger.apply(engine, entry.events)
        record.seq = entry.seq
    ledger.sync()
    return Restored(record=record, engine=engine, replayed=len(tail), torn=torn)
