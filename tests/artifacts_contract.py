"""The Store contract, run against every implementation (tests/unit/artifacts: the folder store;
tests/integration/test_artifacts_s3.py: S3 against a real server)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flowd.artifacts import ArtifactStoreError, Store


def make_tree(root: Path) -> dict[str, bytes]:
    files = {"model.bin": os.urandom(3_000_000), "metrics/loss.csv": b"step,loss\n1,0.5\n",
             "deep/a/b/c.txt": b"c", "empty": b""}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


async def check_round_trip(store: Store, tmp: Path) -> None:
    files = make_tree(tmp / "src")
    moved = await store.put("run-1/train", tmp / "src")
    assert (moved.files, moved.bytes) == (len(files), sum(len(v) for v in files.values()))
    listed = await store.list("run-1/train")
    assert [o.key for o in listed] == sorted(f"run-1/train/{k}" for k in files)
    assert {o.key: o.size for o in listed} == {f"run-1/train/{k}": len(v) for k, v in files.items()}
    got = await store.get("run-1/train", tmp / "out")
    assert got.files == len(files)
    for rel, data in files.items():
        assert (tmp / "out" / rel).read_bytes() == data
    # a single file lands under its own name
    (tmp / "one.txt").write_text("one")
    await store.put("run-1/eval", tmp / "one.txt")
    assert [o.key for o in await store.list("run-1/eval")] == ["run-1/eval/one.txt"]


async def check_prefixes_are_whole(store: Store, tmp: Path) -> None:
    (tmp / "f").write_text("x")
    await store.put("run-1/a", tmp / "f")
    await store.put("run-10/a", tmp / "f")
    assert [o.key for o in await store.list("run-1")] == ["run-1/a/f"]
    assert "run-1" in await store.children("") and "run-10" in await store.children("")
    assert await store.children("run-1") == ["a"]
    assert await store.delete("run-1") == 1
    assert await store.list("run-1") == []
    assert [o.key for o in await store.list("run-10")] == ["run-10/a/f"]
    assert await store.delete("run-1") == 0  # deleting nothing is fine


async def check_refusals(store: Store, tmp: Path) -> None:
    with pytest.raises(ArtifactStoreError, match="no artifacts"):
        await store.get("nothing/here", tmp / "out")
    for bad in ("../x", "a/../../b", "a//b"):
        with pytest.raises(ArtifactStoreError, match="invalid artifact key"):
            await store.list(bad)
    with pytest.raises(ArtifactStoreError, match="whole store"):
        await store.delete("")
