"""A snapshot of one committed offset, written while the partition goes on (issue 15).

Writing a snapshot inside the partition's own transaction holds the partition for the whole
encoding and every chunk write: seconds for a million op states. Instead, once the transaction
that committed offset ``O`` is done, a ``SnapshotJob`` *captures* the partition at ``O`` (under
the partition's lock, cheap: which runs changed since the last snapshot, the ``daemon`` blob,
which blobs go) and from then on:

* encodes those runs in the background, in slices that yield to the event loop;
* **copy-on-write by run**: a record about to change a run the job has not encoded yet makes
  the job encode that run first (``PartitionState.before_change``, called by ``apply`` with the
  record's run id before anything changes; a record changes its own run and the daemon's
  bookkeeping, which the capture already encoded). So every blob is its run as it was at ``O``,
  whatever was applied since;
* writes the blobs, the index, tombstones and the head naming ``O`` in a transaction of the
  partition's *snapshot producer* (``transactional_id = <partition's id>.snapshots``), not the
  partition's: batches keep committing meanwhile.

Exactly-once is the same as with any snapshot older than the committed offset: the consumer
group committed ``O`` (and more) before the head naming ``O`` exists; a new owner restores the
state at ``O``, replays the records from ``O`` to the committed offset without producing
anything, and goes on from there. A crash before the snapshot's commit aborts it (the next
owner's snapshot producer fences it), and the previous head still names a complete set. One job
at a time per partition; a snapshot that must be in the partition's own transaction (a record
skipped as poison; the last one on close) waits for the job first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio

from flowd.daemon import snapshots, wire
from flowd.daemon.partition import PartitionState
from flowd.daemon.snapshots import DAEMON, NODES_PER_PART, SPEC, Plan

__all__ = ["SnapshotJob"]

# encode for at most this long before yielding: shorter than a snapshot written inside the
# transaction (snapshots.SLICE_SECONDS), since every network step of the partition's fetch and
# transaction that is ready meanwhile waits for the slice to end
SLICE_SECONDS = 0.005
# while the partition handles a batch, the job waits this long at most before its next slice
# (a partition always busy still gets its snapshot written, at a fraction of the speed)
YIELD_SECONDS = 0.1


class SnapshotJob:
    """The snapshot of ``state`` at ``offset`` (the caller holds the partition's lock while it
    constructs one, and has just committed ``offset``)."""

    def __init__(self, state: PartitionState, offset: int) -> None:
        t0 = time.monotonic()
        self.state = state
        self.offset = offset
        self.time = time.time()
        engine = state.engine
        self.plan = plan = Plan(state.written_seq + 1)
        plan.background = True
        # the runs to encode, in order; the one being encoded: (run id, parts so far, the rest)
        self.runs = [r for r in sorted(state.dirty) if r in engine.runs]
        self._todo = dict.fromkeys(self.runs)
        self._current: tuple[str, list[bytes], Iterator[bytes]] | None = None
        state.dirty = set()  # from now on: changed after ``offset``, for the next snapshot
        self._live = set(engine.runs)
        daemon = snapshots.encode_value(state.daemon_blob())
        if daemon != state.written_daemon:
            plan.blobs[DAEMON] = snapshots.frames([daemon])
        plan.removed = [n for n in state.written.runs if n.removeprefix("run:") not in self._live]
        state.before_change = self.before_change
        plan.capture_seconds = time.monotonic() - t0

    # ----------------------------------------------------------------- copy-on-write by run

    def before_change(self, run_id: str) -> None:
        """A record is about to change ``run_id``: encode it now if the job has not yet."""
        current = self._current
        if current is not None and current[0] == run_id:
            t0 = time.monotonic()
            parts = current[1]
            parts.extend(current[2])
            self._current = None
            self._seal(run_id, parts)
        elif run_id in self._todo:
            t0 = time.monotonic()
            del self._todo[run_id]
            self._seal(run_id, list(self._parts(run_id)))
        else:
            return
        took = time.monotonic() - t0
        self.plan.forced += 1
        self.plan.longest_forced = max(self.plan.longest_forced, took)

    def _parts(self, run_id: str) -> Iterator[bytes]:
        return self.state.engine.snapshot_run(run_id, nodes_per_part=NODES_PER_PART, without_pipeline=True)

    def _seal(self, run_id: str, parts: list[bytes]) -> None:
        state = self.state
        digest = snapshots.spec_blob(state, self.plan, run_id, state.engine.runs[run_id].pipeline)
        attempts = state.run_attempts(run_id, len(parts))
        attempts.spec = digest
        self.plan.blobs[snapshots.run_blob_name(run_id)] = snapshots.frames([snapshots.encode_value(attempts), *parts])

    # ------------------------------------------------------------------------- background

    async def encode(self, busy: Callable[[], bool] = lambda: False) -> None:
        """Encode every run not encoded yet, yielding to the loop every ``SLICE_SECONDS``, and
        while ``busy()`` (the partition is handling a batch: every network step of its
        transaction would otherwise wait behind a slice) for up to ``YIELD_SECONDS``."""
        plan = self.plan
        t0 = slice_start = time.monotonic()
        try:
            while self._todo or self._current is not None:
                if self._current is None:
                    run_id = next(iter(self._todo))
                    del self._todo[run_id]
                    self._current = (run_id, [], iter(self._parts(run_id)))
                run_id, parts, rest = self._current
                part = next(rest, None)
                if part is None:
                    self._current = None
                    self._seal(run_id, parts)
                else:
                    parts.append(part)
                now = time.monotonic()
                if now - slice_start >= SLICE_SECONDS:
                    plan.longest_slice = max(plan.longest_slice, now - slice_start)
                    await anyio.sleep(0)
                    waited = time.monotonic()
                    while busy() and time.monotonic() - waited < YIELD_SECONDS:
                        await anyio.sleep(0.002)
                    slice_start = time.monotonic()
        finally:
            self.state.before_change = None
        self._drop_unused_specs()
        now = time.monotonic()
        plan.longest_slice = max(plan.longest_slice, now - slice_start)
        plan.encode_seconds = now - t0

    def _drop_unused_specs(self) -> None:
        """``spec:`` blobs no run of the snapshot uses any more go (those a run still uses stay,
        written or not: a run that never had its digest taken gets it now)."""
        state, plan = self.state, self.plan
        for run_id in [r for r in state.run_specs if r not in self._live and r not in state.engine.runs]:
            del state.run_specs[run_id]
        for run_id in self._live:
            run = state.engine.runs.get(run_id)
            if run_id not in state.run_specs and run is not None:
                snapshots.spec_blob(state, plan, run_id, run.pipeline)
        used = {SPEC + digest for run_id, (_, digest) in state.run_specs.items() if run_id in self._live}
        plan.removed += [n for n in state.written.specs if n not in used]

    async def write(self, producer: Any, topic: str) -> tuple[wire.SnapshotIndex, wire.BlobRef]:
        """The snapshot in one transaction of ``producer`` (the partition's snapshot producer)."""
        t0 = time.monotonic()
        await producer.begin_transaction()
        try:
            written = await snapshots.write(producer, topic, self.state, self.plan, self.offset, at=self.time)
            await producer.commit_transaction()
        except BaseException:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                try:
                    await producer.abort_transaction()
                except Exception:  # noqa: BLE001 - fenced or broken: the next owner aborts it
                    pass
            raise
        self.plan.write_seconds = time.monotonic() - t0
        return written

    def failed(self) -> None:
        """Not written: its runs count as changed again (the next snapshot writes them)."""
        self.state.before_change = None
        self.state.dirty.update(r for r in self.runs if r in self.state.engine.runs)
