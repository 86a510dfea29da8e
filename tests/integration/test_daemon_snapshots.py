"""Snapshots in format 2 on the real broker (issue 15): every record on the snapshots topic under
1 MB with a large run, only changed runs rewritten, a kill between two chunks, a format-1 record
restored, and a partition moved to a new owner that re-issues exactly the attempts in flight."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiokafka import TopicPartition

from flowd.daemon import snapshots, wire
from flowd.daemon.client import publish
from flowd.daemon.config import DaemonConfig
from flowd.daemon.kafka import SnapshotStore, consumer, ensure_topics, producer, stop_consumer
from flowd.daemon.partition import Outcome, PartitionState, Record
from flowd.daemon.serve import Daemon
from flowd.daemon.testing import DaemonProcess, EventCollector, read_all, test_config
from flowd.engine import StartOp, StopOp
from flowd.spec.compiled import Component, Dag, Matrix, Op

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.asyncio(loop_scope="session")]

RUN = {"container": {"image": "busybox", "command": ["true"]}}
MB = 1024 * 1024


def wide(n: int, name: str = "wide") -> Op:
    ops = [Op(name=f"w{i}", component=Component(kind="job", run=RUN)) for i in range(n)]
    return Op(name=name, component=Component(kind="dag", dag=Dag(ops=ops)))


def sweep(n: int, name: str = "big") -> Op:
    """A run of ``n`` matrix children, each with its own params, from a submission under 1 MB
    (7,000: 0.6 MB): its run blob needs several chunks (1.7 MB), its compiled pipeline
    (``spec:`` blob) one."""
    return Op(name=name, component=Component(kind="job", run=RUN),
              matrix=Matrix(kind="mapping", values=[{"i": i, "tag": f"{i:064d}"} for i in range(n)]))


class HoldingExecutor:
    """Starts nothing and reports nothing: every attempt stays in flight. Records the keys."""

    def __init__(self) -> None:
        self.started: list[str] = []

    async def start(self, cmd: StartOp) -> None:
        self.started.append(cmd.key)

    async def stop(self, cmd: StopOp) -> None:
        pass


@contextlib.asynccontextmanager
async def serving(config: DaemonConfig, executor: Any) -> AsyncIterator[Daemon]:
    daemon = Daemon(config, executor_factory=lambda send: executor)
    async with anyio.create_task_group() as tg:
        await tg.start(daemon.run)
        with anyio.fail_after(60):
            await daemon.wait_ready()
        yield daemon
        tg.cancel_scope.cancel()


async def submit(config: DaemonConfig, pipeline: Op, run_id: str | None = None) -> str:
    run_id = run_id or str(uuid.uuid4())
    await publish(config, config.topics.runs, run_id, wire.Submission(run_id=run_id, time=time.time(), pipeline=pipeline))
    return run_id


async def heads(config: DaemonConfig) -> list[wire.SnapshotHead]:
    return [wire.decode_head(r.value) for r in await read_all(config, config.topics.snapshots)
            if r.key == b"0" and r.value is not None and wire.snapshot_format(r.value) == 2]


async def wait_heads(config: DaemonConfig, n: int, timeout: float = 30.0) -> list[wire.SnapshotHead]:
    with anyio.fail_after(timeout):
        while len(found := await heads(config)) < n:
            await anyio.sleep(0.3)
    return found


async def index_of(config: DaemonConfig, head: wire.SnapshotHead) -> wire.SnapshotIndex:
    store = SnapshotStore(config)
    await store.start()
    try:
        return snapshots.decode_index((await store.read_blobs(0, {snapshots.INDEX: head.index}))[snapshots.INDEX])
    finally:
        await store.stop()


async def test_records_fit_1mb_and_only_changed_runs_are_rewritten(kafka_broker) -> None:
    config = test_config(kafka_broker.bootstrap, name="snapfit", partitions=1, metrics_port=-1,
                         snapshot_interval=0.5)
    executor = HoldingExecutor()
    async with serving(config, executor):
        big = await submit(config, sweep(7000))
        small = await submit(config, wide(3, "small"))
        first = (await wait_heads(config, 1))[-1]
        index = await index_of(config, first)
        while len(index.runs) < 2:  # the two submissions may have come in two batches
            await anyio.sleep(0.6)
            await submit(config, wide(1, "nudge"))
            first = (await heads(config))[-1]
            index = await index_of(config, first)
        ref_big = index.runs[f"run:{big}"]
        assert len(ref_big.offsets) >= 2, f"a run of 7,000 matrix children should need several chunks: {ref_big}"
        # a change to the small run only
        await anyio.sleep(0.6)
        await publish(config, config.topics.runs, small, wire.OpReport(
            run_id=small, path="w0", attempt=1, status="succeeded", time=time.time()))
        with anyio.fail_after(30):
            while True:
                later = [h for h in await heads(config) if h.seq > first.seq]
                if later and f"run:{small}" in (idx := await index_of(config, later[-1])).runs \
                        and idx.runs[f"run:{small}"].seq > index.runs[f"run:{small}"].seq:
                    break
                await anyio.sleep(0.3)
    assert idx.runs[f"run:{big}"] == ref_big, "the unchanged big run was written again"
    assert index.specs and all(idx.specs.get(n) == r for n, r in index.specs.items()), \
        "a spec blob (named by its content) was written again"
    records = await read_all(config, config.topics.snapshots)
    sizes = [len(r.value) + len(r.key or b"") for r in records if r.value is not None]
    assert max(sizes) <= MB, f"a record of {max(sizes):,} bytes on the snapshots topic"
    rewritten = [r for r in records if r.key is not None and r.key.startswith(f"0/{later[-1].seq}/run:{big}/".encode())]
    assert not rewritten
    # superseded chunks of the small run got tombstones in the same transaction
    old_small = index.runs[f"run:{small}"]
    tombstoned = {r.key for r in records if r.value is None}
    assert snapshots.blob_key(0, old_small.seq, f"run:{small}", 0) in tombstoned
    # the topic keeps the broker's default record limit
    assert "max.message.bytes" not in snapshots_topic_config(config)


def snapshots_topic_config(config: DaemonConfig) -> dict[str, str]:
    from flowd.daemon.kafka import topic_configs

    return topic_configs(config.topics)[config.topics.snapshots]


async def test_kill_between_chunks_leaves_the_previous_snapshot_whole(kafka_broker, tmp_path: Path) -> None:
    config = test_config(kafka_broker.bootstrap, name="snapkill", partitions=1, snapshot_interval=0.5,
                         executor="instant", instance_id="snap-1")
    crash_dir = tmp_path / "crash"
    crash_dir.mkdir()
    env = {"FLOWD_TEST_CRASH_AT": "snapshot_between_chunks", "FLOWD_TEST_CRASH_DIR": str(crash_dir)}
    events = EventCollector(config)
    first = DaemonProcess(config, log_path=tmp_path / "serve-1.log", env=env).start()
    second = None
    try:
        await first.wait_ready()
        async with anyio.create_task_group() as tg:
            await tg.start(events.run)
            run_id = await submit(config, sweep(7000))
            with anyio.fail_after(60):
                while first.proc is not None and first.proc.poll() is None:
                    await anyio.sleep(0.1)
            assert first.proc is not None and first.proc.returncode == -9, "the daemon was not killed at the step"
            assert any(crash_dir.iterdir())
            # the chunk before the kill is on the broker, in a transaction that never commits
            raw = await read_uncommitted(config)
            assert any(k.startswith(f"0/1/run:{run_id}/0".encode()) for k in raw), "no chunk reached the broker"
            second = DaemonProcess(config, log_path=tmp_path / "serve-2.log", env=env).start()
            await second.wait_ready(timeout=60)
            done = await events.wait_done(run_id, timeout=120)
            tg.cancel_scope.cancel()
        assert done.status == "succeeded", done.message
        assert len(events.completions(run_id)) == 1
        # every committed head names complete blobs, and loads (snapshots are written in the
        # background: the next owner's first one may commit a little after the run is done)
        store = SnapshotStore(config)
        await store.start()
        try:
            with anyio.move_on_after(30):
                while True:
                    loaded = await snapshots.load(store, 0, compiler=lambda s: (None, []))
                    if loaded.format != 0:
                        break
                    await anyio.sleep(0.5)
        finally:
            await store.stop()
        assert loaded.format == 2 and loaded.state is not None
    finally:
        first.terminate()
        code = second.terminate() if second is not None else 0
    assert code == 0


async def read_uncommitted(config: DaemonConfig) -> list[bytes]:
    c = consumer(config, group_id=None, isolation_level="read_uncommitted")
    await c.start()
    try:
        tp = TopicPartition(config.topics.snapshots, 0)
        c.assign([tp])
        await c.seek_to_beginning(tp)
        end = (await c.end_offsets([tp]))[tp]
        keys = []
        while await c.position(tp) < end:
            for rec in (await c.getmany(tp, timeout_ms=500)).get(tp, []):
                keys.append(rec.key or b"")
        return keys
    finally:
        await stop_consumer(c)


async def test_a_format_1_snapshot_is_restored_and_rewritten_in_format_2(kafka_broker) -> None:
    """A partition whose latest snapshot is the previous release's single record."""
    config = test_config(kafka_broker.bootstrap, name="snapold", partitions=1, metrics_port=-1,
                         snapshot_interval=0.5)
    await ensure_topics(config)
    state = PartitionState(0, compiler=lambda m: (None, []))
    p = producer(config, enable_idempotence=True)
    await p.start()
    run_ids = [str(uuid.uuid4()) for _ in range(3)]
    offset = 0
    for r in run_ids:
        sub = wire.Submission(run_id=r, time=time.time(), pipeline=wide(50))
        meta = await (await p.send(config.topics.runs, wire.encode(sub), key=r.encode(), partition=0))
        offset = meta.offset + 1
        state.apply(Record(config.topics.runs, 0, meta.offset, r.encode(), wire.encode(sub)), Outcome())
    await p.stop()
    old = wire.encode_snapshot(state.snapshot(offset=offset, time=time.time()))
    assert wire.snapshot_format(old) == 1
    tx = producer(config, transactional_id=f"old-{uuid.uuid4().hex[:6]}", enable_idempotence=True)
    await tx.start()
    await tx.begin_transaction()
    await tx.send(config.topics.snapshots, old, key=b"0", partition=0)
    await tx.send_offsets_to_transaction({TopicPartition(config.topics.runs, 0): offset}, config.group_id)
    await tx.commit_transaction()
    await tx.stop()
    executor = HoldingExecutor()
    async with serving(config, executor):
        # restored from the old record: every attempt in flight re-issued, none started anew
        assert sorted(executor.started) == sorted(state.daemon.inflight)
        await anyio.sleep(0.6)
        await publish(config, config.topics.runs, run_ids[0], wire.OpReport(
            run_id=run_ids[0], path="w0", attempt=1, status="succeeded", time=time.time()))
        found = await wait_heads(config, 1)
    index = await index_of(config, found[-1])
    assert {f"run:{r}" for r in run_ids} <= set(index.runs), "the first format-2 snapshot must hold every run"


async def test_a_new_owner_restores_and_reissues_exactly_the_attempts_in_flight(kafka_broker) -> None:
    config = test_config(kafka_broker.bootstrap, name="snapmove", partitions=1, metrics_port=-1,
                         snapshot_interval=0.5)
    a = HoldingExecutor()
    async with serving(config, a) as daemon:
        runs = [await submit(config, wide(2000)) for _ in range(3)]
        with anyio.fail_after(30):
            while len(a.started) < 6000:
                await anyio.sleep(0.1)
        # one op ends, one is asked to stop: the new owner must not re-issue the first, and
        # must re-issue (and stop) the second
        await publish(config, config.topics.runs, runs[0], wire.OpReport(
            run_id=runs[0], path="w0", attempt=1, status="succeeded", time=time.time()))
        await publish(config, config.topics.runs, runs[1], wire.StopCommand(run_id=runs[1], time=time.time(), path="w1"))
        await anyio.sleep(1.0)
        expected = sorted(daemon.workers[0].state.daemon.inflight)  # type: ignore[union-attr]
    # closed gracefully: a final snapshot was written; a new owner takes the partition
    b = HoldingExecutor()
    async with serving(config, b) as daemon2:
        restored = daemon2.workers[0].state
        assert restored is not None
        assert sorted(b.started) == expected
        assert f"{runs[0]}/w0#1" not in b.started and f"{runs[1]}/w1#1" in b.started
        assert f"{runs[1]}/w1#1" in restored.daemon.stopping or f"{runs[1]}/w1#1" in restored._stopping
