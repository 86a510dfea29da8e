"""The S3 artifact store against a real S3-compatible server (gofakes3, tests/infra/s3.py)."""

from __future__ import annotations

import pytest

from flowd.artifacts import ArtifactStoreError, StoreConfig, open_store
from tests.artifacts_contract import check_prefixes_are_whole, check_refusals, check_round_trip

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


def _store(s3_server, monkeypatch, prefix: str):
    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)  # credentials come from the environment, as in a deployment
    return open_store(StoreConfig(url=f"s3://{s3_server.bucket}/{prefix}", endpoint=s3_server.endpoint),
                      default_folder=None)


async def test_round_trip(s3_server, tmp_path, monkeypatch):
    await check_round_trip(_store(s3_server, monkeypatch, "rt"), tmp_path)


async def test_prefixes_are_whole(s3_server, tmp_path, monkeypatch):
    await check_prefixes_are_whole(_store(s3_server, monkeypatch, "pw"), tmp_path)


async def test_refusals(s3_server, tmp_path, monkeypatch):
    await check_refusals(_store(s3_server, monkeypatch, "rf"), tmp_path)


async def test_store_prefixes_keep_deployments_apart(s3_server, tmp_path, monkeypatch):
    a, b = _store(s3_server, monkeypatch, "team-a"), _store(s3_server, monkeypatch, "team-b")
    (tmp_path / "f").write_text("a")
    await a.put("run-1/op", tmp_path / "f")
    assert await b.list("run-1") == []
    assert [o.key for o in await a.list("run-1")] == ["run-1/op/f"]


async def test_an_unknown_bucket_is_a_clear_error(s3_server, tmp_path, monkeypatch):
    store = open_store(StoreConfig(url="s3://no-such-bucket/x", endpoint=s3_server.endpoint), default_folder=tmp_path)
    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    (tmp_path / "f").write_text("a")
    with pytest.raises(ArtifactStoreError, match="s3://no-such-bucket/x/run-1/op/f"):
        await store.put("run-1/op", tmp_path / "f")
