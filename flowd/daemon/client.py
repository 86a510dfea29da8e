"""What the user commands (submit, stop, status, events, replay) do with the topics.

Producers key every message by run id with Kafka's default (murmur2) partitioner, so a
submission and the later stop of that run land on the same ``runs`` partition.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from aiokafka import TopicPartition

from flowd.daemon import wire
from flowd.daemon.config import DaemonConfig
from flowd.daemon.kafka import (
    BusError,
    consumer,
    map_errors,
    producer,
    start_client,
    stop_consumer,
    topic_metadata,
)
from flowd.partitioning import partition_for

__all__ = ["follow_events", "partition_for", "publish", "read_partition", "run_status"]


async def publish(config: DaemonConfig, topic: str, key: str, message: Any) -> tuple[int, int]:
    """Produce one message (acks=all, idempotent); returns (partition, offset)."""
    p = producer(config, enable_idempotence=True)
    what = f"cannot publish to {topic} at {config.brokers}"
    await start_client(p, config, what)
    with map_errors(what):
        try:
            meta = await p.send_and_wait(topic, wire.encode(message), key=key.encode())
        finally:
            await p.stop()
    return meta.partition, meta.offset


async def follow_events(config: DaemonConfig, *, follow: bool, from_beginning: bool = True,
                        run_id: str | None = None, idle: float = 1.0) -> AsyncIterator[wire.EventsMessage]:
    """Events of the ``events`` topic (read_committed). Without ``follow`` it ends at the end
    of the topic as it was when called."""
    c = consumer(config, group_id=None, auto_offset_reset="earliest" if from_beginning else "latest")
    topic = config.topics.events
    await start_client(c, config, f"cannot read {topic} at {config.brokers}")
    try:
        tps = []
        for _ in range(20):  # a topic created a moment ago may not be in the metadata yet
            md = await topic_metadata(c, topic)
            if topic in md.unauthorized_topics:
                raise BusError(f"cannot read {topic} at {config.brokers}: not authorized: the principal has no ACL "
                               "for this topic (see the ACLs in docs/daemon.md)")
            tps = [TopicPartition(topic, p) for p in sorted(md.partitions_for_topic(topic) or ())]
            if tps:
                break
            await asyncio.sleep(0.5)
        if not tps:
            raise BusError(f"topic {topic} does not exist at {config.brokers} (is a daemon running with this --prefix?)")
        if run_id is not None and tps:
            tps = [TopicPartition(topic, partition_for(run_id, len(tps)))]
        c.assign(tps)
        if from_beginning:
            await c.seek_to_beginning(*tps)
        else:
            await c.seek_to_end(*tps)
        ends = await c.end_offsets(tps)
        while True:
            with map_errors(f"cannot read {topic} at {config.brokers}"):
                batches = await c.getmany(timeout_ms=int(idle * 1000))
            for records in batches.values():
                for rec in records:
                    if rec.value is None:
                        continue
                    try:
                        event = wire.decode_events(rec.value)
                    except msgspec.DecodeError:
                        continue
                    if run_id is None or event.run_id == run_id:
                        yield event
            if not follow:
                positions = [await c.position(tp) for tp in tps]
                if all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
                    return
    finally:
        await stop_consumer(c)


async def run_status(config: DaemonConfig, run_id: str) -> dict[str, Any] | None:
    """Fold the run's events into ``{run_id, pipeline, status, done, ops: {path: {...}}}``."""
    view: dict[str, Any] | None = None
    async for event in follow_events(config, follow=False, run_id=run_id):
        if view is None:
            view = {"run_id": run_id, "pipeline": event.pipeline, "status": "created", "done": False,
                    "message": None, "ops": {}}
        if isinstance(event, wire.HookEvent):
            # a hook of one of its ops (POLYFLOW §8.3): the hook run's own events are keyed by its id
            view.setdefault("hooks", []).append({
                "op": event.path, "index": event.index, "hub_ref": event.hub_ref,
                "trigger_status": event.trigger_status, "run_id": event.hook_run_id, "status": event.status,
                "message": event.message})
        elif isinstance(event, wire.CompletionEvent):
            view.update(status=event.status, done=True, message=event.message, epoch=event.epoch)
            if event.diagnostics:
                view["diagnostics"] = [msgspec.to_builtins(d) for d in event.diagnostics]
        elif event.path == "":
            # a resumed run (a later epoch) is running again until its own `done`
            if not view["done"] or event.epoch > view.get("epoch", 0):
                view.update(status=event.status, message=event.message, done=False, epoch=event.epoch)
        else:
            op = view["ops"][event.path] = {"status": event.status, "attempt": event.attempt, "message": event.message,
                                            "outputs": event.outputs, "time": event.time}
            if event.reason is not None:
                op["reason"] = event.reason  # CacheHit (the message names the source), Timeout...
    return view


async def run_summaries(config: DaemonConfig, *, run_id: str | None = None) -> dict[str, wire.RunSummary]:
    """The latest summary of every run (or of ``run_id``: one partition) from the compacted
    ``status`` topic, read_committed, up to its end as of now."""
    c = consumer(config, group_id=None)
    topic = config.topics.status
    await start_client(c, config, f"cannot read {topic}")  # closes the client when it cannot start
    try:
        with map_errors(f"cannot read {topic}"):
            md = await c._client.fetch_all_metadata()  # noqa: SLF001 - no public metadata call
            parts = sorted(md.partitions_for_topic(topic) or ())
    finally:
        await stop_consumer(c)
    if not parts:
        missing = BusError(f"topic {topic} does not exist (a daemon creates it at start)")
        missing.missing_topic = True  # type: ignore[attr-defined]  # Kafka answered: not a connection problem
        raise missing
    if run_id is not None:
        parts = [partition_for(run_id, len(parts))]
    out: dict[str, wire.RunSummary] = {}
    for part in parts:
        async for rec in read_partition(config, topic, part):
            if rec.value is None:
                out.pop(rec.key.decode(), None)
                continue
            try:
                summary = wire.decode_status(rec.value)
            except msgspec.DecodeError:
                continue
            if run_id is None or summary.run_id == run_id:
                out[summary.run_id] = summary
    return out


async def latest_values(config: DaemonConfig, topic: str) -> dict[bytes, bytes]:
    """The live records of a compacted topic (key -> latest value; tombstones drop the key),
    read_committed up to its end as of now. Raises BusError when the topic does not exist."""
    c = consumer(config, group_id=None)
    await start_client(c, config, f"cannot read {topic}")
    try:
        with map_errors(f"cannot read {topic}"):
            md = await c._client.fetch_all_metadata()  # noqa: SLF001 - no public metadata call
            parts = sorted(md.partitions_for_topic(topic) or ())
    finally:
        await stop_consumer(c)
    if not parts:
        raise BusError(f"topic {topic} does not exist (a daemon creates it at start)")
    out: dict[bytes, bytes] = {}
    for part in parts:
        async for rec in read_partition(config, topic, part):
            if rec.value is None:
                out.pop(rec.key, None)
            else:
                out[rec.key] = rec.value
    return out


async def forget_runs(config: DaemonConfig, run_ids: list[str]) -> None:
    """Tombstones for these runs in the compacted ``status`` topic (``flowd gc --daemon``): the
    next compaction drops their summaries. Only for finished runs: a daemon writes a run's
    summary again whenever the run changes (a resume brings it back)."""
    if not run_ids:
        return
    topic = config.topics.status
    p = producer(config, enable_idempotence=True)
    what = f"cannot publish to {topic} at {config.brokers}"
    await start_client(p, config, what)
    with map_errors(what):
        try:
            # send() only queues: a refused write (no Write ACL on the topic) surfaces when the
            # delivery is awaited; flush() does not raise it
            sent = [await p.send(topic, None, key=run_id.encode()) for run_id in run_ids]
            await p.flush()
            _quiet_unretrieved_kafka_errors()
            for delivery in sent:
                await delivery
        finally:
            await p.stop()


def _quiet_unretrieved_kafka_errors() -> None:
    """aiokafka sets a failed batch's error on an internal drain waiter nobody awaits once the
    batch is dropped, and asyncio would print it as "Future exception was never retrieved"
    after the command's one-line error. The same error reaches the caller through its
    delivery future: drop only that report, for Kafka errors, on this loop."""
    from aiokafka.errors import KafkaError

    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if isinstance(context.get("exception"), KafkaError) and "never retrieved" in str(context.get("message")):
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


async def read_partition(config: DaemonConfig, topic: str, partition: int, *, start: int | None = None,
                         end: int | None = None) -> AsyncIterator[Any]:
    """Every committed record of one partition from ``start`` (default: the log start) to ``end``
    (default: the end as of now)."""
    c = consumer(config, group_id=None, max_partition_fetch_bytes=64 * 1024 * 1024)
    tp = TopicPartition(topic, partition)
    await start_client(c, config, f"cannot read {topic}[{partition}]")
    try:
        c.assign([tp])
        if start is None:
            await c.seek_to_beginning(tp)
        else:
            c.seek(tp, start)
        stop = end if end is not None else (await c.end_offsets([tp]))[tp]
        deadline = time.monotonic() + 600
        while await c.position(tp) < stop and time.monotonic() < deadline:
            batch = await c.getmany(tp, timeout_ms=1000)
            for rec in batch.get(tp, []):
                if rec.offset < stop:
                    yield rec
    finally:
        await stop_consumer(c)
