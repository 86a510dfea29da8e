"""Token bucket arithmetic and round-robin fairness, with an explicit clock."""

from __future__ import annotations

import anyio
import pytest
from prometheus_client import CollectorRegistry

from flowd.k8s.limiter import CreateLimiter, FairQueue, TokenBucket
from flowd.k8s.metrics import K8sMetrics


def test_bucket_burst_then_rate() -> None:
    b = TokenBucket(qps=10, burst=3)
    assert [b.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take(0.0) == pytest.approx(0.1)
    assert b.take(0.05) == pytest.approx(0.05)  # half a token refilled
    assert b.take(0.1) == 0.0
    # a long pause refills only up to the burst
    assert [b.take(100.0) for _ in range(4)][:3] == [0.0, 0.0, 0.0]
    assert b.take(100.0) > 0


def test_fair_queue_round_robin_across_runs() -> None:
    q: FairQueue[str] = FairQueue()
    for i in range(10_000):
        q.put("big", i, f"big-{i}")
    q.put("small", "a", "small-a")
    q.put("small", "b", "small-b")
    first = [q.pop() for _ in range(4)]
    # the small run is served on every other turn although it queued after 10,000 ops
    assert first == ["big-0", "small-a", "big-1", "small-b"]
    assert len(q) == 9_998


def test_fair_queue_withdraw() -> None:
    q: FairQueue[str] = FairQueue()
    q.put("r", "k1", "one")
    q.put("r", "k2", "two")
    assert q.remove("r", "k1") == "one"
    assert q.remove("r", "nope") is None
    assert q.pop() == "two"
    assert len(q) == 0


async def test_limiter_paces_and_observes_waits() -> None:
    registry = CollectorRegistry()
    metrics = K8sMetrics.for_registry(registry)
    limiter: CreateLimiter[int] = CreateLimiter(qps=50, burst=5, wait=metrics.create_wait)
    for i in range(15):
        limiter.put("r", i, i)
    t0 = anyio.current_time()
    got = [await limiter.get() for _ in range(15)]
    elapsed = anyio.current_time() - t0
    assert got == list(range(15))
    assert elapsed == pytest.approx(10 / 50, abs=0.08)  # 5 from the burst, 10 at 50/s
    assert registry.get_sample_value("flowd_pod_create_wait_seconds_count") == 15
    assert (registry.get_sample_value("flowd_pod_create_wait_seconds_sum") or 0) > 0
