from __future__ import annotations

import anyio
import pytest

from flowd.daemon.timers import TimerWheel


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_due_timers_fire_in_order_replaced_and_cancelled_ones_do_not(anyio_backend: str) -> None:
    fired: list[tuple[str, str]] = []
    clock = anyio.current_time
    wheel = TimerWheel(lambda r, t, now: fired.append((r, t)), clock=clock)
    now = clock()
    wheel.set("r", "late", now + 0.15)
    wheel.set("r", "early", now + 0.05)
    wheel.set("r", "gone", now + 0.02)
    wheel.cancel("r", "gone")
    wheel.set("r", "moved", now + 0.01)
    wheel.set("r", "moved", now + 0.10)  # replaced: fires once, later
    wheel.set("r", "overdue", now - 5)  # catch-up: fires at once
    wheel.set("x", "revoked", now + 0.03)
    wheel.cancel_runs(["x"])
    async with anyio.create_task_group() as tg:
        tg.start_soon(wheel.run_timers)
        await anyio.sleep(0.3)
        tg.cancel_scope.cancel()
    assert fired == [("r", "overdue"), ("r", "early"), ("r", "moved"), ("r", "late")]
    assert len(wheel) == 0
