"""Drive the pure Engine with the Kubernetes executor, without Kafka (tests, benchmarks).

A minimal driver loop (the shape of flowd.runtime.driver, minus snapshots and signals): one
queue of events; each batch goes through ``Engine.handle``; ``StartOp``/``StopOp`` go to the
executor, ``SetTimer``/``CancelTimer`` to asyncio sleeps, ``StatusChanged`` to an optional
callback. It ends when the pipeline is done::

    h = Harness()
    async with KubernetesExecutor(send=h.send, namespace=ns) as ex:
        view = await h.run(ex, Submit(run_id="r1", pipeline=op, time=time.time()))

It is not the daemon: the daemon (``flowd serve``) does the same through Kafka partitions.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc

from flowd.engine import (
    CancelTimer,
    Command,
    Engine,
    Event,
    PipelineDone,
    RunView,
    SetTimer,
    StartOp,
    StatusChanged,
    Stop,
    StopOp,
    TimerFired,
)
from flowd.executor import Executor

__all__ = ["Harness"]


class Harness:
    def __init__(self, engine: Engine | None = None, *, clock: Callable[[], float] = time.time,
                 on_status: Callable[[StatusChanged], None] | None = None,
                 on_command: Callable[[Command], None] | None = None) -> None:
        self.engine = engine or Engine()
        self.clock = clock
        self.on_status = on_status
        self.on_command = on_command
        send, receive = anyio.create_memory_object_stream[Event](math.inf)
        self._send, self._receive = send, receive
        self._timers: dict[tuple[str, str], anyio.CancelScope] = {}
        self.done: dict[str, PipelineDone] = {}
        self.statuses: list[StatusChanged] = []
        self.events: list[Event] = []

    def send(self, event: Event) -> None:
        """The executor's ``send`` (and anyone else's): thread-unsafe, loop-only."""
        self._send.send_nowait(event)

    def stop(self, run_id: str, path: str = "", reason: str | None = None) -> None:
        self.send(Stop(run_id=run_id, time=self.clock(), path=path, reason=reason))

    async def run(self, executor: Executor, *initial: Event, wait_for: set[str] | None = None) -> dict[str, RunView]:
        """Feed ``initial`` and drive until every run in ``wait_for`` (default: the submitted
        ones) is done. Returns their final views."""
        runs = set(wait_for or {e.run_id for e in initial})
        for event in initial:
            self.send(event)
        async with anyio.create_task_group() as tg:
            while not runs <= set(self.done):
                batch = [await self._receive.receive()]
                while True:
                    try:
                        batch.append(self._receive.receive_nowait())
                    except anyio.WouldBlock:
                        break
                commands: list[Command] = []
                for event in batch:
                    self.events.append(event)
                    commands.extend(self.engine.handle(event))
                for command in commands:
                    await self._dispatch(command, executor, tg)
            tg.cancel_scope.cancel()
        return {r: self.engine.view(r) for r in runs}

    async def _dispatch(self, command: Command, executor: Executor, tg: anyio.abc.TaskGroup) -> None:
        if self.on_command is not None:
            self.on_command(command)
        match command:
            case StartOp():
                await executor.start(command)
            case StopOp():
                await executor.stop(command)
            case SetTimer():
                self._cancel(command.run_id, command.timer_id)
                scope = anyio.CancelScope()
                self._timers[(command.run_id, command.timer_id)] = scope
                tg.start_soon(self._timer, scope, command)
            case CancelTimer():
                self._cancel(command.run_id, command.timer_id)
            case StatusChanged():
                self.statuses.append(command)
                if self.on_status is not None:
                    self.on_status(command)
            case PipelineDone():
                self.done[command.run_id] = command

    def _cancel(self, run_id: str, timer_id: str) -> None:
        scope = self._timers.pop((run_id, timer_id), None)
        if scope is not None:
            scope.cancel()

    async def _timer(self, scope: anyio.CancelScope, cmd: SetTimer) -> None:
        with scope:
            await anyio.sleep(max(0.0, cmd.at - self.clock()))
            self._timers.pop((cmd.run_id, cmd.timer_id), None)
            self.send(TimerFired(run_id=cmd.run_id, timer_id=cmd.timer_id, time=self.clock()))

    def view(self, run_id: str) -> Any:
        return self.engine.view(run_id)
