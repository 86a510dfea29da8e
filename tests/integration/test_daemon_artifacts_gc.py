"""Artifacts under ``flowd serve`` and ``flowd gc --daemon`` against a real broker and a real S3
server (gofakes3): the daemon's local executor uploads each op's ``$FLOWD_ARTIFACTS`` to the
daemon's S3 store; a cache hit names the first run's files; gc deletes the artifacts of runs past
the retention and of old orphans, but keeps those a cache entry or a kept run's summary names,
and ``--dry-run`` deletes nothing."""

from __future__ import annotations

import uuid
from pathlib import Path

import anyio
import pytest

from flowd.artifacts import StoreConfig, open_store
from flowd.daemon.client import run_summaries
from flowd.daemon.testing import test_config
from tests.integration.test_daemon_cache import serving, submit

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.asyncio(loop_scope="session")]

SPEC = """
version: 1.1
kind: component
name: art
run:
  kind: dag
  operations:
    - name: produce
      params: {n: 1}
      component:
        inputs: [{name: n, type: int}]
        outputs: [{name: model, type: path}]
        run: {kind: job, container: {image: x, command: [sh, -c, 'echo w > "$FLOWD_ARTIFACTS/model"']}}
    - name: scratch
      cache: {disable: true}
      component:
        run: {kind: job, container: {image: x, command: [sh, -c, 'echo s > "$FLOWD_ARTIFACTS/x"']}}
"""


async def test_daemon_runs_store_artifacts_and_gc_keeps_what_is_referenced(kafka_broker, s3_server, tmp_path: Path,
                                                                          monkeypatch, capfd) -> None:
    from flowd.cli import main

    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)  # the daemon's credentials come from its environment
    monkeypatch.setenv("FLOWD_ARTIFACTS_STORE", "")  # restored after the daemon set it for its executor
    url = f"s3://{s3_server.bucket}/gcd-{uuid.uuid4().hex[:6]}"
    config = test_config(kafka_broker.bootstrap, name="artgc", state_dir=str(tmp_path), executor="local", cache=True,
                         artifacts_store=url, artifacts_endpoint=s3_server.endpoint)
    store = open_store(StoreConfig(url=url, endpoint=s3_server.endpoint), default_folder=tmp_path)
    async with serving(config) as (_daemon, events):
        run_ids = []
        for _ in range(3):
            run_ids.append(await submit(config, SPEC))
            assert (await events.wait_done(run_ids[-1])).status == "succeeded"
        first, second, third = run_ids
        summaries = await run_summaries(config)
        assert summaries[first].ops["produce"].outputs == {"model": f"{url}/{first}/produce/model"}
        # the later runs hit the cache: their outputs name the first run's file, nothing is copied
        assert summaries[third].ops["produce"].reason == "CacheHit"
        assert summaries[third].ops["produce"].outputs == {"model": f"{url}/{first}/produce/model"}
        assert sorted(await store.children("")) == sorted(run_ids)
        assert [o.key for o in await store.list(second)] == [f"{second}/scratch/x"]
        # an orphan: artifacts of a run the status topic no longer knows (forgotten earlier)
        (tmp_path / "o").write_text("o")
        await store.put("orphan-run/op", tmp_path / "o")

        capfd.readouterr()
        bus = ["--brokers", config.brokers, "--prefix", config.prefix]
        gc = ["gc", "--daemon", "--keep-days", "0", "--keep-last", "1", "--artifacts-store", url, *bus]
        assert await anyio.to_thread.run_sync(main, [*gc, "--dry-run"]) == 0
        out = capfd.readouterr()
        assert {ln for ln in out.out.splitlines() if "artifacts" in ln} == {
            "would remove artifacts of orphan-run", f"would remove artifacts of {second}"}
        assert f"kept artifacts of {first}" in out.err
        assert len(await store.children("")) == 4

        assert await anyio.to_thread.run_sync(main, gc) == 0
        out = capfd.readouterr()
        assert f"removed artifacts of {second}" in out.out and "removed artifacts of orphan-run" in out.out
        # (objects, not folder names: gofakes3's fs backend may list an emptied folder)
        assert [o.key for o in await store.list(second)] == [] and await store.list("orphan-run") == []
        assert {o.key.split("/")[0] for o in await store.list("")} == {first, third}
        assert set(await run_summaries(config)) == {third}
        # the first run is forgotten, but the cache and the kept run still name its files
        assert await anyio.to_thread.run_sync(main, gc) == 0
        assert {o.key.split("/")[0] for o in await store.list("")} == {first, third}
        assert (await store.list(f"{first}/produce"))[0].key == f"{first}/produce/model"


PRODUCER = """
version: 1.1
kind: component
name: prod
run:
  kind: dag
  operations:
    - name: produce
      component:
        outputs: [{name: model, type: path}]
        run: {kind: job, container: {image: x, command: [sh, -c, 'echo w > "$FLOWD_ARTIFACTS/model"']}}
"""

CONSUMER = """
version: 1.1
kind: component
name: cons
run:
  kind: dag
  operations:
    - name: use
      params: {model: {value: "MODEL"}}
      component:
        inputs: [{name: model, type: str}]
        run: {kind: job, container: {image: x, command: [sh, -c, 'test -n "$0"', "{{ model }}"]}}
"""


async def test_gc_keeps_what_a_kept_run_consumes_by_a_plain_param(kafka_broker, s3_server, tmp_path: Path,
                                                                    monkeypatch, capfd) -> None:
    """No cache here: the only thing naming the old producer's files is a kept consumer's param
    (a path handed over by value, as a user or a ``runs.<uuid>`` ref does). Its summary carries
    the resolved params, so gc keeps them. A kept run whose summary leaves out its ops may refer
    to anything: then no artifacts go at all, orphans included."""
    import time

    from flowd.cli import main
    from flowd.daemon import wire
    from flowd.daemon.client import publish

    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("FLOWD_ARTIFACTS_STORE", "")
    url = f"s3://{s3_server.bucket}/gcc-{uuid.uuid4().hex[:6]}"
    config = test_config(kafka_broker.bootstrap, name="artgcc", state_dir=str(tmp_path), executor="local", cache=False,
                         artifacts_store=url, artifacts_endpoint=s3_server.endpoint)
    store = open_store(StoreConfig(url=url, endpoint=s3_server.endpoint), default_folder=tmp_path)
    async with serving(config) as (_daemon, events):
        old = await submit(config, PRODUCER)
        assert (await events.wait_done(old)).status == "succeeded"
        new = await submit(config, PRODUCER)
        assert (await events.wait_done(new)).status == "succeeded"
        model = f"{url}/{old}/produce/model"
        consumer = await submit(config, CONSUMER.replace("MODEL", model))
        assert (await events.wait_done(consumer)).status == "succeeded"
        assert (await run_summaries(config))[consumer].ops["use"].params == {"model": model}

        capfd.readouterr()
        bus = ["--brokers", config.brokers, "--prefix", config.prefix]
        gc = ["gc", "--daemon", "--keep-days", "0", "--keep-last", "1", "--artifacts-store", url, *bus]
        assert await anyio.to_thread.run_sync(main, gc) == 0
        out = capfd.readouterr()
        assert f"forgot {old}" in out.out and "removed artifacts" not in out.out
        assert f"kept artifacts of {old}: a kept run or a cache entry refers to them" in out.err
        assert [o.key for o in await store.list(old)] == [f"{old}/produce/model"]

        # a running run too large for its summary (no ops in it): nothing goes, not even an orphan
        (tmp_path / "o").write_text("o")
        await store.put("orphan-run/op", tmp_path / "o")
        await publish(config, config.topics.status, "huge-run",
                      wire.RunSummary(run_id="huge-run", pipeline="huge", status="running", time=time.time(),
                                      counts={"running": 3000}, ops_omitted=True))
        assert await anyio.to_thread.run_sync(main, gc) == 0
        out = capfd.readouterr()
        assert "removed artifacts" not in out.out
        assert "kept all artifacts: run huge-run has too many ops for its summary" in out.err
        assert [o.key for o in await store.list("orphan-run")] == ["orphan-run/op/o"]
