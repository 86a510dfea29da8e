"""The daemon's timers: one heap for every run of every owned partition, one task.

``SetTimer``/``CancelTimer`` come in with their batch (just before its transaction commits); when a timer is due the
wheel calls ``fire(run_id, timer_id, now)``, which the daemon turns into a ``TimerFiring`` on the
run's partition of ``runs`` -- so a firing is part of the log like any other input. Timers are
absolute epoch seconds and live in the engine's state (``RunState.timers``): after a restore the
daemon re-arms every pending one; one already overdue fires at once (catch-up policy:
docs/daemon.md). Setting a timer id again replaces it (lazy deletion in the heap).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable
from typing import NoReturn

import anyio

__all__ = ["TimerWheel"]

Fire = Callable[[str, str, float], None]


class TimerWheel:
    def __init__(self, fire: Fire, *, clock: Callable[[], float] = time.time) -> None:
        self.fire = fire
        self.clock = clock
        self._due: dict[tuple[str, str], float] = {}
        self._heap: list[tuple[float, str, str]] = []
        self._changed = anyio.Event()

    def __len__(self) -> int:
        return len(self._due)

    def set(self, run_id: str, timer_id: str, at: float) -> None:
        self._due[(run_id, timer_id)] = at
        heapq.heappush(self._heap, (at, run_id, timer_id))
        if self._heap[0][0] == at:
            self._changed.set()

    def cancel(self, run_id: str, timer_id: str) -> None:
        self._due.pop((run_id, timer_id), None)

    def cancel_runs(self, run_ids: Iterable[str]) -> None:
        """Forget every timer of these runs (their partition was revoked)."""
        gone = set(run_ids)
        for key in [k for k in self._due if k[0] in gone]:
            del self._due[key]

    async def run_timers(self) -> NoReturn:
        while True:
            now = self.clock()
            while self._heap and self._heap[0][0] <= now:
                at, run_id, timer_id = heapq.heappop(self._heap)
                if self._due.get((run_id, timer_id)) == at:
                    del self._due[(run_id, timer_id)]
                    self.fire(run_id, timer_id, now)
            if len(self._heap) > 2 * len(self._due) + 1024:  # drop cancelled entries now and then
                self._heap = [(a, r, t) for (a, r, t) in self._heap if self._due.get((r, t)) == a]
                heapq.heapify(self._heap)
            self._changed = anyio.Event()
            delay = self._heap[0][0] - now if self._heap else 3600.0
            with anyio.move_on_after(max(delay, 0.0)):
                await self._changed.wait()
