"""Which executor ``flowd serve --executor`` plugs in, and the instant executor.

- ``local``: :class:`flowd.daemon.local.DaemonLocalExecutor` (subprocesses that survive a daemon
  crash and are adopted after it; needs a state dir shared by the daemons of one group)
- ``k8s``: ``flowd.k8s.executor:KubernetesExecutor(send=..., **config)``, loaded by module so the
  daemon does not import Kubernetes code unless asked
- ``instant``: every attempt succeeds at once (benchmarks, tests of the daemon itself)

Every executor implements :class:`flowd.executor.Executor` and reports through ``send``; the
daemon turns reports into ``OpReport`` records on the run's partition.
"""

from __future__ import annotations

import contextlib
import importlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from flowd.engine import OpStatus, StartOp, StopOp
from flowd.executor import Executor, Send

__all__ = ["InstantExecutor", "open_executor", "EXECUTORS", "ExecutorUnavailable"]

EXECUTORS = ("local", "k8s", "instant")


class ExecutorUnavailable(Exception):
    """The chosen executor cannot be loaded (e.g. ``k8s`` without flowd.k8s)."""


class InstantExecutor:
    """Reports ``running`` then ``succeeded`` for every attempt as soon as it is started. Keeps
    the keys it started so a re-issued command is not reported twice; ``on_start`` (optional)
    sees each first start (the benchmark measures latency with it)."""

    def __init__(self, *, send: Send, clock: Callable[[], float] = time.time,
                 report_running: bool = False, on_start: Callable[[StartOp], None] | None = None) -> None:
        self.send = send
        self.clock = clock
        self.report_running = report_running
        self.on_start = on_start
        self._started: set[str] = set()

    async def start(self, cmd: StartOp) -> None:
        if cmd.key in self._started:
            return
        self._started.add(cmd.key)
        if self.on_start is not None:
            self.on_start(cmd)
        now = self.clock()
        if self.report_running:
            self.send(OpStatus(run_id=cmd.run_id, path=cmd.path, attempt=cmd.attempt, status="running", time=now))
        self.send(OpStatus(run_id=cmd.run_id, path=cmd.path, attempt=cmd.attempt, status="succeeded",
                           time=now, exit_code=0))

    async def stop(self, cmd: StopOp) -> None:
        self.send(OpStatus(run_id=cmd.run_id, path=cmd.path, attempt=cmd.attempt, status="stopped",
                           time=self.clock(), reason=cmd.reason or "Stopped"))


@contextlib.asynccontextmanager
async def open_executor(kind: str, *, send: Send, state_dir: Path, config: dict[str, Any] | None = None,
                        on_start: Callable[[StartOp], None] | None = None) -> AsyncIterator[Executor]:
    config = dict(config or {})
    if kind == "instant":
        yield InstantExecutor(send=send, on_start=on_start, **config)
    elif kind == "local":
        from flowd.daemon.local import DaemonLocalExecutor

        async with DaemonLocalExecutor(send=send, state_dir=state_dir, **config) as executor:
            yield executor
    elif kind == "k8s":
        try:
            module = importlib.import_module("flowd.k8s.executor")
            cls = module.KubernetesExecutor
        except (ImportError, AttributeError) as exc:
            raise ExecutorUnavailable(
                f"--executor k8s needs flowd.k8s.executor:KubernetesExecutor, which is not available ({exc})"
            ) from exc
        executor = cls(send=send, **config)
        if hasattr(executor, "__aenter__"):
            async with executor as entered:
                yield entered if entered is not None else executor
        else:
            yield executor
    else:
        raise ExecutorUnavailable(f"unknown executor {kind!r} (choose from {', '.join(EXECUTORS)})")
