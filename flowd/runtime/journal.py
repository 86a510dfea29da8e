"""A run's journal: the batches of events the driver fed to the engine since the last snapshot.

``runs/<run_id>/journal.bin`` is a sequence of frames, appended and never rewritten::

    frame = length (u32 LE) | crc32 of payload (u32 LE) | payload (msgpack JournalEntry)

Each entry is one driver batch, numbered: ``seq`` is one more than the entry before it, and the
snapshot (``snapshot.bin``) says up to which ``seq`` it already holds. The engine is pure, so the
state after a batch is the state before it plus the batch's events: ``snapshot + entries with
seq > snapshot.seq``, replayed in order, is the state of the run (flowd.runtime.replay).

Why frames with a checksum: a ``kill -9`` (or a power cut) in the middle of an append leaves a
torn last frame. A reader stops at the first frame that is short or whose checksum does not
match and ignores everything from there; the driver of a resumed run writes a snapshot before
it appends anything, and that empties the journal, so a torn tail is never followed by a good
frame.

Persisting one batch costs a write and an ``fdatasync`` of that batch's bytes: it does not
depend on how big the run is. The snapshot is rewritten only when the journal has grown to the
snapshot's size (or :data:`COMPACT_MIN_BYTES`), so its cost, spread over the entries that made
the journal that long, is a constant per entry too.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import msgspec

from flowd.engine import Event
from flowd.faults import CRASH_AT, crash_point

__all__ = ["COMPACT_MIN_BYTES", "JournalEntry", "JournalFile", "encode_entry", "read_journal"]

# compaction waits at least until the journal holds this much: small runs are then one snapshot
# at the start, appends, and one snapshot at the end
COMPACT_MIN_BYTES = 4 << 20

_HEADER = struct.Struct("<II")


class JournalEntry(msgspec.Struct, array_like=True):
    """One driver batch: the events handed to ``Engine.handle``, in order."""

    seq: int
    events: list[Event]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(JournalEntry)


def encode_entry(entry: JournalEntry) -> bytes:
    payload = _encoder.encode(entry)
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def read_journal(path: Path) -> tuple[list[JournalEntry], int, bool]:
    """(entries, bytes of whole good frames, whether a torn/corrupt tail was ignored). A missing
    file is an empty journal."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0, False
    entries: list[JournalEntry] = []
    offset = 0
    view = memoryview(data)
    while offset < len(data):
        if offset + _HEADER.size > len(data):
            return entries, offset, True
        length, crc = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        payload = view[start : start + length]
        if len(payload) < length or zlib.crc32(payload) != crc:
            return entries, offset, True
        try:
            entries.append(_decoder.decode(payload))
        except msgspec.DecodeError:
            return entries, offset, True
        offset = start + length
    return entries, offset, False


def torn_write_armed() -> bool:
    wanted = os.environ.get(CRASH_AT) or ""
    return "run.journal_torn" in wanted.split(",")


class JournalFile:
    """The appending side. Blocking calls: the driver runs them in a worker thread
    (``anyio.to_thread``), one at a time, so the event loop never waits on the disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self.size = 0

    def _open(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self.size = os.fstat(self._fd).st_size
        return self._fd

    def append(self, frame: bytes, *, key: str = "") -> None:
        """Write one frame and make it durable (data only: the file's size is data too)."""
        fd = self._open()
        view = memoryview(frame)
        if torn_write_armed():
            # tests only: half the frame on disk, then kill -9 (a torn last frame for the reader)
            half = len(frame) // 2
            os.write(fd, view[:half])
            os.fdatasync(fd)
            crash_point("run.journal_torn", key)
            view = view[half:]
        while view:
            view = view[os.write(fd, view) :]
        os.fdatasync(fd)
        self.size += len(frame)

    def clear(self) -> None:
        """Empty the journal: everything in it is in the snapshot just written."""
        fd = self._open()
        os.ftruncate(fd, 0)
        os.fsync(fd)
        self.size = 0

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
