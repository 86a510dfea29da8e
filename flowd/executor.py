"""The contract between the engine's commands and whatever runs operations.

An executor receives ``StartOp``/``StopOp`` commands and reports what happens to each attempt as
``OpStatus`` events through the ``send`` callable it was given. It decides nothing: retries,
timeouts and what runs next are the engine's. It must be idempotent: a ``StartOp`` whose ``key``
it has already started (maybe before a crash: a pod with that name exists) is adopted, never
started twice, and a ``StopOp`` for an attempt that is already gone is a no-op.

Implementations: ``flowd.runtime.executor.LocalExecutor`` (subprocesses, ``flowd run``) and
``flowd.k8s`` (pods, ``flowd serve --executor k8s``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from flowd.engine import OpStatus, StartOp, StopOp

Send = Callable[[OpStatus], None]


class Executor(Protocol):
    async def start(self, cmd: StartOp) -> None: ...

    async def stop(self, cmd: StopOp) -> None: ...
