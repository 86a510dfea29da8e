from __future__ import annotations

import pytest

from flowd.artifacts import ArtifactStoreError, FolderStore, StoreConfig, open_store
from tests.artifacts_contract import check_prefixes_are_whole, check_refusals, check_round_trip


async def test_round_trip(tmp_path):
    await check_round_trip(FolderStore(tmp_path / "store"), tmp_path)


async def test_prefixes_are_whole(tmp_path):
    await check_prefixes_are_whole(FolderStore(tmp_path / "store"), tmp_path)


async def test_refusals(tmp_path):
    await check_refusals(FolderStore(tmp_path / "store"), tmp_path)


def test_adopt_renames_the_directory_in_place(tmp_path):
    store = FolderStore(tmp_path / "store")
    src = tmp_path / "staging"
    (src / "d").mkdir(parents=True)
    (src / "d" / "w.bin").write_bytes(b"12345")
    inode = (src / "d" / "w.bin").stat().st_ino
    moved = store.adopt("run-1/train", src)
    assert (moved.files, moved.bytes) == (1, 5)
    target = store.local_path("run-1/train") / "d" / "w.bin"
    assert target.read_bytes() == b"12345" and target.stat().st_ino == inode  # no copy
    assert not src.exists()
    # a retried attempt replaces the earlier files
    (src / "new").mkdir(parents=True)
    (src / "new" / "x").write_text("x")
    store.adopt("run-1/train", src)
    assert sorted(p.name for p in store.local_path("run-1/train").iterdir()) == ["new"]


def test_symlinks_out_of_the_tree_are_refused(tmp_path):
    (tmp_path / "secret").write_text("s")
    src = tmp_path / "src"
    src.mkdir()
    (src / "link").symlink_to(tmp_path / "secret")
    with pytest.raises(ArtifactStoreError, match="symbolic link"):
        FolderStore(tmp_path / "store").adopt("r/o", src)


def test_open_store_reads_urls(tmp_path):
    assert open_store(StoreConfig(), default_folder=tmp_path).local_path("") == tmp_path
    assert open_store(StoreConfig(url=f"file://{tmp_path}/x"), default_folder=tmp_path).local_path("") == tmp_path / "x"
    assert open_store(StoreConfig(url=str(tmp_path / "y")), default_folder=tmp_path).local_path("") == tmp_path / "y"
    s3 = open_store(StoreConfig(url="s3://bucket/some/prefix", endpoint="http://127.0.0.1:1"), default_folder=tmp_path)
    assert s3.location("run-1/op") == "s3://bucket/some/prefix/run-1/op" and s3.local_path("") is None
    with pytest.raises(ArtifactStoreError, match="unsupported scheme 'gs'"):
        open_store(StoreConfig(url="gs://b"), default_folder=tmp_path)
    with pytest.raises(ArtifactStoreError, match="needs a bucket"):
        open_store(StoreConfig(url="s3:///x"), default_folder=tmp_path)


def test_config_from_env_and_flags():
    env = {"FLOWD_ARTIFACTS_STORE": "s3://b/p", "FLOWD_ARTIFACTS_ENDPOINT": "http://h:1"}
    assert StoreConfig.from_env(env) == StoreConfig(url="s3://b/p", endpoint="http://h:1")
    assert StoreConfig.from_env(env, url="/tmp/x", endpoint=None).url == "/tmp/x"
