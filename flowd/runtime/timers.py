"""The timer service: ``SetTimer``/``CancelTimer`` commands in, ``TimerFired`` events out.

Timers are absolute (epoch seconds from the driver's clock), so a timer saved before a crash is
armed again on ``--resume`` with the same deadline; one already past fires at once. Setting a
timer id again replaces it. Which timers are pending is the driver's bookkeeping, not this
service's: the driver saves it before the ``SetTimer`` is even carried out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc

from flowd.engine import Event, TimerFired

__all__ = ["TimerService"]


# ``<run id><RUN_SEP><timer id>``: a timer of another run than the driven one (a hook run)
RUN_SEP = "\t"


class TimerService:
    """Use as ``async with TimerService(run_id=..., send=..., clock=...) as timers``."""

    def __init__(self, *, run_id: str, send: Callable[[Event], None], clock: Callable[[], float]) -> None:
        self.run_id = run_id
        self.send = send
        self.clock = clock
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._tg: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> TimerService:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        return await self._tg.__aexit__(*exc_info)

    def set(self, timer_id: str, at: float) -> None:
        self.cancel(timer_id)
        scope = anyio.CancelScope()
        self._scopes[timer_id] = scope
        assert self._tg is not None
        self._tg.start_soon(self._run, timer_id, at, scope, name=f"timer {timer_id}")

    def cancel(self, timer_id: str) -> None:
        scope = self._scopes.pop(timer_id, None)
        if scope is not None:
            scope.cancel()

    async def _run(self, timer_id: str, at: float, scope: anyio.CancelScope) -> None:
        with scope:
            delay = at - self.clock()
            if delay > 0:
                await anyio.sleep(delay)
            # the deadline has passed on the driver's clock too (sleep may wake a hair early)
            while (now := self.clock()) < at:
                await anyio.sleep(at - now)
            if self._scopes.get(timer_id) is scope:
                del self._scopes[timer_id]
                run_id, sep, own_id = timer_id.partition(RUN_SEP)
                if sep:  # a timer of another run driven with this one (a hook run)
                    self.send(TimerFired(run_id=run_id, timer_id=own_id, time=now))
                else:
                    self.send(TimerFired(run_id=self.run_id, timer_id=timer_id, time=now))
