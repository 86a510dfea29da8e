"""The snapshot store: atomic replacement, round trip, run ids."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flowd.engine.messages import StartOp
from flowd.runtime import store as store_mod
from flowd.runtime.store import RunRecord, SnapshotStore, StoreError, default_state_dir, derive_run_id


def record(engine: bytes = b"state", **fields: object) -> RunRecord:
    return RunRecord(run_id="flowd-abc", file="/x.yaml", file_sha256="00", params={"a": "1"}, engine=engine, **fields)  # type: ignore[arg-type]


def test_round_trip(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    start = StartOp(run_id="flowd-abc", path="a", attempt=1, key="k", kind="job", params={"x": 1}, run={"container": {}})
    saved = record(attempts={"k": start}, stopping=["k"], timers={"t": 12.5}, done=None)
    store.save(saved)
    assert store.load("flowd-abc") == saved
    assert store.load("flowd-other") is None


def test_a_failed_write_leaves_the_previous_snapshot_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = SnapshotStore(tmp_path)
    store.save(record(b"old"))

    def crash(fd: int) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(store_mod.os, "fsync", crash)
    with pytest.raises(StoreError, match="disk on fire"):
        store.save(record(b"new" * 100_000))
    monkeypatch.undo()
    assert store.load("flowd-abc").engine == b"old"  # type: ignore[union-attr]


def test_write_is_temp_file_then_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = SnapshotStore(tmp_path)
    store.save(record(b"old"))
    seen: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        # at rename time the new bytes are complete in the temp file, the target still old
        assert store_mod.msgspec.msgpack.decode(Path(src).read_bytes(), type=RunRecord).engine == b"new"
        assert store.load("flowd-abc").engine == b"old"  # type: ignore[union-attr]
        seen.append((str(src), str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(store_mod.os, "replace", spy)
    store.save(record(b"new"))
    assert len(seen) == 1 and seen[0][1].endswith("snapshot.bin")
    assert [p.name for p in store.run_dir("flowd-abc").iterdir()] == ["snapshot.bin"]


def test_a_corrupt_snapshot_is_a_clear_error(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    store.save(record())
    (store.run_dir("flowd-abc") / "snapshot.bin").write_bytes(b"\x00garbage")
    with pytest.raises(StoreError, match=r"unreadable.*without --resume"):
        store.load("flowd-abc")


def test_discard_forgets_the_run(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    store.save(record())
    store.discard("flowd-abc")
    assert store.load("flowd-abc") is None


def test_run_id_depends_on_absolute_path_and_params_not_their_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    a = derive_run_id(Path("p.yaml"), {"x": "1", "y": "2"})
    assert a == derive_run_id(tmp_path / "p.yaml", {"y": "2", "x": "1"})
    assert a != derive_run_id(tmp_path / "p.yaml", {"x": "1", "y": "3"})
    assert a != derive_run_id(tmp_path / "q.yaml", {"x": "1", "y": "2"})
    assert a.startswith("flowd-") and len(a) == len("flowd-") + 16


def test_default_state_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FLOWD_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_state_dir() == tmp_path / "flowd" / "state"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_state_dir() == Path.home() / ".cache" / "flowd" / "state"
    monkeypatch.setenv("FLOWD_STATE_DIR", str(tmp_path / "s"))
    assert default_state_dir() == tmp_path / "s"


def test_a_run_is_held_by_one_process_at_a_time(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    with store.lock("flowd-abc"):
        with pytest.raises(StoreError, match=f"another flowd process \\(pid {os.getpid()}\\)"), store.lock("flowd-abc"):
            pass
        with store.lock("flowd-other"):
            pass
    with store.lock("flowd-abc"):
        pass
