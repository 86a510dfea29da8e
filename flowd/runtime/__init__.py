"""The local runtime: the driver loop and the adapters ``flowd run`` plugs into the engine.

- :mod:`flowd.runtime.driver`: one event queue in, every engine command routed to one adapter
- :mod:`flowd.runtime.executor`: job and service attempts as local subprocesses
- :mod:`flowd.runtime.processes`: process groups, and what a dead flowd left running
- :mod:`flowd.runtime.timers`: ``SetTimer``/``CancelTimer`` as asyncio timers
- :mod:`flowd.runtime.store`: the run's snapshot, saved atomically under the state dir
"""

from flowd.runtime.driver import Driver, EngineLike, Progress
from flowd.runtime.executor import LocalExecutor
from flowd.runtime.store import RunRecord, SnapshotStore, StoreError, default_state_dir, derive_run_id
from flowd.runtime.timers import TimerService

__all__ = [
    "Driver",
    "EngineLike",
    "LocalExecutor",
    "Progress",
    "RunRecord",
    "SnapshotStore",
    "StoreError",
    "TimerService",
    "default_state_dir",
    "derive_run_id",
]
