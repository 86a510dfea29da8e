"""Pod-create admission: a token bucket (QPS/burst) behind a fair queue across pipelines.

Two independent pieces, both testable without a loop:

* :class:`TokenBucket` — ``take(now)`` returns 0 if a token was available, else how long to
  wait for the next one. The clock is passed in.
* :class:`FairQueue` — one FIFO per run id, served round-robin: one item of each waiting run in
  turn. A 10,000-op fan-out of one pipeline is therefore interleaved with a small pipeline's
  ops instead of sitting in front of them; a run with nothing queued costs nothing.

:class:`CreateLimiter` joins them for the executor: ``put(run_id, item)`` queues, ``get()``
waits for the next item *and* its token, and observes the wait (enqueue → token) in ``wait``
(the executor's ``flowd_pod_create_wait_seconds`` histogram). Items can be withdrawn (a stop before the create).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from typing import Generic, Protocol, TypeVar

import anyio

__all__ = ["TokenBucket", "FairQueue", "CreateLimiter"]

T = TypeVar("T")

class _Observer(Protocol):
    def observe(self, amount: float, /) -> None: ...


class TokenBucket:
    """``qps`` tokens per second, at most ``burst`` stored; starts full."""

    def __init__(self, qps: float, burst: int) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError("qps must be > 0 and burst >= 1")
        self.qps = qps
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp: float | None = None

    def take(self, now: float) -> float:
        """Take one token if there is one (-> 0.0), else the seconds until there is one."""
        if self.stamp is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.qps)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.qps


class FairQueue(Generic[T]):
    """Round-robin across keys, FIFO within a key."""

    def __init__(self) -> None:
        self._queues: OrderedDict[Hashable, deque[tuple[Hashable, T]]] = OrderedDict()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def put(self, key: Hashable, ident: Hashable, item: T) -> None:
        q = self._queues.get(key)
        if q is None:
            q = self._queues[key] = deque()
        q.append((ident, item))
        self._size += 1

    def pop(self) -> T:
        """The next item: the head of the run whose turn it is; that run goes to the back."""
        key, q = next(iter(self._queues.items()))
        _, item = q.popleft()
        self._size -= 1
        if q:
            self._queues.move_to_end(key)
        else:
            del self._queues[key]
        return item

    def remove(self, key: Hashable, ident: Hashable) -> T | None:
        q = self._queues.get(key)
        if q is None:
            return None
        for i, (other, item) in enumerate(q):
            if other == ident:
                del q[i]
                self._size -= 1
                if not q:
                    del self._queues[key]
                return item
        return None


class CreateLimiter(Generic[T]):
    def __init__(self, *, qps: float, burst: int, wait: _Observer | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.bucket = TokenBucket(qps, burst)
        self.wait = wait
        self.queue: FairQueue[tuple[float, T]] = FairQueue()
        self.clock = clock
        self._ready = anyio.Event()

    def __len__(self) -> int:
        return len(self.queue)

    def put(self, run_id: str, ident: Hashable, item: T) -> None:
        self.queue.put(run_id, ident, (self.clock(), item))
        self._ready.set()

    def withdraw(self, run_id: str, ident: Hashable) -> T | None:
        entry = self.queue.remove(run_id, ident)
        return None if entry is None else entry[1]

    async def get(self) -> T:
        """The next item to create, once its token is there. Many workers wait here; no lock:
        the bucket hands out a token only when it has one and the queue pops in fair order, so
        whichever worker gets the token takes the next fair item (a lock would hand items out
        one per event-loop iteration, which capped creates at a few hundred per second)."""
        while True:
            while not len(self.queue):
                if self._ready.is_set():
                    self._ready = anyio.Event()
                await self._ready.wait()
            wait = self.bucket.take(self.clock())
            if wait <= 0:
                break
            await anyio.sleep(wait)
        queued_at, item = self.queue.pop()
        if self.wait is not None:
            self.wait.observe(max(0.0, self.clock() - queued_at))
        return item
