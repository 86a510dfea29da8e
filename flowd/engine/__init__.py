"""The engine: a pure state machine over pipeline runs (docs/engine.md).

What other layers may import: the machine (:class:`Engine`), its events and commands, the
read-only views, and the status names. Everything else in this package is internal.
"""

from flowd.engine.core import Engine
from flowd.engine.messages import (
    Approve,
    CancelTimer,
    Command,
    Event,
    HookOf,
    OpStatus,
    PipelineDone,
    Resume,
    SetTimer,
    StartHook,
    StartOp,
    StatusChanged,
    Stop,
    StopOp,
    Submit,
    TimerFired,
)
from flowd.engine.status import ALL as STATUSES
from flowd.engine.status import DONE
from flowd.engine.view import OpView, RunView

__all__ = [
    "DONE",
    "STATUSES",
    "Approve",
    "CancelTimer",
    "Command",
    "Engine",
    "Event",
    "HookOf",
    "OpStatus",
    "OpView",
    "PipelineDone",
    "Resume",
    "RunView",
    "SetTimer",
    "StartHook",
    "StartOp",
    "StatusChanged",
    "Stop",
    "StopOp",
    "Submit",
    "TimerFired",
]
