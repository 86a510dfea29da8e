"""The daemon's result cache against the real broker, with the local executor (real processes
that count their executions in a file): two identical runs -> the second hits; a restarted daemon
keeps the cache; two replicas see each other's entries. Also: joins under `flowd serve`."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import anyio
import pytest
from aiokafka.partitioner import DefaultPartitioner

from flowd.daemon import wire
from flowd.daemon.client import publish, run_status, run_summaries
from flowd.daemon.config import DaemonConfig
from flowd.daemon.serve import Daemon
from flowd.daemon.testing import EventCollector, read_all, test_config

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.asyncio(loop_scope="session")]


def cached_spec(count_file: Path) -> str:
    # `a` appends a line to the count file each time it really runs; `b` is cache-disabled
    return f"""
version: 1.1
kind: component
name: cached
run:
  kind: dag
  operations:
    - name: a
      params: {{n: 7}}
      component:
        inputs: [{{name: n, type: int}}]
        outputs: [{{name: out, type: int}}]
        run:
          kind: job
          container:
            image: x
            command: [sh, -c]
            args: ["echo a >> {count_file} && echo '{{\\"out\\": {{{{ n * 6 }}}}}}' > \\"$FLOWD_OUTPUTS\\""]
    - name: b
      dependencies: [a]
      cache: {{disable: true}}
      component:
        run: {{kind: job, container: {{image: x, command: [sh, -c], args: ["echo b >> {count_file}"]}}}}
"""


@contextlib.asynccontextmanager
async def serving(config: DaemonConfig, *, collect: bool = True) -> AsyncIterator[tuple[Daemon, EventCollector]]:
    daemon = Daemon(config)
    events = EventCollector(config)
    async with anyio.create_task_group() as tg:
        await tg.start(daemon.run)
        with anyio.fail_after(60):
            await daemon.wait_ready()
        if collect:
            await tg.start(events.run)
        try:
            yield daemon, events
        finally:
            tg.cancel_scope.cancel()


async def submit(config: DaemonConfig, spec: str, run_id: str | None = None) -> str:
    run_id = run_id or str(uuid.uuid4())
    await publish(config, config.topics.runs, run_id,
                  wire.Submission(run_id=run_id, time=time.time(), spec=spec, source="cached.yaml"))
    return run_id


def op_event(events: EventCollector, run_id: str, path: str, status: str) -> wire.StatusEvent:
    found = [e for e in events.of(run_id) if isinstance(e, wire.StatusEvent) and e.path == path and e.status == status]
    assert found, [(e.path, getattr(e, "status", None)) for e in events.of(run_id)]
    return found[-1]


async def metrics_text(daemon: Daemon) -> str:
    stream = await anyio.connect_tcp("127.0.0.1", daemon.http_port)
    body = b""
    async with stream:
        await stream.send(b"GET /metrics HTTP/1.0\r\n\r\n")
        with contextlib.suppress(anyio.EndOfStream):
            while True:
                body += await stream.receive()
    return body.decode()


def config_for(kafka_broker, tmp_path: Path, name: str, **kw) -> DaemonConfig:
    return test_config(kafka_broker.bootstrap, name=name, executor="local", state_dir=str(tmp_path / "state"),
                       cache=True, **kw)


async def test_the_second_identical_run_hits_the_cache(kafka_broker, tmp_path: Path) -> None:
    config = config_for(kafka_broker, tmp_path, "cache2")
    count = tmp_path / "count"
    async with serving(config) as (daemon, events):
        first = await submit(config, cached_spec(count))
        assert (await events.wait_done(first, timeout=60)).status == "succeeded"
        second = await submit(config, cached_spec(count))
        assert (await events.wait_done(second, timeout=60)).status == "succeeded"
        # `a` ran once; `b` (cache disabled) twice
        assert sorted(count.read_text().split()) == ["a", "b", "b"]
        hit = op_event(events, second, "a", "succeeded")
        assert (hit.reason, hit.message, hit.outputs) == ("CacheHit", f"cache hit: outputs of {first}/a", {"out": 42})
        assert op_event(events, first, "a", "succeeded").reason != "CacheHit"
        view = await run_status(config, second)
        assert view is not None and view["ops"]["a"]["reason"] == "CacheHit"
        assert view["ops"]["a"]["message"] == f"cache hit: outputs of {first}/a"
        summary = (await run_summaries(config, run_id=second))[second]  # the compacted status view
        assert (summary.ops["a"].reason, summary.ops["a"].message) == ("CacheHit", f"cache hit: outputs of {first}/a")
        text = await metrics_text(daemon)
        assert 'flowd_cache_lookups_total{result="hit"} 1.0' in text
        assert 'flowd_cache_lookups_total{result="miss"} 1.0' in text
        assert "flowd_cache_entries_written_total 1.0" in text
    # the entry is on the compacted topic, keyed by the cache key
    entries = [wire.decode_cache_entry(r.value) for r in await read_all(config, config.topics.cache)]
    assert [(e.run_id, e.path, e.outputs) for e in entries if e] == [(first, "a", {"out": 42})]


async def test_a_restarted_daemon_keeps_the_cache(kafka_broker, tmp_path: Path) -> None:
    config = config_for(kafka_broker, tmp_path, "cacherestart")
    count = tmp_path / "count"
    async with serving(config) as (_daemon, events):
        first = await submit(config, cached_spec(count))
        assert (await events.wait_done(first, timeout=60)).status == "succeeded"
    # a new daemon (same group and topics): it learns the cache from the topic alone
    async with serving(config) as (daemon, events):
        second = await submit(config, cached_spec(count))
        assert (await events.wait_done(second, timeout=60)).status == "succeeded"
        assert op_event(events, second, "a", "succeeded").reason == "CacheHit"
        assert sorted(count.read_text().split()) == ["a", "b", "b"]
        assert 'flowd_cache_lookups_total{result="hit"} 1.0' in await metrics_text(daemon)


def run_id_on(partition: int, partitions: int) -> str:
    """A run id whose key the default partitioner puts on ``partition``."""
    chooser = DefaultPartitioner()
    while True:
        run_id = str(uuid.uuid4())
        if chooser(run_id.encode(), list(range(partitions)), list(range(partitions))) == partition:
            return run_id


async def test_two_replicas_see_each_others_entries(kafka_broker, tmp_path: Path) -> None:
    config = config_for(kafka_broker, tmp_path, "cachereplicas", partitions=2)
    count = tmp_path / "count"
    async with serving(config) as (one, events), serving(config, collect=False) as (two, _):
        # wait until the group settled with one partition each
        with anyio.fail_after(60):
            while not (len(one.workers) == 1 and len(two.workers) == 1 and one.ready and two.ready):
                await anyio.sleep(0.2)
        (p_one,), (p_two,) = list(one.workers), list(two.workers)
        first = await submit(config, cached_spec(count), run_id_on(p_one, 2))
        assert (await events.wait_done(first, timeout=60)).status == "succeeded"
        second = await submit(config, cached_spec(count), run_id_on(p_two, 2))
        assert (await events.wait_done(second, timeout=60)).status == "succeeded"
        assert op_event(events, second, "a", "succeeded").reason == "CacheHit"
        assert sorted(count.read_text().split()) == ["a", "b", "b"]
        assert 'flowd_cache_lookups_total{result="hit"} 1.0' in await metrics_text(two)
        assert 'flowd_cache_entries_written_total 1.0' in await metrics_text(one)


JOINS = """
version: 1.1
kind: component
name: sweep-reduce
run:
  kind: dag
  operations:
    - name: tune
      matrix: {kind: grid, params: {lr: {kind: choice, value: [0.1, 0.01, 0.001]}}}
      component:
        inputs: [{name: lr, type: float}]
        outputs: [{name: loss, type: float}]
        run:
          kind: job
          container: {image: x, command: [sh, -c], args: ["echo '{\\"loss\\": {{ ((lr - 0.01) | abs) | round(4) }}}' > \\"$FLOWD_OUTPUTS\\""]}
    - name: reduce
      dependencies: [tune]
      params: {tune_uuid: {ref: ops.tune, value: globals.uuid, contextOnly: true}}
      joins:
        - {query: "pipeline: {{ tune_uuid }}, status: succeeded", sort: "metrics.loss", limit: 2,
           params: {losses: {value: outputs.loss}}}
      component:
        inputs: [{name: losses, type: float, isList: true}]
        outputs: [{name: best, type: float}]
        run: {kind: job, container: {image: x, command: [sh, -c], args: ["echo '{\\"best\\": {{ losses[0] }}}' > \\"$FLOWD_OUTPUTS\\""]}}
"""


async def test_a_join_runs_under_the_daemon_and_its_lineage_is_in_the_events(kafka_broker, tmp_path: Path) -> None:
    config = config_for(kafka_broker, tmp_path, "joins")
    async with serving(config) as (_daemon, events):
        run_id = await submit(config, JOINS)
        assert (await events.wait_done(run_id, timeout=60)).status == "succeeded"
        assert op_event(events, run_id, "reduce", "succeeded").outputs == {"best": 0.0}
        compiled = op_event(events, run_id, "reduce", "compiled")
        assert compiled.joined == [f"{run_id}/tune[1]", f"{run_id}/tune[2]"]


async def test_a_kill_between_writing_the_entry_and_the_commit_records_no_hit(kafka_broker, tmp_path: Path) -> None:
    """``flowd serve`` SIGKILLs itself after producing the cache entry of `a` and before its
    transaction commits (FLOWD_TEST_CRASH_AT=daemon.cache_sent). Nobody may see that entry; the
    restarted daemon replays the report, commits the success with the entry once, and a second
    run hits it. `a` ran once in all."""
    from flowd.daemon.cache import ResultCache
    from flowd.daemon.testing import DaemonProcess

    crashes = tmp_path / "crashes"
    crashes.mkdir()
    config = config_for(kafka_broker, tmp_path, "cachekill", instance_id="cachekill-1", partitions=1)
    env = {"FLOWD_TEST_CRASH_AT": "daemon.cache_sent", "FLOWD_TEST_CRASH_DIR": str(crashes)}
    count = tmp_path / "count"
    events = EventCollector(config)
    daemon = DaemonProcess(config, log_path=tmp_path / "serve-0.log", env=env).start()
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(events.run)
            await daemon.wait_ready()
            first = await submit(config, cached_spec(count))
            with anyio.fail_after(60):
                while daemon.proc is not None and daemon.proc.poll() is None:
                    await anyio.sleep(0.1)
            assert len(list(crashes.iterdir())) == 1  # it died at the aimed step
            # `a` ran; its success is not committed (effects go out just before the commit, so `b`
            # may have started: the restarted daemon adopts that attempt, it runs once)
            assert count.read_text().split().count("a") == 1
            # a reader of the topic sees no entry: the transaction that held it never committed
            table, ready = ResultCache(), anyio.Event()
            async with anyio.create_task_group() as reader:
                reader.start_soon(partial(table.tail, config, ready=ready))
                with anyio.fail_after(30):
                    await ready.wait()
                reader.cancel_scope.cancel()
            assert table.entries == {}
            assert not any(isinstance(e, wire.StatusEvent) and e.path == "a" and e.status == "succeeded"
                           for e in events.of(first))
            daemon = DaemonProcess(config, log_path=tmp_path / "serve-1.log", env=env).start()
            await daemon.wait_ready()
            assert (await events.wait_done(first, timeout=60)).status == "succeeded"
            second = await submit(config, cached_spec(count))
            assert (await events.wait_done(second, timeout=60)).status == "succeeded"
            assert op_event(events, second, "a", "succeeded").message == f"cache hit: outputs of {first}/a"
            assert sorted(count.read_text().split()) == ["a", "b", "b"]
            tg.cancel_scope.cancel()
    finally:
        daemon.terminate()
    entries = [wire.decode_cache_entry(r.value) for r in await read_all(config, config.topics.cache)]
    assert [(e.run_id, e.path) for e in entries if e] == [(first, "a")]
