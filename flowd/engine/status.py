"""Run statuses and the sets the engine reasons with (POLYFLOW §5.1)."""

from __future__ import annotations

CREATED = "created"
COMPILED = "compiled"
QUEUED = "queued"
SCHEDULED = "scheduled"
STARTING = "starting"
RUNNING = "running"
PROCESSING = "processing"
WARNING = "warning"
UNSCHEDULABLE = "unschedulable"
RETRYING = "retrying"
UNKNOWN = "unknown"
STOPPING = "stopping"
SUCCEEDED = "succeeded"
FAILED = "failed"
UPSTREAM_FAILED = "upstream_failed"
STOPPED = "stopped"
SKIPPED = "skipped"

DONE = frozenset({SUCCEEDED, FAILED, UPSTREAM_FAILED, STOPPED, SKIPPED})
# statuses an executor may report for an attempt that is still alive
EXECUTOR_LIVE = frozenset({QUEUED, SCHEDULED, STARTING, RUNNING, PROCESSING, WARNING, UNSCHEDULABLE, UNKNOWN})
# an attempt in one of these was started and is not over (the executor runs or stops it)
IN_FLIGHT = EXECUTOR_LIVE | {STOPPING}
# a child in one of these holds one of its pipeline's concurrency slots
ACTIVE = frozenset({QUEUED, SCHEDULED, STARTING, RUNNING, PROCESSING, WARNING, UNSCHEDULABLE, UNKNOWN, RETRYING, STOPPING})
# pre-execution statuses: a stop sets them straight to stopped, nothing to tear down
SAFE_STOP = frozenset({CREATED, COMPILED})
ALL = frozenset(
    {CREATED, COMPILED, QUEUED, SCHEDULED, STARTING, RUNNING, PROCESSING, WARNING, UNSCHEDULABLE,
     RETRYING, UNKNOWN, STOPPING} | DONE
)

# event kinds of `events:` entries that name a status (run_status_<s> -> <s>)
EVENT_KIND_PREFIX = "run_status_"


def is_done(status: str) -> bool:
    return status in DONE
