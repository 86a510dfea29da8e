"""Local run store: one run's saved state under the state dir, a snapshot plus a journal.

Layout of a state dir (``--state-dir``)::

    runs/<key>.lock         held (flock) by the flowd process running a run of this key
    runs/<key>.latest       the id of the latest run of this key (what ``--resume`` continues)
    runs/<run_id>/          one per run, kept until ``flowd gc``/``flowd rm`` removes it
        snapshot.bin        the RunRecord below (msgspec msgpack), replaced atomically
        journal.bin         the batches of events since that snapshot (flowd.runtime.journal)
        work/               the run's working directory (cwd of every op process)
        attempts/<op>@<n>/  stdout.log, stderr.log, outputs.json, pid.json, result.json

The state of a run is its snapshot plus the journal's entries after it, replayed through the
engine (flowd.runtime.replay). Each batch is appended to the journal *before* its commands are
carried out (write-ahead), so after a ``kill -9`` the saved state never lags behind what the
executor was told to do: every attempt the executor may have started is in ``attempts`` after
the replay, every timer in ``timers``. The snapshot is rewritten only now and then (compaction).

A snapshot write is ``open(tmp) + write + fsync + rename + fsync(dir)``: a reader sees the old
record or the new one, never a torn file. This module does no engine work and knows no op
semantics.

State dirs of earlier releases hold ``snapshot.bin`` alone (record version 1): they read as a
snapshot with an empty journal.

A *key* names what is run (``flowd-`` + hash of the absolute file path and the params); each
plain ``flowd run`` of it is a new *run* ``<key>-<n>`` (n = 1, 2, ...), so a re-run never deletes
an earlier run's logs and state.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import msgspec

from flowd.engine import StartOp

__all__ = ["RunRecord", "SnapshotStore", "StoreError", "default_state_dir", "derive_run_id", "key_of"]

RECORD_VERSION = 2
# versions this release reads: 1 (a snapshot only, earlier releases) and 2 (snapshot + journal)
READABLE_VERSIONS = frozenset({1, 2})


class StoreError(Exception):
    """The saved state cannot be read or written (bad file, wrong version, I/O error)."""


class RunRecord(msgspec.Struct, kw_only=True):
    """Everything ``--resume`` needs besides the processes themselves."""

    version: int = RECORD_VERSION
    run_id: str
    file: str
    file_sha256: str
    params: dict[str, str]
    engine: bytes
    # attempts the executor was told to start and that have not reported a terminal status yet
    attempts: dict[str, StartOp] = {}
    # keys of those attempts the engine asked to stop
    stopping: list[str] = []
    # pending timers: timer_id -> epoch seconds
    timers: dict[str, float] = {}
    # set once PipelineDone was seen: the final status
    done: str | None = None
    # the key this run belongs to (see the module docstring), the pipeline's name and when the
    # run was created (epoch seconds): what ``flowd runs`` lists without restoring the engine
    key: str = ""
    pipeline: str = ""
    created_at: float = 0.0
    # the last journal entry (driver batch) this snapshot holds; entries after it are replayed
    seq: int = 0


def default_state_dir() -> Path:
    """``$FLOWD_STATE_DIR``, else ``$XDG_CACHE_HOME/flowd/state``, else ``~/.cache/flowd/state``."""
    env = os.environ.get("FLOWD_STATE_DIR")
    if env:
        return Path(env)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "flowd" / "state"


def derive_run_id(file: Path, params: dict[str, str]) -> str:
    """The run of ``flowd run FILE --param ...``: the same absolute file path and the same params
    (in any order) name the same run, so ``--resume`` finds it without being told an id."""
    blob = json.dumps([str(file.resolve()), sorted(params.items())], separators=(",", ":"))
    return "flowd-" + hashlib.sha256(blob.encode()).hexdigest()[:16]


def key_of(run_id: str) -> str:
    """``flowd-<hash>-<n>`` -> ``flowd-<hash>`` (a run id without a number is its own key)."""
    head, _, tail = run_id.rpartition("-")
    return head if tail.isdigit() and head.count("-") >= 1 else run_id


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


class SnapshotStore:
    """Saves and loads one :class:`RunRecord` per run id under ``root/runs/<run_id>/``."""

    def __init__(self, root: Path) -> None:
        # absolute: op processes run in the run's work dir, and their FLOWD_OUTPUTS must still point here
        self.root = Path(root).absolute()
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(RunRecord)

    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id

    def _path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "snapshot.bin"

    def snapshot_path(self, run_id: str) -> Path:
        return self._path(run_id)

    def journal_path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "journal.bin"

    def encode(self, record: RunRecord) -> bytes:
        """The snapshot's bytes (taken in the event loop: the record is not thread-safe)."""
        return self._encoder.encode(record)

    def write(self, run_id: str, data: bytes) -> None:
        """Replace the snapshot with ``data`` (blocking: the driver calls it from a worker thread)."""
        path = self._path(run_id)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, data)
        except OSError as exc:
            raise StoreError(f"cannot write the run's state to {path}: {exc}") from exc

    def save(self, record: RunRecord) -> None:
        self.write(record.run_id, self.encode(record))

    def load(self, run_id: str) -> RunRecord | None:
        """The saved record, or None when this run has never been saved."""
        path = self._path(run_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read the run's state from {path}: {exc}") from exc
        try:
            record = self._decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise StoreError(f"the run's state in {path} is unreadable ({exc}); run without --resume") from exc
        if record.version not in READABLE_VERSIONS:
            raise StoreError(f"the run's state in {path} has version {record.version}, expected one of "
                             f"{', '.join(map(str, sorted(READABLE_VERSIONS)))} (written by a newer flowd?)")
        return record

    def discard(self, run_id: str) -> None:
        """Forget a run entirely: its state, work dir and logs (``flowd rm``, ``flowd gc``)."""
        shutil.rmtree(self.run_dir(run_id), ignore_errors=True)

    # ----------------------------------------------------------------- runs of a key

    def run_ids(self) -> list[str]:
        """Every saved run of this state dir (a directory with a snapshot), oldest first (by the
        last write to its snapshot or journal)."""
        base = self.root / "runs"
        found = []
        for p in base.glob("*/snapshot.bin"):
            try:
                changed = p.stat().st_mtime
            except OSError:
                continue  # removed meanwhile (flowd rm, gc)
            with contextlib.suppress(OSError):
                changed = max(changed, (p.parent / "journal.bin").stat().st_mtime)
            found.append((changed, p.parent.name))
        return [run_id for _, run_id in sorted(found)]

    def latest(self, key: str) -> str | None:
        """The latest run of ``key`` (what ``--resume`` continues), or None."""
        try:
            run_id = (self.root / "runs" / f"{key}.latest").read_text().strip()
        except OSError:
            run_id = ""
        if run_id and self._path(run_id).exists():
            return run_id
        # state dirs written before runs were numbered: the key itself was the run
        return key if self._path(key).exists() else None

    def new_run_id(self, key: str) -> str:
        """The next run of ``key``: ``<key>-<n>`` with n one more than any run of it so far."""
        base = self.root / "runs"
        numbers = [int(p.name.rpartition("-")[2]) for p in base.glob(f"{key}-*") if p.name.rpartition("-")[2].isdigit()]
        run_id = f"{key}-{max(numbers, default=0) + 1}"
        try:
            self.run_dir(run_id).mkdir(parents=True, exist_ok=False)
            write_atomic(base / f"{key}.latest", run_id.encode())
        except OSError as exc:
            raise StoreError(f"cannot create the run's directory {self.run_dir(run_id)}: {exc}") from exc
        return run_id

    def resolve(self, ref: str) -> str | None:
        """A run id from what a user typed: the id itself, a key (its latest run), a unique
        prefix of an id, or ``last`` (the most recently changed run)."""
        if ref == "last":
            ids = self.run_ids()
            return ids[-1] if ids else None
        if self._path(ref).exists():
            return ref
        latest = self.latest(ref)
        if latest is not None:
            return latest
        matches = [run_id for run_id in self.run_ids() if run_id.startswith(ref)]
        return matches[0] if len(matches) == 1 else None

    def is_active(self, run_id: str) -> bool:
        """A flowd process holds this run's key right now (the run is going on)."""
        path = self.root / "runs" / f"{key_of(run_id)}.lock"
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    @contextlib.contextmanager
    def lock(self, run_id: str) -> Iterator[None]:
        """Hold the run for this process: a second flowd on the same run fails at once instead
        of racing the first one. The kernel drops the lock when the holder dies (even kill -9)."""
        path = self.root / "runs" / f"{run_id}.lock"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot create {path}: {exc}") from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                raise StoreError(f"run {run_id} is being run by another flowd process (pid {holder})") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield
        finally:
            os.close(fd)
