"""The timer service: absolute deadlines, replacement, cancellation."""

from __future__ import annotations

import time

import anyio

from flowd.engine.messages import Event, TimerFired
from flowd.runtime.timers import TimerService


async def test_fires_at_the_deadline_replaces_and_cancels() -> None:
    fired: list[TimerFired] = []

    def send(event: Event) -> None:
        assert isinstance(event, TimerFired)
        fired.append(event)

    t0 = time.time()
    async with TimerService(run_id="r", send=send, clock=time.time) as timers:
        timers.set("late", t0 + 0.15)
        timers.set("replaced", t0 + 0.05)
        timers.set("replaced", t0 + 0.10)
        timers.set("cancelled", t0 + 0.05)
        timers.cancel("cancelled")
        timers.set("past", t0 - 10)  # a deadline already gone (resume) fires at once
        with anyio.fail_after(2):
            while len(fired) < 3:
                await anyio.sleep(0.01)
        await anyio.sleep(0.05)
    assert [f.timer_id for f in fired] == ["past", "replaced", "late"]
    assert fired[1].time >= t0 + 0.10 and fired[2].time >= t0 + 0.15
    assert all(f.run_id == "r" for f in fired)
