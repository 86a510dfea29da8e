"""Event triggers: pipelines subscribed to events of other runs, pipelines or connections.

A submission whose top-level op has ``events: [{ref: runs.UUID | pipelines.NAME |
connections.NAME, kinds: [...]}]`` does not run: its partition registers a :class:`Subscription`
(kept in the partition snapshot and published to the compacted ``subscriptions`` topic, in the
same transaction). Each daemon runs one router:

* a consumer over ``events`` and ``external`` (read_committed) with *manually assigned*
  partitions: the daemon that owns ``runs`` partition ``p`` routes every ``events`` and
  ``external`` partition ``q`` with ``q % len(runs) == p``. Offsets are committed to the group
  ``<group>.triggers`` after the triggered submissions are acknowledged, and the next owner of
  ``p`` starts from them. There is no second consumer group to rebalance: a daemon killed with
  ``kill -9`` and restarted (or replaced) routes again as soon as it owns its partitions, instead
  of waiting out the dead member's session in a group of its own (10-17 s before; see
  docs/daemon.md for the figure now);
* before each batch it reads ``subscriptions`` to its end, so a subscription committed before an
  event was produced is always seen;
* for each match it produces a ``Submission`` to ``runs`` with the run id
  ``uuid5(subscription id | source event key)``.

The router is at-least-once; exactly-once comes from the derived run id: the owning partition
ignores a submission whose run id it has seen (engine state, or the finished-run ids kept for
the dedupe horizon). Status events match on the pipeline's own status (``path == ""``); events
older than the subscription (by their ``time``) never match.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
import structlog
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

from flowd.daemon import wire
from flowd.daemon.kafka import consumer, map_errors, partitions_of, stop_consumer
from flowd.engine import DONE

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer

    from flowd.daemon.config import DaemonConfig
    from flowd.daemon.metrics import Metrics

__all__ = ["Router", "SubscriptionTable", "derived_run_id", "matches", "routed_partitions"]

log = structlog.get_logger("flowd.daemon")
_NAMESPACE = uuid.UUID("6f1d3c1e-5b8a-4f59-9a57-0c1f1f0d7a11")


def derived_run_id(subscription_id: str, source_key: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{subscription_id}|{source_key}"))


def _kind_matches(kinds: list[Any], status: str) -> bool:
    return f"run_status_{status}" in kinds or ("run_status_done" in kinds and status in DONE)


def matches(sub: wire.Subscription, event: wire.StatusEvent | wire.CompletionEvent | wire.ExternalEvent) -> str | None:
    """The source key if ``event`` triggers ``sub``, else None. Pure. Events older than the
    subscription never match (a new router group starts from the topic's beginning)."""
    if event.time < sub.time:
        return None
    for entry in sub.events:
        ref, kinds = str(entry.get("ref", "")), list(entry.get("kinds") or [])
        scope, _, name = ref.partition(".")
        if isinstance(event, wire.ExternalEvent):
            if event.ref == ref and event.kind in kinds:
                return f"external:{event.ref}:{event.key}"
        elif isinstance(event, wire.StatusEvent) and event.path == "" and event.run_id != sub.id:
            if not _kind_matches(kinds, event.status):
                continue
            if (scope == "runs" and event.run_id == name) or (scope == "pipelines" and event.pipeline == name):
                return event.key
    return None


class SubscriptionTable:
    """Every live subscription, read from the compacted ``subscriptions`` topic."""

    def __init__(self, config: DaemonConfig) -> None:
        self.topic = config.topics.subscriptions
        self.subs: dict[str, wire.Subscription] = {}
        self._reader = consumer(config, group_id=None)

    async def start(self) -> None:
        with map_errors("subscriptions reader"):
            await self._reader.start()
            self._tps = [TopicPartition(self.topic, p) for p in (self._reader.partitions_for_topic(self.topic) or {0})]
            self._reader.assign(self._tps)
            await self._reader.seek_to_beginning(*self._tps)

    async def stop(self) -> None:
        await stop_consumer(self._reader)

    async def catch_up(self) -> None:
        with map_errors("reading subscriptions"):
            ends = await self._reader.end_offsets(self._tps)
            while [tp for tp in self._tps if await self._reader.position(tp) < ends[tp]]:
                batches = await self._reader.getmany(timeout_ms=500)
                for records in batches.values():
                    for rec in records:
                        key = rec.key.decode() if rec.key else ""
                        if rec.value is None:
                            self.subs.pop(key, None)
                            continue
                        try:
                            self.subs[key] = wire.decode_subscription(rec.value)
                        except msgspec.DecodeError as exc:
                            log.warning("bad_subscription_record", offset=rec.offset, error=str(exc))


def routed_partitions(owned: set[int], *, runs: int, counts: dict[str, int]) -> set[tuple[str, int]]:
    """The (topic, partition) pairs routed by the owner of the ``runs`` partitions ``owned``:
    partition ``q`` of each topic goes with ``runs`` partition ``q % runs``. Pure."""
    return {(topic, q) for topic, n in counts.items() for q in range(n) if runs and q % runs in owned}


class Router:
    """Routes the ``events``/``external`` partitions that go with the ``runs`` partitions this
    daemon owns (``owned()``) and submits a run, by ``feedback``, for each subscription they
    trigger."""

    def __init__(self, config: DaemonConfig, *, feedback: AIOKafkaProducer, metrics: Metrics,
                 owned: Callable[[], set[int]]) -> None:
        self.config = config
        self.topics = config.topics
        self.feedback = feedback
        self.metrics = metrics
        self.owned = owned

    async def run_router(self) -> None:
        c, topics = self.config, self.topics
        table = SubscriptionTable(c)
        await table.start()
        # no subscribe(): partitions follow the daemon's ownership of ``runs`` (module doc); the
        # group id is only where the offsets live (commits with generation -1, as a Kafka
        # "simple consumer" does)
        source = consumer(c, group_id=f"{c.group_id}.triggers")
        with map_errors("trigger consumer"):
            await source.start()
            runs = await partitions_of(source, topics.runs)
            counts = {t: await partitions_of(source, t) for t in (topics.events, topics.external)}
        routed: set[tuple[str, int]] = set()
        try:
            while True:
                wanted = routed_partitions(self.owned(), runs=runs, counts=counts)
                if wanted != routed:
                    # positions of the new set are read from the committed offsets
                    source.assign([TopicPartition(t, q) for t, q in sorted(wanted)])
                    routed = wanted
                    log.info("trigger_partitions_routed", partitions=len(routed))
                if not routed:
                    await anyio.sleep(0.05)
                    continue
                with map_errors("trigger consumer"):
                    batches = await source.getmany(timeout_ms=100, max_records=2000)
                if not batches:
                    continue
                await table.catch_up()
                futures = []
                for records in batches.values():
                    for rec in records:
                        futures.extend(await self._route(table, rec))
                with map_errors("trigger submissions"):
                    for fut in futures:
                        await fut
                try:
                    await source.commit({tp: records[-1].offset + 1 for tp, records in batches.items()
                                         if (tp.topic, tp.partition) in routed})
                except (CommitFailedError, IllegalStateError) as exc:
                    # the group still has members of an older flowd (a consumer group of its own),
                    # or the partitions moved: their next owner routes the records again, and the
                    # derived run ids make the repeat harmless
                    log.info("trigger_commit_skipped", error=str(exc))
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                await stop_consumer(source)
                await table.stop()

    async def _route(self, table: SubscriptionTable, rec: Any) -> list[Any]:
        topics, feedback = self.topics, self.feedback
        if rec.value is None or (not table.subs and rec.topic != topics.external):
            return []
        try:
            event: Any = (wire.decode_external(rec.value) if rec.topic == topics.external
                          else wire.decode_events(rec.value))
        except msgspec.DecodeError as exc:
            if rec.topic == topics.external:
                dead = wire.DeadLetter(reason="undecodable", error=str(exc), topic=rec.topic, partition=rec.partition,
                                       offset=rec.offset, time=rec.timestamp / 1000.0, key=rec.key, value=rec.value)
                self.metrics.dead_lettered.labels("undecodable").inc()
                return [await feedback.send(topics.deadletter, wire.encode(dead), key=rec.key)]
            return []
        futures = []
        for sub in list(table.subs.values()):
            key = matches(sub, event)
            if key is None:
                continue
            run_id = derived_run_id(sub.id, key)
            submission = wire.Submission(run_id=run_id, time=time.time(), pipeline=sub.pipeline,
                                         source=f"trigger:{sub.id}")
            log.info("triggered", subscription=sub.id, run_id=run_id, source_key=key)
            self.metrics.triggered.inc()
            futures.append(await feedback.send(topics.runs, wire.encode(submission), key=run_id.encode()))
        return futures
