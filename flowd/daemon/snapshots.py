"""Incremental snapshots of a ``runs`` partition that fit any Kafka (format 2, issue 15).

A partition's state is kept on the ``snapshots`` topic as *blobs*: one per run
(``run:<run id>``: the daemon's attempt bookkeeping of the run, then the engine's parts of it),
one ``daemon`` blob (finished run ids, subscriptions, urlRef fetches) and an ``index`` blob that
maps every live blob to where its chunks are (``wire.BlobRef``: the snapshot ``seq`` that wrote
it, its size, the offsets of its chunk records). A blob is a byte string of frames (4-byte
big-endian length + msgpack value) cut into chunk records of at most ``CHUNK_BYTES``, keyed
``<partition>/<seq>/<name>/<i>``: no record is near the broker's default 1 MB limit, and no key
is ever written twice, so compaction never drops a live chunk.

A snapshot writes, in the partition's consumer-group transaction (with the offset commit):
the blobs of the runs that changed since the last snapshot (``PartitionState.dirty``), the
``daemon`` blob if it changed, the new ``index``, tombstones for the chunks the new index no
longer names (rewritten blobs, runs forgotten after ``retention``) and, last, the head
(``wire.SnapshotHead``, key ``<partition>``). A crash anywhere before the commit aborts the
transaction: read_committed readers never see its chunks, and the previous head still names
the previous, complete set (``tests/integration/test_daemon_snapshots.py`` kills the daemon
between two chunks). A restore reads the head, then the index, then every blob by offset.

Encoding runs on the event loop in slices (``SLICE_SECONDS`` of work, then a yield), so a
partition of a million ops never stalls the loop, the group heartbeat or other partitions.
"""

from __future__ import annotations

import gc
import hashlib
import struct
import time
from collections.abc import Iterator
from typing import Any, NamedTuple

import anyio
import msgspec

from flowd.daemon import faults, wire
from flowd.daemon.kafka import SnapshotMissing, SnapshotStore
from flowd.daemon.partition import Compiler, PartitionState
from flowd.engine import Engine
from flowd.faults import crash_point
from flowd.spec.compiled import Op
from flowd.spec.limits import Limits

__all__ = ["CHUNK_BYTES", "Plan", "blob_key", "chunks", "encode_changes", "frames", "read_frames",
           "restore_blobs", "INDEX", "DAEMON", "SPEC"]

# a chunk record's value; with key and record overhead far below the broker default
# (message.max.bytes = 1048588) and below 1 MB however one counts it
CHUNK_BYTES = 900 * 1024
# nodes per engine part: ~150 B each, so parts of ~0.5 MB
NODES_PER_PART = 4096
# encode for at most this long before yielding to the event loop
SLICE_SECONDS = 0.02

INDEX = "index"
DAEMON = "daemon"
# prefix of a compiled pipeline's blob: ``spec:<digest of its msgpack bytes>``
SPEC = "spec:"
_LEN = struct.Struct(">I")
_encoder = msgspec.msgpack.Encoder()
_index_decoder = msgspec.msgpack.Decoder(wire.SnapshotIndex)
_attempts_decoder = msgspec.msgpack.Decoder(wire.RunAttempts)
_daemon_decoder = msgspec.msgpack.Decoder(wire.DaemonBlob)
_spec_decoder = msgspec.msgpack.Decoder(Op)


def encode_value(value: Any) -> bytes:
    return _encoder.encode(value)


def run_blob_name(run_id: str) -> str:
    return f"run:{run_id}"


def blob_key(partition: int, seq: int, name: str, i: int) -> bytes:
    return f"{partition}/{seq}/{name}/{i}".encode()


def frames(parts: list[bytes]) -> bytes:
    out = bytearray()
    for part in parts:
        out += _LEN.pack(len(part))
        out += part
    return bytes(out)


def read_frames(blob: bytes) -> list[memoryview]:
    view = memoryview(blob)
    out = []
    pos = 0
    while pos < len(view):
        (n,) = _LEN.unpack_from(view, pos)
        out.append(view[pos + 4:pos + 4 + n])
        pos += 4 + n
    return out


def chunks(blob: bytes) -> Iterator[bytes]:
    for i in range(0, max(1, len(blob)), CHUNK_BYTES):
        yield blob[i:i + CHUNK_BYTES]


class Plan:
    """What one snapshot writes: new blobs (name -> bytes) and blobs that go (tombstoned)."""

    __slots__ = ("seq", "blobs", "removed", "encode_seconds", "longest_slice", "background", "capture_seconds",
                 "forced", "longest_forced", "write_seconds")

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.blobs: dict[str, bytes] = {}
        self.removed: list[str] = []
        self.encode_seconds = 0.0
        self.longest_slice = 0.0
        # written while the partition went on (flowd.daemon.snapshot_job), and what that held
        # the partition for: the capture at the offset, and runs encoded ahead of a change
        self.background = False
        self.capture_seconds = 0.0
        self.forced = 0
        self.longest_forced = 0.0
        self.write_seconds = 0.0


async def encode_changes(state: PartitionState) -> Plan:
    """The blobs of the runs changed since the last snapshot (and the daemon blob if it
    changed), encoded in slices with yields to the loop. The caller holds the partition's lock:
    the state does not change meanwhile."""
    plan = Plan(state.written_seq + 1)
    engine = state.engine
    t0 = slice_start = time.monotonic()

    async def tick() -> None:
        nonlocal slice_start
        now = time.monotonic()
        if now - slice_start >= SLICE_SECONDS:
            plan.longest_slice = max(plan.longest_slice, now - slice_start)
            await anyio.sleep(0)
            slice_start = time.monotonic()

    for run_id in sorted(state.dirty):
        run = engine.runs.get(run_id)
        if run is None:
            continue
        digest = spec_blob(state, plan, run_id, run.pipeline)
        parts: list[bytes] = []
        for part in engine.snapshot_run(run_id, nodes_per_part=NODES_PER_PART, without_pipeline=True):
            parts.append(part)
            await tick()
        attempts = state.run_attempts(run_id, len(parts))
        attempts.spec = digest
        plan.blobs[run_blob_name(run_id)] = frames([_encoder.encode(attempts), *parts])
        await tick()
    daemon = _encoder.encode(state.daemon_blob())
    if daemon != state.written_daemon:
        plan.blobs[DAEMON] = frames([daemon])
    live = {run_blob_name(r) for r in engine.runs}
    plan.removed = [name for name in state.written.runs if name not in live]
    for run_id in [r for r in state.run_specs if r not in engine.runs]:
        del state.run_specs[run_id]
    used = {SPEC + digest for _, digest in state.run_specs.values()}
    plan.removed += [name for name in state.written.specs if name not in used]
    now = time.monotonic()
    plan.longest_slice = max(plan.longest_slice, now - slice_start)
    plan.encode_seconds = now - t0
    return plan


def spec_blob(state: PartitionState, plan: Plan, run_id: str, pipeline: Op) -> str:
    """The digest of the run's compiled pipeline; its ``spec:`` blob goes into ``plan`` unless
    the last snapshot (or this one) already holds it. Runs of one pipeline share one blob:
    restore decodes it once (it was about half of every run blob's bytes)."""
    known = state.run_specs.get(run_id)
    if known is not None and known[0] is pipeline:
        digest = known[1]
        name = SPEC + digest
        if name in state.written.specs or name in plan.blobs:
            return digest
    encoded = _encoder.encode(pipeline)
    digest = hashlib.sha256(encoded).hexdigest()[:32]
    state.run_specs[run_id] = (pipeline, digest)
    name = SPEC + digest
    if name not in state.written.specs and name not in plan.blobs:
        plan.blobs[name] = frames([encoded])
    return digest


def next_index(state: PartitionState, plan: Plan, refs: dict[str, wire.BlobRef]) -> wire.SnapshotIndex:
    removed = set(plan.removed)
    runs = {n: r for n, r in state.written.runs.items() if n not in removed}
    specs = {n: r for n, r in state.written.specs.items() if n not in removed}
    daemon = state.written.daemon
    for name, ref in refs.items():
        if name == DAEMON:
            daemon = ref
        elif name.startswith(SPEC):
            specs[name] = ref
        else:
            runs[name] = ref
    return wire.SnapshotIndex(runs=runs, daemon=daemon, specs=specs)


def superseded(state: PartitionState, plan: Plan) -> list[tuple[str, wire.BlobRef]]:
    """Blobs of the last snapshot that the new index no longer names (their chunks get tombstones).
    A ``spec:`` blob is never rewritten (its name is its content), only dropped when unused."""
    old = state.written
    named = {**old.runs, **old.specs}
    out = [(n, named[n]) for n in plan.removed]
    out += [(n, old.runs[n]) for n in plan.blobs if n in old.runs]
    if DAEMON in plan.blobs and old.daemon is not None:
        out.append((DAEMON, old.daemon))
    return out


def committed(state: PartitionState, plan: Plan, index: wire.SnapshotIndex, index_ref: wire.BlobRef,
              *, clear_dirty: bool = True) -> None:
    """The snapshot's transaction committed: it is what the next one builds on. (A snapshot
    written in the background took its changed runs out of ``dirty`` when it started; the runs
    in ``dirty`` now changed after its offset.)"""
    state.written = index
    state.written_seq = plan.seq
    state.written_index = index_ref
    daemon = plan.blobs.get(DAEMON)
    if daemon is not None:
        state.written_daemon = bytes(read_frames(daemon)[0])
    if clear_dirty:
        state.dirty.clear()


def decode_index(blob: bytes) -> wire.SnapshotIndex:
    return _index_decoder.decode(read_frames(blob)[0])


def restore_blobs(head: wire.SnapshotHead, index: wire.SnapshotIndex, index_ref: wire.BlobRef,
                  blobs: dict[str, bytes], *, compiler: Compiler, limits: Limits | None = None) -> PartitionState:
    """The partition's state from its blobs (in a worker thread: seconds of CPU for a million ops)."""
    paused = gc.isenabled()
    gc.disable()  # millions of small acyclic objects: a collection every few thousand is 3x slower
    try:
        engine = Engine(limits)
        attempts: dict[str, wire.RunAttempts] = {}
        # each distinct compiled pipeline decoded once and shared by its runs (it is frozen)
        specs = {name.removeprefix(SPEC): _spec_decoder.decode(read_frames(blobs.pop(name))[0])
                 for name in index.specs}
        run_specs: dict[str, tuple[Any, str]] = {}
        for name in index.runs:
            parts = read_frames(blobs.pop(name))
            a = _attempts_decoder.decode(parts[0])
            run_id = name.removeprefix("run:")
            if a.spec:
                if a.spec not in specs:
                    raise SnapshotMissing(f"run blob {name} names spec:{a.spec}, which the index does not hold")
                pipeline = specs[a.spec]
                engine.restore_run(parts[1:1 + a.parts], pipeline=pipeline)
                run_specs[run_id] = (pipeline, a.spec)
            else:
                engine.restore_run(parts[1:1 + a.parts])  # written before spec blobs
            attempts[run_id] = a
        daemon_raw = blobs.get(DAEMON)
        daemon = _daemon_decoder.decode(read_frames(daemon_raw)[0]) if daemon_raw else wire.DaemonBlob()
        state = PartitionState.from_blobs(head.partition, engine=engine, daemon=daemon, attempts=attempts,
                                          compiler=compiler)
        state.written = index
        state.written_seq = head.seq
        state.written_index = index_ref
        state.run_specs = run_specs
        state.written_daemon = bytes(read_frames(daemon_raw)[0]) if daemon_raw else None
        return state
    finally:
        if paused:
            gc.enable()


def legacy_restore(data: bytes, *, compiler: Compiler, limits: Limits | None = None) -> tuple[int, float, PartitionState]:
    """A format-1 record: (offset, time, state); every run counts as changed, so the next
    snapshot writes the partition in format 2."""
    paused = gc.isenabled()
    gc.disable()
    try:
        snap = wire.decode_snapshot(data)
        return snap.offset, snap.time, PartitionState.restore(snap, compiler=compiler, limits=limits)
    finally:
        if paused:
            gc.enable()


def size_of(index: wire.SnapshotIndex) -> int:
    return (sum(r.size for r in index.runs.values()) + sum(r.size for r in index.specs.values())
            + (index.daemon.size if index.daemon else 0))


class Loaded(NamedTuple):
    """A partition's latest snapshot, restored: the state, the input offset it covers up to,
    when it was written, its size in bytes (all live blobs), its format and the handling
    marker written after it (raw, or None)."""

    state: PartitionState | None
    offset: int
    time: float
    size: int
    format: int
    marker: bytes | None
    # seconds spent reading the records, and decoding + rebuilding the state
    read_seconds: float = 0.0
    restore_seconds: float = 0.0


async def load(store: SnapshotStore, partition: int, *, compiler: Compiler, limits: Limits | None = None) -> Loaded:
    """Read and restore the latest snapshot of ``partition`` (either format). Decoding and
    restoring run in a worker thread, so the event loop keeps heartbeating meanwhile."""
    t0 = time.monotonic()
    data, marker = await store.load_tail(partition)
    if data is None:
        return Loaded(None, 0, 0.0, 0, 0, marker)
    if wire.snapshot_format(data) == 1:
        t1 = time.monotonic()
        offset, at, state = await anyio.to_thread.run_sync(
            lambda: legacy_restore(data, compiler=compiler, limits=limits))
        return Loaded(state, offset, at, len(data), 1, marker, t1 - t0, time.monotonic() - t1)
    head = wire.decode_head(data)
    index_blob = (await store.read_blobs(partition, {INDEX: head.index}))[INDEX]
    index = decode_index(index_blob)
    refs = {**index.specs, **index.runs}
    if index.daemon is not None:
        refs[DAEMON] = index.daemon
    blobs = await store.read_blobs(partition, refs)
    t1 = time.monotonic()
    state = await anyio.to_thread.run_sync(
        lambda: restore_blobs(head, index, head.index, blobs, compiler=compiler, limits=limits))
    return Loaded(state, head.offset, head.time, size_of(index) + head.index.size, 2, marker,
                  t1 - t0, time.monotonic() - t1)

async def write(p: Any, topic: str, state: PartitionState, plan: Plan, offset: int,
                *, at: float | None = None) -> tuple[wire.SnapshotIndex, wire.BlobRef]:
    """Inside the caller's transaction (producer ``p``): the changed blobs' chunks, the new
    index, tombstones for the chunks it no longer names, and the head last (``at``: when the
    state was taken, default now). Returns the new index and where it is, for ``committed``
    once the transaction commits."""
    n, seq = state.partition, plan.seq

    async def put(name: str, blob: bytes) -> wire.BlobRef:
        futures: list[Any] = []
        for i, chunk in enumerate(chunks(blob)):
            if i == 1 and faults.CRASH_POINTS:
                # tests: a kill with the first chunk of a blob on the broker, the rest and the
                # head not written (tests/integration/test_daemon_snapshots.py)
                await futures[0]
                crash_point("snapshot_between_chunks", f"partition {n}")  # once per partition
            futures.append(await p.send(topic, chunk, key=blob_key(n, seq, name, i), partition=n))
        return wire.BlobRef(seq=seq, size=len(blob), offsets=[(await f).offset for f in futures])

    refs: dict[str, wire.BlobRef] = {}
    for name, blob in plan.blobs.items():
        refs[name] = await put(name, blob)
    index = next_index(state, plan, refs)
    index_ref = await put(INDEX, frames([_encoder.encode(index)]))
    old = superseded(state, plan)
    if state.written_index is not None:
        old.append((INDEX, state.written_index))
    for name, ref in old:
        for i in range(len(ref.offsets)):
            await p.send(topic, None, key=blob_key(n, ref.seq, name, i), partition=n)
    head = wire.SnapshotHead(partition=n, offset=offset, time=time.time() if at is None else at, seq=seq, index=index_ref)
    await p.send(topic, wire.encode_head(head), key=str(n).encode(), partition=n)
    return index, index_ref
