"""The run journal: frames, torn tails, compaction races, replay equal to the live state, and the
state dirs of the previous release (snapshot.bin only, record version 1)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from flowd.engine.core import Engine
from flowd.engine.messages import OpStatus, Submit
from flowd.runtime.driver import Driver
from flowd.runtime.history import list_runs
from flowd.runtime.journal import JournalEntry, JournalFile, encode_entry, read_journal
from flowd.runtime.replay import restore_run
from flowd.runtime.store import RunRecord, SnapshotStore
from tests.unit.engine.build import dag, job

ROOT = Path(__file__).resolve().parents[3]
PREVIOUS_RELEASE = ROOT / "tests" / "fixtures" / "state-v1"


class Quiet:
    def status(self, change: object) -> None:
        pass

    def note(self, text: str) -> None:
        pass


def entry(seq: int, path: str) -> JournalEntry:
    return JournalEntry(seq=seq, events=[OpStatus(run_id="r", path=path, attempt=1, status="running", time=1.0)])


def test_every_cut_through_the_last_frame_reads_as_the_frames_before_it(tmp_path: Path) -> None:
    path = tmp_path / "journal.bin"
    journal = JournalFile(path)
    frames = [encode_entry(entry(i, f"op{i}")) for i in (1, 2, 3)]
    for frame in frames:
        journal.append(frame)
    journal.close()
    whole = path.read_bytes()
    entries, good, torn = read_journal(path)
    assert [e.seq for e in entries] == [1, 2, 3] and good == len(whole) and not torn
    start = len(frames[0]) + len(frames[1])
    for cut in range(start + 1, len(whole)):  # a kill -9 anywhere inside the append of frame 3
        path.write_bytes(whole[:cut])
        entries, good, torn = read_journal(path)
        assert [e.seq for e in entries] == [1, 2] and good == start and torn, cut
    # a corrupt byte inside a frame (not a cut): the same, that frame and what follows are ignored
    broken = bytearray(whole)
    broken[start + 12] ^= 0xFF
    path.write_bytes(bytes(broken))
    assert [e.seq for e in read_journal(path)[0]] == [1, 2]
    # zeros where the filesystem grew the file but the data never came
    path.write_bytes(whole[:start] + b"\0" * 64)
    assert [e.seq for e in read_journal(path)[0]] == [1, 2]


def chain(n: int):
    return dag("p", [job(f"s{i}", upstream=[f"s{i - 1}"] if i else [], command=["true"]) for i in range(n)])


async def run_to_end(store: SnapshotStore, pipeline, run_id: str = "run-1") -> Driver:
    record = RunRecord(run_id=run_id, file="f.yaml", file_sha256="", params={}, engine=b"")
    driver = Driver(Engine(), record=record, store=store, progress=Quiet(), grace=1.0, handle_signals=False)
    with anyio.fail_after(30):
        await driver.run([Submit(run_id=run_id, pipeline=pipeline, time=time.time())])
    return driver


async def test_a_run_appends_batches_and_snapshots_only_at_its_start_and_end(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    driver = await run_to_end(store, chain(5))
    assert driver.stats["snapshots"] == 2  # the first batch and the pipeline done
    assert driver.stats["appends"] == driver.stats["batches"] - 2 >= 5
    # the final snapshot holds everything: the journal is empty, the run reads as succeeded
    assert store.journal_path("run-1").stat().st_size == 0
    restored = restore_run(store, "run-1")
    assert restored is not None and restored.replayed == 0
    assert restored.record.done == "succeeded" and restored.engine.view("run-1").status == "succeeded"


async def test_snapshot_plus_journal_replays_to_the_live_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader in the middle of a run (the UI, flowd runs): stop persisting the final snapshot
    and compare the replayed state with what the driver had."""
    store = SnapshotStore(tmp_path)
    monkeypatch.setattr("flowd.runtime.driver.COMPACT_MIN_BYTES", 1 << 30)
    seen: list[tuple[int, bytes, dict]] = []

    class Watching(Driver):
        def _append(self, frame: bytes) -> None:
            super()._append(frame)
            # what a reader sees right after this append: snapshot + journal replayed
            restored = restore_run(store, self.run_id)
            assert restored is not None
            seen.append((restored.record.seq, restored.engine.snapshot(), dict(restored.record.attempts)))

        async def _persist(self, batch, *, final: bool) -> None:
            await super()._persist(batch, final=final)
            if seen and seen[-1][0] == self._seq:
                live = (self._seq, self.engine.snapshot(), dict(self.record.attempts))
                assert seen[-1] == live

    record = RunRecord(run_id="run-1", file="f.yaml", file_sha256="", params={}, engine=b"")
    driver = Watching(Engine(), record=record, store=store, progress=Quiet(), grace=1.0, handle_signals=False)
    with anyio.fail_after(30):
        await driver.run([Submit(run_id="run-1", pipeline=chain(4), time=time.time())])
    assert len(seen) >= 4


async def test_compaction_when_the_journal_outgrows_the_snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("flowd.runtime.driver.COMPACT_MIN_BYTES", 1)

    class Tiny(Driver):  # as if the snapshot were 1 byte: any journal has outgrown it
        async def _persist(self, batch, *, final: bool) -> None:
            await super()._persist(batch, final=final)
            self._snapshot_bytes = 1

    store = SnapshotStore(tmp_path)
    record = RunRecord(run_id="run-1", file="f.yaml", file_sha256="", params={}, engine=b"")
    driver = Tiny(Engine(), record=record, store=store, progress=Quiet(), grace=1.0, handle_signals=False)
    with anyio.fail_after(30):
        await driver.run([Submit(run_id="run-1", pipeline=chain(8), time=time.time())])
    # append, then the journal is as big as "the snapshot": compact, append, compact...
    assert driver.stats["snapshots"] > 4 and driver.stats["appends"] >= 3
    restored = restore_run(store, "run-1")
    assert restored is not None and restored.engine.view("run-1").status == "succeeded"


def test_a_reader_racing_a_compaction_reads_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The snapshot is replaced between the reader's snapshot read and its journal read: the
    journal it then sees starts after a gap, and it reads both again."""
    store = SnapshotStore(tmp_path)
    engine = Engine()
    engine.handle(Submit(run_id="r", pipeline=chain(2), time=1.0))
    old = RunRecord(run_id="r", file="f", file_sha256="", params={}, engine=engine.snapshot(), seq=1)
    new = RunRecord(run_id="r", file="f", file_sha256="", params={}, engine=engine.snapshot(), seq=5)
    store.save(old)
    journal = JournalFile(store.journal_path("r"))
    journal.append(encode_entry(JournalEntry(seq=6, events=[])))  # what follows the new snapshot
    real_load = store.load
    calls = []

    def load(run_id: str):
        calls.append(run_id)
        record = real_load(run_id)
        if len(calls) == 1:
            store.save(new)  # the compaction lands right after the reader's snapshot read
        return record

    monkeypatch.setattr(store, "load", load)
    restored = restore_run(store, "r")
    assert restored is not None and restored.record.seq == 6 and len(calls) == 2


def flowd_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowd", *map(str, args)], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)


def test_a_state_dir_of_the_previous_release_is_listed_shown_and_resumed(tmp_path: Path) -> None:
    """tests/fixtures/state-v1 was written by the previous release (b3923f9): a finished run
    and a run killed with kill -9 while its op b slept (a succeeded, b in flight, c to come)."""
    state = tmp_path / "state"
    shutil.copytree(PREVIOUS_RELEASE, state)
    store = SnapshotStore(state)
    runs = {s.pipeline: s for s in list_runs(store)}
    assert runs["old-finished"].status == "succeeded" and runs["old-finished"].counts == {"succeeded": 1}
    killed = runs["old-release"]
    assert killed.status == "running" and killed.counts == {"succeeded": 1, "running": 1, "created": 1}
    restored = restore_run(store, killed.run_id)
    assert restored is not None and restored.record.version == 1 and restored.record.seq == 0
    assert [c.path for c in restored.record.attempts.values()] == ["b"]

    listed = flowd_cli("runs", "--state-dir", state, "--output", "json")
    assert listed.returncode == 0, listed.stderr
    logs = flowd_cli("logs", runs["old-finished"].run_id, "x", "--state-dir", state)
    assert logs.returncode == 0 and "hello-x" in logs.stdout, logs.stderr

    resumed = flowd_cli("resume", killed.run_id, "--state-dir", state)
    assert resumed.returncode == 0, resumed.stderr
    after = restore_run(store, killed.run_id)
    assert after is not None and after.record.done == "succeeded" and after.record.version == 2
    assert {p: op.status for p, op in after.engine.view(killed.run_id).ops.items() if p} == \
        {"a": "succeeded", "b": "succeeded", "c": "succeeded"}
    marks = (store.run_dir(killed.run_id) / "marks").read_text().split()
    assert marks == ["a", "b-start", "b-start", "b-end", "c"]  # a not re-run; b again from the start
