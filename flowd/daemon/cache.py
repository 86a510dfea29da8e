"""The daemon's result cache (POLYFLOW §5.10): a compacted Kafka topic ``<prefix>cache`` keyed by
cache key, and the in-memory table every replica keeps of it.

Writing: when a job attempt that carried a ``cache_key`` succeeds, its partition worker produces
a :class:`~flowd.daemon.wire.CacheEntry` in the same transaction as the events that complete the
op (flowd.daemon.partition fills ``Outcome.cache_entries``). A crash before the commit leaves
neither the events nor the entry; so a hit is never recorded for something not done.

Reading: every replica tails the whole topic from its beginning (no consumer group, committed
records only) into :class:`ResultCache`, so an entry written by any replica, before or after a
restart, is seen by all. Before an op starts (:meth:`flowd.daemon.effects.Effects.carry_out`)
the table is looked up; a hit is reported on ``runs`` like any executor report -- ``succeeded``,
reason ``CacheHit``, the original outputs and a message naming the source run/op -- so it enters
the engine as an event on the same path as everything else and replays identically. The ttl is
compared with the time of the event that made the engine start the op, never with a clock.

A replica that has not read an entry yet (the tail lags by the time a fetch takes) runs the op:
a miss is always safe, it costs a run.
"""

from __future__ import annotations

from collections.abc import Iterable

import anyio
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from flowd.daemon import wire
from flowd.daemon.kafka import map_errors, security_kwargs, start_client
from flowd.engine import OpStatus, StartOp

__all__ = ["ResultCache", "HIT_PREFIX", "hit_report"]

log = structlog.get_logger("flowd.daemon")

# the message of a cache hit, as `flowd run` writes it: "cache hit: outputs of <run id>/<op path>"
HIT_PREFIX = "cache hit: outputs of "


class ResultCache:
    """Cache key -> the latest entry; at most ``max_entries`` (the oldest results go first)."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self.entries: dict[str, wire.CacheEntry] = {}
        self.hits = 0
        self.misses = 0

    def put(self, entries: Iterable[wire.CacheEntry]) -> None:
        for entry in entries:
            old = self.entries.pop(entry.key, None)
            self.entries[entry.key] = entry if old is None or entry.finished_at >= old.finished_at else old
        if len(self.entries) > self.max_entries:
            # insertion order is roughly finish order: drop from the front
            for key in list(self.entries)[: len(self.entries) - self.max_entries]:
                del self.entries[key]

    def lookup(self, key: str, ttl: float | None, now: float) -> wire.CacheEntry | None:
        entry = self.entries.get(key)
        if entry is None or (ttl is not None and now - entry.finished_at > ttl):
            self.misses += 1
            return None
        self.hits += 1
        return entry

    async def tail(self, config: object, *, ready: anyio.Event | None = None) -> None:
        """Read ``<prefix>cache`` from the beginning, forever (a task of ``flowd serve``).
        ``ready`` is set once the entries present at start are read."""
        from flowd.daemon.config import DaemonConfig

        assert isinstance(config, DaemonConfig)
        topic = config.topics.cache
        consumer = AIOKafkaConsumer(bootstrap_servers=config.brokers, client_id=config.client_id + "-cache",
                                    group_id=None, enable_auto_commit=False, isolation_level="read_committed",
                                    auto_offset_reset="earliest", **security_kwargs(config))
        await start_client(consumer, config, "cannot read the cache topic")
        try:
            with map_errors("reading the cache topic"):
                parts = consumer.partitions_for_topic(topic)
                while not parts:
                    await anyio.sleep(0.2)
                    await consumer._client.force_metadata_update()  # noqa: SLF001
                    parts = consumer.partitions_for_topic(topic)
                tps = [TopicPartition(topic, p) for p in sorted(parts)]
                consumer.assign(tps)
                await consumer.seek_to_beginning(*tps)
                ends = await consumer.end_offsets(tps)
                while True:
                    batch = await consumer.getmany(timeout_ms=500, max_records=5000)
                    entries = []
                    for records in batch.values():
                        for r in records:
                            entry = wire.decode_cache_entry(r.value) if r.value is not None else None
                            if entry is not None:
                                entries.append(entry)
                    self.put(entries)
                    if ready is not None and not ready.is_set():
                        positions = [await consumer.position(tp) for tp in tps]
                        if all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
                            log.info("cache_loaded", entries=len(self.entries))
                            ready.set()
        finally:
            await consumer.stop()


def hit_report(cmd: StartOp, entry: wire.CacheEntry, time: float) -> OpStatus:
    """What a hit reports for the attempt ``cmd``: it succeeded with the original outputs."""
    return OpStatus(run_id=cmd.run_id, path=cmd.path, attempt=cmd.attempt, status="succeeded", time=time,
                    reason="CacheHit", message=f"{HIT_PREFIX}{entry.run_id}/{entry.path}", outputs=entry.outputs)
