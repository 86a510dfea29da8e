"""``flowd replay``: rebuild a partition's (or one run's) state offline and compare what the
pure step produces with what the daemons emitted.

The partition step is deterministic (flowd.daemon.partition), so re-applying the log must give
back exactly the events on the ``events`` topic. From the log start (the default, when the log
is complete) the comparison is exact both ways; from the latest snapshot it checks that
everything produced after the snapshot was emitted. Only records below the group's committed
offset are replayed: later ones have not been handled yet. Emitted events are read
read_committed, so an aborted transaction's events never count.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import msgspec
from aiokafka import TopicPartition

from flowd.daemon import snapshots, wire
from flowd.daemon.artifacts import artifacts_location
from flowd.daemon.client import partition_for, read_partition
from flowd.daemon.compiler import make_compiler
from flowd.daemon.config import DaemonConfig
from flowd.daemon.kafka import BusError, SnapshotStore, consumer, map_errors, start_client, stop_consumer
from flowd.daemon.partition import Outcome, PartitionState, Record

__all__ = ["NOT_HANDLED", "Report", "replay"]

# dead-letter reasons of records the daemon skipped instead of handling (the others were handled
# by the pure step, which re-derives the same dead letter)
NOT_HANDLED = frozenset({"crashed", "handler_error"})


class Report(msgspec.Struct, kw_only=True):
    partition: int
    start: str  # "beginning" | "snapshot@<offset>"
    replayed: int
    end_offset: int
    runs: int
    expected: int
    emitted: int
    missing: list[str]
    unexpected: list[str]
    duplicated: list[str]
    final: dict[str, str]

    @property
    def diverged(self) -> bool:
        return bool(self.missing or self.unexpected or self.duplicated)


async def _group_position(config: DaemonConfig, partition: int) -> tuple[int, int]:
    """(partitions of runs, committed offset of the group for this partition, else the end)."""
    c = consumer(config, group_id=config.group_id)
    tp = TopicPartition(config.topics.runs, partition)
    await start_client(c, config, "reading the group's committed offset")
    with map_errors("reading the group's committed offset"):
        try:
            md = await c._client.fetch_all_metadata()  # noqa: SLF001
            n = len(md.partitions_for_topic(config.topics.runs) or ())
            if not n:
                raise BusError(f"topic {config.topics.runs} does not exist at {config.brokers}")
            committed = await c.committed(tp)
            if committed is None:
                committed = (await c.end_offsets([tp]))[tp]
            return n, committed
        finally:
            await stop_consumer(c)


async def replay(config: DaemonConfig, *, partition: int | None = None, run_id: str | None = None,
                 from_snapshot: bool = False) -> Report:
    n, _ = await _group_position(config, 0)
    if partition is None:
        assert run_id is not None
        partition = partition_for(run_id, n)
    _, end = await _group_position(config, partition)
    compiler = make_compiler(config.hub, config.url_policy, config.limits)  # the same urlRef decisions as the daemon
    start_offset: int | None = None
    state = PartitionState(partition, compiler=compiler, limits=config.limits)
    state.artifacts_store = artifacts_location(config)
    start = "beginning"
    if from_snapshot:
        store = SnapshotStore(config)
        await store.start()
        try:
            loaded = await snapshots.load(store, partition, compiler=compiler, limits=config.limits)
        finally:
            await store.stop()
        if loaded.state is not None:
            state = loaded.state
            start_offset = loaded.offset
            start = f"snapshot@{loaded.offset}"
    expected: list[tuple[str, str]] = []  # (run id, key)
    final: dict[str, str] = {}
    replayed = 0
    skipped = await _not_handled(config, partition)
    async for rec in read_partition(config, config.topics.runs, partition, start=start_offset, end=end):
        if rec.offset in skipped:
            continue  # the daemon dead-lettered it instead of handling it (a poison record)
        out = Outcome()
        state.apply(Record(rec.topic, rec.partition, rec.offset, rec.key, rec.value, rec.timestamp / 1000), out)
        replayed += 1
        for rid, event in out.events:
            expected.append((rid, event.key))
            if isinstance(event, wire.CompletionEvent):
                final[rid] = event.status
    runs = {rid for rid, _ in expected} | set(state.engine.runs)
    if run_id is not None:
        runs = {run_id}
        expected = [(r, k) for r, k in expected if r == run_id]
        final = {r: s for r, s in final.items() if r == run_id}
    emitted = await _emitted(config, runs)
    want = Counter(k for _, k in expected)
    got = Counter(k for k in emitted)
    missing = sorted(k for k in want if k not in got)
    unexpected = sorted(k for k in got if k not in want) if start_offset is None else []
    duplicated = sorted(k for k, c in got.items() if c > 1)
    return Report(partition=partition, start=start, replayed=replayed, end_offset=end, runs=len(runs),
                  expected=len(expected), emitted=len(emitted), missing=missing, unexpected=unexpected,
                  duplicated=duplicated, final=final)


async def _not_handled(config: DaemonConfig, partition: int) -> set[int]:
    """Offsets of ``runs`` records of ``partition`` the daemons dead-lettered without handling
    them (their handling raised or killed the daemon): the replay skips them too."""
    offsets: set[int] = set()
    c = consumer(config, group_id=None)
    with map_errors("reading dead letters"):
        await c.start()
        try:
            md = await c._client.fetch_all_metadata()  # noqa: SLF001
            n = len(md.partitions_for_topic(config.topics.deadletter) or ())
        finally:
            await stop_consumer(c)
    for p in range(n):
        async for rec in read_partition(config, config.topics.deadletter, p):
            try:
                dead = wire.decode_deadletter(rec.value or b"")
            except msgspec.DecodeError:
                continue
            if dead.reason in NOT_HANDLED and dead.topic == config.topics.runs and dead.partition == partition:
                offsets.add(dead.offset)
    return offsets


async def _emitted(config: DaemonConfig, runs: set[str]) -> list[str]:
    c = consumer(config, group_id=None)
    await start_client(c, config, "reading events")
    with map_errors("reading events"):
        try:
            md = await c._client.fetch_all_metadata()  # noqa: SLF001
            n = len(md.partitions_for_topic(config.topics.events) or ())
        finally:
            await stop_consumer(c)
    keys: list[str] = []
    for p in sorted({partition_for(r, n) for r in runs} if n else ()):
        async for rec in read_partition(config, config.topics.events, p):
            if rec.value is None:
                continue
            try:
                event: Any = wire.decode_events(rec.value)
            except msgspec.DecodeError:
                continue
            if event.run_id in runs:
                keys.append(event.key)
    return keys
