"""Read-only views of a pipeline run, for CLIs, progress displays and JSON reports.

These are the shapes of ``flowd run --output json`` (``{"pipeline", "status", "ops": {PATH: ...}}``).
"""

from __future__ import annotations

from typing import Any

import msgspec


class OpView(msgspec.Struct, frozen=True):
    status: str
    attempts: int
    outputs: dict[str, Any] | None
    started_at: float | None
    finished_at: float | None
    message: str | None
    # "job", "service", "dag", "matrix", ... — lets a progress view count matrix children
    kind: str = "job"
    # the op's resolved params (None until resolved): for UIs and graphs
    params: dict[str, Any] | None = None
    # why it is in its status (``CacheHit``, ``Timeout``...)
    reason: str | None = None
    # runs the op's joins selected, in order: [{run_id, op, uuid}] (POLYFLOW §8.4 lineage)
    joined: list[dict[str, str]] | None = None
    # the last value of each intermediate metric the op reported ($FLOWD_METRICS points), by
    # name: what a UI's matrix table sorts children by
    metrics: dict[str, float] | None = None


class RunView(msgspec.Struct, frozen=True):
    run_id: str
    pipeline: str
    status: str
    started_at: float | None
    finished_at: float | None
    message: str | None
    ops: dict[str, OpView]
    # the hooks its ops fired (POLYFLOW §8.3), in firing order: {path, attempt, index, hub_ref,
    # trigger_status, run_id, status, message}; ``run_id`` names the separate hook run
    hooks: list[dict[str, Any]] = []
    # a hook run: {run_id, path, attempt, index, hub_ref, status, epoch} of its source
    hook_of: dict[str, Any] | None = None
