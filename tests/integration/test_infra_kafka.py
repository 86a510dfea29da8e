"""Smoke tests of the real Kafka broker (tests/infra/kafka.py) through aiokafka. No mocks."""
from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

pytestmark = [pytest.mark.integration, pytest.mark.kafka,
              pytest.mark.asyncio(loop_scope="session")]


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def create_topic(bootstrap: str, name: str, partitions: int = 1, **configs: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs)])
    finally:
        await admin.close()


async def drain(consumer: AIOKafkaConsumer, want: int, timeout: float = 15.0) -> list:
    """Read until `want` records arrived (or the timeout passed)."""
    out: list = []
    deadline = time.monotonic() + timeout
    while len(out) < want and time.monotonic() < deadline:
        batch = await consumer.getmany(timeout_ms=500)
        for recs in batch.values():
            out.extend(recs)
    return out


async def test_produce_consume_commit(kafka_broker):
    bs = kafka_broker.bootstrap
    topic, group = uniq("pc"), uniq("g")
    await create_topic(bs, topic, partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=bs, enable_idempotence=True)
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(topic, f"v{i}".encode(), key=f"k{i}".encode(),
                                         partition=i % 2, headers=[("h", b"1")])
    finally:
        await producer.stop()

    def consumer() -> AIOKafkaConsumer:
        return AIOKafkaConsumer(topic, bootstrap_servers=bs, group_id=group,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                session_timeout_ms=6000, heartbeat_interval_ms=500)

    c1 = consumer()
    await c1.start()
    try:
        first = await drain(c1, 10)
        assert sorted(r.value for r in first) == sorted(f"v{i}".encode() for i in range(10))
        assert all(r.headers == (("h", b"1"),) for r in first)
        # commit only up to 3 records per partition
        offsets = {TopicPartition(topic, p): 3 for p in (0, 1)}
        await c1.commit(offsets)
        for tp, off in offsets.items():
            assert await c1.committed(tp) == off
    finally:
        await c1.stop()

    c2 = consumer()
    await c2.start()
    try:
        rest = await drain(c2, 4)  # 10 records over 2 partitions (5+5) minus 3+3 committed
        assert len(rest) == 4 and all(r.offset >= 3 for r in rest)
    finally:
        await c2.stop()


async def test_transactions_read_committed(kafka_broker):
    bs = kafka_broker.bootstrap
    src, dst, group = uniq("txin"), uniq("txout"), uniq("txg")
    await create_topic(bs, src)
    await create_topic(bs, dst)

    plain = AIOKafkaProducer(bootstrap_servers=bs)
    await plain.start()
    try:
        for i in range(3):
            await plain.send_and_wait(src, f"in{i}".encode())
    finally:
        await plain.stop()

    tx = AIOKafkaProducer(bootstrap_servers=bs, transactional_id=uniq("tx"))
    await tx.start()
    reader = AIOKafkaConsumer(src, bootstrap_servers=bs, group_id=group,
                              enable_auto_commit=False, auto_offset_reset="earliest",
                              isolation_level="read_committed")
    await reader.start()
    try:
        # aborted: must stay invisible to read_committed
        await tx.begin_transaction()
        await tx.send_and_wait(dst, b"aborted-1")
        await tx.send_and_wait(dst, b"aborted-2")
        await tx.abort_transaction()
        # consume-transform-produce, offsets committed inside the transaction
        inputs = await drain(reader, 3)
        assert [r.value for r in inputs] == [b"in0", b"in1", b"in2"]
        await tx.begin_transaction()
        for r in inputs:
            await tx.send(dst, r.value.replace(b"in", b"out"))
        tp = TopicPartition(src, 0)
        await tx.send_offsets_to_transaction({tp: inputs[-1].offset + 1}, group)
        await tx.commit_transaction()
    finally:
        await reader.stop()
        await tx.stop()

    rc = AIOKafkaConsumer(dst, bootstrap_servers=bs, auto_offset_reset="earliest",
                          isolation_level="read_committed", enable_auto_commit=False)
    ru = AIOKafkaConsumer(dst, bootstrap_servers=bs, auto_offset_reset="earliest",
                          isolation_level="read_uncommitted", enable_auto_commit=False)
    await rc.start()
    await ru.start()
    try:
        committed = [r.value for r in await drain(rc, 3)]
        assert committed == [b"out0", b"out1", b"out2"]
        uncommitted = [r.value for r in await drain(ru, 5)]
        assert uncommitted[:2] == [b"aborted-1", b"aborted-2"], uncommitted
    finally:
        await rc.stop()
        await ru.stop()

    # the group's offset was committed by the transaction
    check = AIOKafkaConsumer(bootstrap_servers=bs, group_id=group, enable_auto_commit=False)
    await check.start()
    try:
        assert await check.committed(TopicPartition(src, 0)) == 3
    finally:
        await check.stop()


async def test_compacted_topic_compacts(kafka_broker):
    bs = kafka_broker.bootstrap
    topic = uniq("compact")
    await create_topic(bs, topic, **{
        "cleanup.policy": "compact", "segment.ms": "200", "min.cleanable.dirty.ratio": "0.01",
        "min.compaction.lag.ms": "0", "delete.retention.ms": "100"})
    producer = AIOKafkaProducer(bootstrap_servers=bs)
    await producer.start()
    try:
        for rnd in range(3):
            for k in ("a", "b", "c"):
                await producer.send_and_wait(topic, f"{k}{rnd}".encode(), key=k.encode())
        await producer.send_and_wait(topic, None, key=b"c")  # tombstone
        # roll the segment so the old one becomes cleanable: wait past segment.ms, write again
        await asyncio.sleep(0.5)
        await producer.send_and_wait(topic, b"roll", key=b"z")
        await asyncio.sleep(0.5)
        await producer.send_and_wait(topic, b"roll2", key=b"z")
    finally:
        await producer.stop()

    deadline = time.monotonic() + 40
    seen: list = []
    while time.monotonic() < deadline:
        c = AIOKafkaConsumer(bootstrap_servers=bs, enable_auto_commit=False,
                             auto_offset_reset="earliest")
        await c.start()
        try:
            tp = TopicPartition(topic, 0)
            c.assign([tp])
            await c.seek_to_beginning(tp)
            end = (await c.end_offsets([tp]))[tp]
            seen = []
            while True:
                recs = (await c.getmany(tp, timeout_ms=500)).get(tp, [])
                seen.extend((r.key, r.value) for r in recs)
                if not recs or (recs and recs[-1].offset >= end - 1):
                    break
        finally:
            await c.stop()
        keys = [k for k, _ in seen if k in (b"a", b"b")]
        if keys.count(b"a") == 1 and keys.count(b"b") == 1:
            break
        await asyncio.sleep(1)
    latest = dict(seen)
    assert [k for k, _ in seen].count(b"a") == 1, seen
    assert latest[b"a"] == b"a2" and latest[b"b"] == b"b2"
    # superseded values of c are gone; only the tombstone (or nothing) may remain
    assert (b"c", b"c0") not in seen and (b"c", b"c2") not in seen, seen
