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


PIPELINE = """
version: 1.1
kind: component
name: s3-artifacts
run:
  kind: dag
  operations:
    - name: produce
      component:
        outputs: [{name: model, type: path}]
        run:
          kind: job
          container: {image: busybox, command: [sh, -c, 'head -c 1048576 /dev/urandom > "$FLOWD_ARTIFACTS/model"']}
    - name: consume
      params:
        model: {ref: ops.produce, value: outputs.model}
        base: {ref: ops.produce, value: artifacts.base}
      component:
        inputs: [{name: model, type: path}, {name: base, type: str}]
        run:
          kind: job
          container: {image: busybox, command: [sh, -c, 'echo {{ model }} {{ base }}']}
"""


async def test_flowd_run_keeps_artifacts_in_s3_and_gc_deletes_them(s3_server, tmp_path, monkeypatch):
    """Real processes, real S3 server: the producer's file is uploaded before its report, the
    consumer's refs name it, and `flowd gc` deletes it from the bucket once its run is gone."""
    import asyncio
    import json
    import os
    import subprocess
    import sys

    url = f"s3://{s3_server.bucket}/e2e"
    env = {**os.environ, **s3_server.env(), "FLOWD_ARTIFACTS_STORE": url}
    (tmp_path / "p.yaml").write_text(PIPELINE)

    def flowd(*args):
        return subprocess.run([sys.executable, "-m", "flowd", *args], capture_output=True, text=True, env=env,
                              timeout=60)

    proc = await asyncio.to_thread(flowd, "run", str(tmp_path / "p.yaml"), "--state-dir", str(tmp_path / "s"),
                                   "--no-cache", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    run_id = report["run_id"]
    assert report["ops"]["produce"]["outputs"]["model"] == f"{url}/{run_id}/produce/model"
    assert report["ops"]["consume"]["artifacts"]["consumed"][0]["run_id"] == run_id
    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    store = open_store(StoreConfig(url=url, endpoint=s3_server.endpoint), default_folder=tmp_path)
    assert [(o.key, o.size) for o in await store.list(run_id)] == [(f"{run_id}/produce/model", 1048576)]
    # no local copy was made: the folder store under the state dir is empty
    assert not (tmp_path / "s" / "artifacts").exists()
    proc = await asyncio.to_thread(flowd, "gc", "--state-dir", str(tmp_path / "s"), "--keep-days", "0",
                                   "--keep-last", "0")
    assert proc.returncode == 0 and f"removed artifacts of {run_id}" in proc.stdout, proc.stderr
    assert await store.list(run_id) == []


async def test_children_and_list_read_past_one_page(s3_server, monkeypatch):
    """S3 lists answer 1000 keys a page; gc must see every run, not the first page of them."""
    import asyncio

    import obstore

    store = _store(s3_server, monkeypatch, "pages")
    gate = asyncio.Semaphore(16)

    async def one(i):
        async with gate:
            await obstore.put_async(store._store, f"run-{i:05d}/x", b"x")

    await asyncio.gather(*(one(i) for i in range(1100)))
    assert len(await store.children("")) == 1100
    assert len(await store.list("")) == 1100
