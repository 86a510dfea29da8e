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
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    for_code,
)

from flowd.daemon import wire
from flowd.daemon.config import DaemonConfig, Topics
from flowd.daemon.security import SecurityConfigError, client_security, diagnose

__all__ = [
    "BusError",
    "SnapshotMissing",
    "SnapshotStore",
    "admin",
    "consumer",
    "ensure_topics",
    "map_errors",
    "partitions_of",
    "producer",
    "security_kwargs",
    "start_client",
]

# the status topic's records (run summaries) may be large; the producer allows this much per
# record. Snapshots are chunked (flowd.daemon.snapshots) and need no raised limit.
SNAPSHOT_MAX_BYTES = 256 * 1024 * 1024
# fetch size of the snapshot reader: many ~1 MB chunk records per round trip
SNAPSHOT_FETCH_BYTES = 16 * 1024 * 1024


class SnapshotMissing(Exception):
    """A record a snapshot's index names is not on the topic (deleted by hand, or a topic
    recreated): the partition is rebuilt from its log instead."""


class BusError(Exception):
    """Kafka failed (after the client's own retries)."""

    retriable = False
    # the principal lacks an ACL: retrying cannot help
    denied = False


# aiokafka's authorization errors: the principal lacks an ACL (docs/daemon.md lists them)
_DENIED = ("TopicAuthorizationFailedError", "GroupAuthorizationFailedError", "ClusterAuthorizationFailedError",
           "TransactionalIdAuthorizationFailed")


@contextlib.contextmanager
def map_errors(what: str) -> Iterator[None]:
    try:
        yield
    except KafkaError as exc:
        name = type(exc).__name__
        if name in _DENIED:
            detail = str(exc).split(": ", 1)[-1] if ": " in str(exc) else ""
            kind = name.removesuffix("Error").removesuffix("AuthorizationFailed").lower()
            kind = {"transactionalid": "transactional id"}.get(kind, kind)
            err = BusError(f"{what}: not authorized: the principal has no ACL for this {kind}"
                           + (f" ({detail})" if detail and detail != name else "")
                           + " (see the ACLs in docs/daemon.md)")
            err.denied = True
        else:
            err = BusError(f"{what}: {name}: {exc}")
        err.retriable = bool(getattr(exc, "retriable", False))
        raise err from exc


def security_kwargs(config: DaemonConfig) -> dict[str, Any]:
    """The security kwargs of every client (flowd.daemon.security), as a :class:`BusError`."""
    try:
        return client_security(config)
    except SecurityConfigError as exc:
        raise BusError(f"invalid Kafka security settings: {exc}") from None


async def start_client(client: Any, config: DaemonConfig, what: str) -> None:
    """``client.start()`` bounded by ``connect_timeout``; a client that cannot bootstrap fails
    with the cause in one line (aiokafka itself only says "Unable to bootstrap")."""
    with map_errors(what):
        try:
            async with asyncio.timeout(config.connect_timeout):
                await client.start()
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await (getattr(client, "close", None) or client.stop)()
            if isinstance(exc, KafkaConnectionError | TimeoutError):
                raise BusError(f"{what}: cannot connect to Kafka at {config.brokers}: {await diagnose(config)}") from exc
            raise


async def topic_metadata(client: Any, topic: str) -> Any:
    """Metadata of one topic asked for by name: unlike the all-topics request, whose answer just
    leaves out what the principal may not describe, it names ``topic`` in
    ``unauthorized_topics`` when an ACL is missing."""
    from aiokafka.cluster import ClusterMetadata

    md = ClusterMetadata()
    with map_errors(f"cannot read metadata of {topic}"):
        await client._client._metadata_update(md, [topic])  # noqa: SLF001
    return md


def admin(config: DaemonConfig) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(bootstrap_servers=config.brokers, client_id=config.client_id + "-admin",
                               **security_kwargs(config))


def topic_configs(topics: Topics) -> dict[str, dict[str, str]]:
    compacted = {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1", "segment.ms": "600000"}
    return {
        topics.runs: {"retention.ms": str(14 * 24 * 3600 * 1000)},
        topics.events: {"retention.ms": str(14 * 24 * 3600 * 1000)},
        topics.external: {"retention.ms": str(14 * 24 * 3600 * 1000)},
        topics.deadletter: {"retention.ms": str(30 * 24 * 3600 * 1000)},
        topics.subscriptions: compacted,
        # broker defaults for record size: snapshot chunks stay below 1 MB (flowd.daemon.snapshots)
        topics.snapshots: compacted,
        # the latest summary of each run (key = run id): flowd runs / status read it
        topics.status: {**compacted, "max.message.bytes": str(SNAPSHOT_MAX_BYTES)},
        # the result cache (key = cache key): every replica reads it whole (flowd.daemon.cache)
        topics.cache: compacted,
    }


async def ensure_topics(config: DaemonConfig) -> None:
    """Create missing topics. ``snapshots`` must have as many partitions as ``runs`` (snapshot
    of runs partition N lives in snapshots partition N); ``subscriptions`` has one."""
    topics = config.topics
    client = admin(config)
    await start_client(client, config, "cannot create topics")
    with map_errors("cannot create topics"):
        try:
            existing = set(await client.list_topics())
            configs = topic_configs(topics)
            # replication: 3, or every broker of a smaller cluster
            brokers = len(client._client.cluster.brokers()) or 1  # noqa: SLF001
            replication = config.replication_factor or min(3, brokers)
            new = [
                NewTopic(name, num_partitions=1 if name == topics.subscriptions else config.partitions,
                         replication_factor=replication, topic_configs=configs[name])
                for name in topics.all().values() if name not in existing
            ]
            if new:
                with contextlib.suppress(TopicAlreadyExistsError):
                    response = await client.create_topics(new)
                    # the answer carries an error code per topic instead of raising
                    failed = [(t[0], t[1], t[2] if len(t) > 2 else None) for t in response.topic_errors
                              if t[1] not in (0, TopicAlreadyExistsError.errno)]
                    if failed:
                        topic, code, message = failed[0]
                        if code in (TopicAuthorizationFailedError.errno, ClusterAuthorizationFailedError.errno):
                            raise BusError(f"cannot create topics: not authorized to create {topic} (grant CREATE on "
                                           "the topic prefix, or create the topics beforehand and set "
                                           "create_topics = false; see the ACLs in docs/daemon.md)")
                        raise BusError(f"cannot create topic {topic}: {for_code(code).__name__}"
                                       + (f": {message}" if message else ""))
        finally:
            await client.close()


def producer(config: DaemonConfig, **kw: Any) -> AIOKafkaProducer:
    kw.setdefault("linger_ms", 1)
    return AIOKafkaProducer(bootstrap_servers=config.brokers, client_id=config.client_id,
                            max_request_size=SNAPSHOT_MAX_BYTES, max_batch_size=256 * 1024,
                            **security_kwargs(config), **kw)


def consumer(config: DaemonConfig, *topics: str, **kw: Any) -> AIOKafkaConsumer:
    kw.setdefault("isolation_level", "read_committed")
    kw.setdefault("enable_auto_commit", False)
    kw.setdefault("auto_offset_reset", "earliest")
    return AIOKafkaConsumer(*topics, bootstrap_servers=config.brokers, client_id=config.client_id,
                            fetch_max_wait_ms=50, **security_kwargs(config), **kw)


async def partitions_of(client: AIOKafkaConsumer, topic: str) -> int:
    parts = client.partitions_for_topic(topic)
    if not parts:
        await client._client.force_metadata_update()  # noqa: SLF001
        parts = client.partitions_for_topic(topic)
    return len(parts or ())


class SnapshotStore:
    """Reads the latest snapshot of a ``runs`` partition: the last committed record of the same
    partition of the ``snapshots`` topic (compaction keeps one per key; the tail read is O(1))."""

    def __init__(self, config: DaemonConfig) -> None:
        self.topic = config.topics.snapshots
        self._config = config
        # format-1 records (before issue 15) may be up to SNAPSHOT_MAX_BYTES: fetched whole
        self._reader = consumer(config, group_id=None, max_partition_fetch_bytes=SNAPSHOT_FETCH_BYTES,
                                fetch_max_bytes=SNAPSHOT_FETCH_BYTES)
        # one reader, used by one partition's restore at a time
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        await start_client(self._reader, self._config, "snapshot reader")

    async def stop(self) -> None:
        await stop_consumer(self._reader)

    async def load_tail(self, partition: int) -> tuple[bytes | None, bytes | None]:
        """The encoded latest snapshot of ``partition`` and the latest handling marker (see
        ``wire.HandlingMarker``). A snapshot written in the background (flowd.daemon.snapshot_job)
        may come after markers of batches past its offset, so the marker is the latest one
        wherever it is; the reader compares it with the committed offset to tell if it is stale."""
        async with self._lock:
            return await self._load_tail(partition)

    async def _load_tail(self, partition: int) -> tuple[bytes | None, bytes | None]:
        tp = TopicPartition(self.topic, partition)
        snapshot_key, marker_key = str(partition).encode(), wire.marker_key(partition)
        with map_errors(f"cannot read snapshot of partition {partition}"):
            self._reader.assign([tp])
            end = (await self._reader.end_offsets([tp]))[tp]
            begin = (await self._reader.beginning_offsets([tp]))[tp]
            back = 8
            while True:
                start = max(begin, end - back)
                self._reader.seek(tp, start)
                last = marker = None
                while await self._reader.position(tp) < end:
                    batch = await self._reader.getmany(tp, timeout_ms=1000)
                    for rec in batch.get(tp, []):
                        if rec.value is None or rec.offset >= end:
                            continue
                        if rec.key == marker_key:
                            marker = rec.value
                        elif rec.key == snapshot_key or rec.key is None:
                            last = rec.value
                if (last is not None and marker is not None) or start == begin:
                    break
                back *= 8  # no head or no marker in the tail: look further back
        return last, marker

    async def read_blobs(self, partition: int, refs: dict[str, wire.BlobRef]) -> dict[str, bytes]:
        """The blobs ``refs`` names, read by offset (in offset order, seeking over gaps)."""
        async with self._lock:
            return await self._read_blobs(partition, refs)

    async def _read_blobs(self, partition: int, refs: dict[str, wire.BlobRef]) -> dict[str, bytes]:
        tp = TopicPartition(self.topic, partition)
        wanted: dict[int, tuple[str, int, bytes]] = {}
        for name, ref in refs.items():
            for i, offset in enumerate(ref.offsets):
                wanted[offset] = (name, i, f"{partition}/{ref.seq}/{name}/{i}".encode())
        parts: dict[str, list[bytes | None]] = {name: [None] * len(ref.offsets) for name, ref in refs.items()}
        order = sorted(wanted)
        with map_errors(f"cannot read snapshot of partition {partition}"):
            self._reader.assign([tp])
            end = (await self._reader.end_offsets([tp]))[tp]
            k = 0  # order[k] is the next offset still to find
            if order:
                self._reader.seek(tp, order[0])
            while k < len(order):
                batch = await self._reader.getmany(tp, timeout_ms=1000)
                for rec in batch.get(tp, []):
                    hit = wanted.get(rec.offset)
                    if hit is not None and rec.key == hit[2] and rec.value is not None:
                        parts[hit[0]][hit[1]] = rec.value
                position = await self._reader.position(tp)
                while k < len(order) and order[k] < position:
                    if parts[wanted[order[k]][0]][wanted[order[k]][1]] is None:
                        name, i, key = wanted[order[k]]
                        raise SnapshotMissing(f"chunk {key.decode()} of the snapshot of partition {partition} "
                                              f"is not at offset {order[k]} of {self.topic}")
                    k += 1
                if k < len(order) and position >= end:
                    raise SnapshotMissing(f"the snapshot of partition {partition} names offset {order[k]} "
                                          f"past the end of {self.topic} ({end})")
                if k < len(order) and order[k] - position > 256:
                    self._reader.seek(tp, order[k])  # skip records no live blob needs
        return {name: b"".join(p for p in ps if p is not None) for name, ps in parts.items()}

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
    await start_client(c, config, "cannot read topic metadata")
    with map_errors("cannot read topic metadata"):
        try:
            for _ in range(20):  # topics created a moment ago take a little while to show up
                md = await c._client.fetch_all_metadata()  # noqa: SLF001
                counts = {name: len(md.partitions_for_topic(topic) or ()) for name, topic in config.topics.all().items()}
                missing = [config.topics.all()[n] for n, k in counts.items() if not k]
                if not missing:
                    break
                await asyncio.sleep(0.25)
        finally:
            await stop_consumer(c)
    if missing:
        c = consumer(config, group_id=None)
        await start_client(c, config, "cannot read topic metadata")
        try:
            denied = [t for t in missing if t in (await topic_metadata(c, t)).unauthorized_topics]
        finally:
            await stop_consumer(c)
        if denied:
            raise BusError(f"cannot read topic metadata: not authorized to describe {', '.join(denied)} "
                           "(see the ACLs in docs/daemon.md)")
        raise TopicLayoutError(f"missing topics {', '.join(missing)} (start once with create_topics on, or create them)")
    if counts["snapshots"] != counts["runs"]:
        raise TopicLayoutError(
            f"{config.topics.snapshots} has {counts['snapshots']} partitions but {config.topics.runs} has "
            f"{counts['runs']}: the snapshot of runs partition N lives in snapshots partition N")
    return counts
