"""The runs kept in a local state dir: what ``flowd runs``, ``flowd gc``/``rm``, ``flowd graph
RUN`` and the web UI read. Read-only over :class:`flowd.runtime.store.SnapshotStore`."""

from __future__ import annotations

import fnmatch
import re
import time
from datetime import UTC, datetime
from typing import Any

import msgspec

from flowd.engine import Engine, RunView
from flowd.runtime.replay import restore_run
from flowd.runtime.store import RunRecord, SnapshotStore, StoreError, key_of

__all__ = ["RunSummary", "list_runs", "load_run", "parse_since", "pipeline_matches", "summary_json"]


class RunSummary(msgspec.Struct, kw_only=True):
    run_id: str
    pipeline: str
    status: str
    file: str
    params: dict[str, str]
    created_at: float | None
    started_at: float | None
    finished_at: float | None
    message: str | None
    # a flowd process is carrying the run out right now
    active: bool
    # ops by status
    counts: dict[str, int]


def load_run(store: SnapshotStore, run_id: str) -> tuple[RunRecord, Engine, RunView] | None:
    """The saved run and its engine restored (snapshot + journal: live while its flowd runs), or
    None when it cannot be read."""
    try:
        restored = restore_run(store, run_id)
    except StoreError:
        return None
    if restored is None:
        return None
    try:
        view = restored.engine.view(run_id)
    except (ValueError, KeyError):
        return None
    return restored.record, restored.engine, view


def _summary(store: SnapshotStore, record: RunRecord, view: RunView) -> RunSummary:
    counts: dict[str, int] = {}
    for op in view.ops.values():
        counts[op.status] = counts.get(op.status, 0) + 1
    active = record.done is None and store.latest(record.key or key_of(record.run_id)) == record.run_id \
        and store.is_active(record.run_id)
    return RunSummary(
        run_id=record.run_id, pipeline=record.pipeline or view.pipeline, status=view.status, file=record.file,
        params=record.params, created_at=record.created_at or view.started_at, started_at=view.started_at,
        finished_at=view.finished_at, message=view.message, active=active, counts=counts,
    )


def list_runs(store: SnapshotStore, *, status: str | None = None, pipeline: str | None = None,
              since: float | None = None) -> list[RunSummary]:
    """Runs of the state dir, newest first, filtered by final/current status, pipeline name
    (names or globs, :func:`pipeline_matches`) and creation time (epoch seconds)."""
    out = []
    for run_id in store.run_ids():
        loaded = load_run(store, run_id)
        if loaded is None:
            continue
        record, _, view = loaded
        summary = _summary(store, record, view)
        if status and summary.status not in status.split(","):
            continue
        if pipeline and not pipeline_matches(pipeline, summary.pipeline):
            continue
        if since is not None and (summary.created_at or 0) < since:
            continue
        out.append(summary)
    return sorted(out, key=lambda s: s.created_at or 0, reverse=True)


def pipeline_matches(patterns: str, name: str) -> bool:
    """``--pipeline``: a comma list of names or shell-style globs (``*``, ``?``, ``[abc]``,
    case-sensitive, matched against the whole name); one match is enough. The same for local
    runs, the daemons' runs and the UI's filter."""
    return any(fnmatch.fnmatchcase(name, p.strip()) for p in patterns.split(",") if p.strip())


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, *, now: float | None = None) -> float:
    """``30m``, ``2h``, ``7d`` ago, or an ISO-8601 date/time (UTC unless it says otherwise)."""
    match = _DURATION.match(text.strip())
    if match:
        return (time.time() if now is None else now) - float(match[1]) * _UNITS[match[2]]
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--since {text!r}: expected a duration (30m, 2h, 7d) or an ISO date/time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat()


def summary_json(summary: RunSummary) -> dict[str, Any]:
    data = msgspec.to_builtins(summary)
    for field in ("created_at", "started_at", "finished_at"):
        data[field] = _iso(data[field])
    return data
