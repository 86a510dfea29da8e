"""The daemon's Kafka plumbing: topic creation, client factories, the snapshot store.

The only module besides :mod:`flowd.daemon.serve` and :mod:`flowd.daemon.triggers` that
imports aiokafka. Library errors are translated here to :class:`BusError` (chained).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from flowd.daemon import wire
from flowd.daemon.config import DaemonConfig, Topics

__all__ = ["BusError", "map_errors", "ensure_topics", "SnapshotStore", "producer", "consumer", "partitions_of"]

# snapshots of big partitions are large; the topic and the producer allow this much per record
SNAPSHOT_MAX_BYTES = 256 * 1024 * 1024


class BusError(Exception):
    """Kafka failed (after the client's own retries)."""

    retriable = False


@contextlib.contextmanager
def map_errors(what: str) -> Iterator[None]:
    try:
        yield
    except KafkaError as exc:
        err = BusError(f"{what}: {type(exc).__name__}: {exc}")
        err.retriable = bool(getattr(exc, "retriable", False))
        raise err from exc


def topic_configs(topics: Topics) -> dict[str, dict[str, str]]:
    compacted = {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1", "segment.ms": "600000"}
    return {
        topics.runs: {"retention.ms": str(14 * 24 * 3600 * 1000)},
        topics.events: {"retention.ms": str(14 * 24 * 3600 * 1000)},
        topics.external: {"retention.ms": str(14 * 24 * 3600 * 1000)},
        topics.deadletter: {"retention.ms": str(30 * 24 * 3600 * 1000)},
        topics.subscriptions: compacted,
        topics.snapshots: {**compacted, "max.message.bytes": str(SNAPSHOT_MAX_BYTES)},
        # the latest summary of each run (key = run id): flowd runs / status read it
        topics.status: {**compacted, "max.message.bytes": str(SNAPSHOT_MAX_BYTES)},
    }


async def ensure_topics(config: DaemonConfig) -> None:
    """Create missing topics. ``snapshots`` must have as many partitions as ``runs`` (snapshot
    of runs partition N lives in snapshots partition N); ``subscriptions`` has one."""
    topics = config.topics
    admin = AIOKafkaAdminClient(bootstrap_servers=config.brokers, client_id=config.client_id + "-admin")
    with map_errors("cannot create topics"):
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            configs = topic_configs(topics)
            # replication: 3, or every broker of a smaller cluster
            brokers = len(admin._client.cluster.brokers()) or 1  # noqa: SLF001 - no public call
            replication = config.replication_factor or min(3, brokers)
            new = [
                NewTopic(name, num_partitions=1 if name == topics.subscriptions else config.partitions,
                         replication_factor=replication, topic_configs=configs[name])
                for name in topics.all().values() if name not in existing
            ]
            if new:
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics(new)
        finally:
            await admin.close()


def producer(config: DaemonConfig, **kw: Any) -> AIOKafkaProducer:
    return AIOKafkaProducer(bootstrap_servers=config.brokers, client_id=config.client_id,
                            max_request_size=SNAPSHOT_MAX_BYTES, max_batch_size=256 * 1024, linger_ms=1, **kw)


def consumer(config: DaemonConfig, *topics: str, **kw: Any) -> AIOKafkaConsumer:
    kw.setdefault("isolation_level", "read_committed")
    kw.setdefault("enable_auto_commit", False)
    kw.setdefault("auto_offset_reset", "earliest")
    return AIOKafkaConsumer(*topics, bootstrap_servers=config.brokers, client_id=config.client_id,
                            fetch_max_wait_ms=50, **kw)


async def partitions_of(client: AIOKafkaConsumer, topic: str) -> int:
    parts = client.partitions_for_topic(topic)
    if not parts:
        await client._client.force_metadata_update()  # noqa: SLF001 - no public refresh in aiokafka
        parts = client.partitions_for_topic(topic)
    return len(parts or ())


class SnapshotStore:
    """Reads the latest snapshot of a ``runs`` partition: the last committed record of the same
    partition of the ``snapshots`` topic (compaction keeps one per key; the tail read is O(1))."""

    def __init__(self, config: DaemonConfig) -> None:
        self.topic = config.topics.snapshots
        self._reader = consumer(config, group_id=None, max_partition_fetch_bytes=SNAPSHOT_MAX_BYTES,
                                fetch_max_bytes=SNAPSHOT_MAX_BYTES)

    async def start(self) -> None:
        with map_errors("snapshot reader"):
            await self._reader.start()

    async def stop(self) -> None:
        await stop_consumer(self._reader)

    async def load(self, partition: int) -> tuple[wire.SnapshotRecord | None, int]:
        """The latest snapshot record of ``partition`` (or None) and its size in bytes."""
        data = await self.load_bytes(partition)
        return (None, 0) if data is None else (wire.decode_snapshot(data), len(data))

    async def load_bytes(self, partition: int) -> bytes | None:
        """The encoded latest snapshot record of ``partition``, or None."""
        tp = TopicPartition(self.topic, partition)
        with map_errors(f"cannot read snapshot of partition {partition}"):
            self._reader.assign([tp])
            end = (await self._reader.end_offsets([tp]))[tp]
            begin = (await self._reader.beginning_offsets([tp]))[tp]
            back = 8
            while True:
                start = max(begin, end - back)
                self._reader.seek(tp, start)
                last = None
                while await self._reader.position(tp) < end:
                    batch = await self._reader.getmany(tp, timeout_ms=1000)
                    for rec in batch.get(tp, []):
                        if rec.value is not None and rec.offset < end:
                            last = rec.value
                if last is not None or start == begin:
                    break
                back *= 8  # only markers or aborted records in the tail: look further back
        return last


async def stop_consumer(c: AIOKafkaConsumer) -> None:
    """``c.stop()``, minus a spurious CancelledError aiokafka 0.14 raises when a group-less
    consumer's helper task was cancelled before it ever ran (NoGroupCoordinator.close)."""
    try:
        await c.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise


class TopicLayoutError(BusError):
    """The topics exist but cannot work together (e.g. snapshots has fewer partitions than runs)."""


async def check_topics(config: DaemonConfig) -> dict[str, int]:
    """Every topic exists, and ``snapshots`` has as many partitions as ``runs``. Returns the
    number of partitions of each topic, by role (``runs``, ``events``, ...)."""
    c = consumer(config, group_id=None)
    with map_errors("cannot read topic metadata"):
        await c.start()
        try:
            for _ in range(20):  # topics created a moment ago take a little while to show up
                md = await c._client.fetch_all_metadata()  # noqa: SLF001 - no public metadata call
                counts = {name: len(md.partitions_for_topic(topic) or ()) for name, topic in config.topics.all().items()}
                missing = [config.topics.all()[n] for n, k in counts.items() if not k]
                if not missing:
                    break
                await asyncio.sleep(0.25)
        finally:
            await stop_consumer(c)
    if missing:
        raise TopicLayoutError(f"missing topics {', '.join(missing)} (start once with create_topics on, or create them)")
    if counts["snapshots"] != counts["runs"]:
        raise TopicLayoutError(
            f"{config.topics.snapshots} has {counts['snapshots']} partitions but {config.topics.runs} has "
            f"{counts['runs']}: the snapshot of runs partition N lives in snapshots partition N")
    return counts
