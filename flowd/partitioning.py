"""Which partition of a topic a key lands in: Kafka's default partitioner (murmur2, as the Java
client and aiokafka use). The daemon routes a run's messages by it, and the Kubernetes executor
labels each pod with the partition that owns its run, so both must agree."""

from __future__ import annotations

from aiokafka.partitioner import murmur2


def partition_for(key: str, partitions: int) -> int:
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions
