"""``flowd runs`` (alias ``ls``): the runs kept in a local state dir, newest first, with filters.

Text: one line per run (id, status, pipeline, created — local time with its UTC offset —,
duration, op counts). ``--output json``:
``{"state_dir", "runs": [{"run_id", "pipeline", "status", "file", "params", "created_at",
"started_at", "finished_at", "message", "active", "counts"}]}`` (times ISO-8601 UTC or null).
Exit 0 (also when nothing matches), 2 usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["add_filter_args", "add_parser", "run"]


def add_filter_args(p: Any) -> None:
    p.add_argument("--status", default=None, metavar="S[,S]", help="only runs with this status (e.g. failed,stopped)")
    p.add_argument("--pipeline", default=None, metavar="NAME|GLOB[,...]",
                   help="only runs of these pipelines: names or shell-style globs matched against the whole name "
                        "(`train-*`, `*etl*`, `model-v?`, `[ab]-job`; case-sensitive; quote them from the shell), "
                        "comma-separated for several")
    p.add_argument("--since", default=None, metavar="WHEN", help="only runs created since: 30m, 2h, 7d, or an ISO date/time")


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("runs", aliases=["ls"], help="list runs (local state dir)",
                              description="List the runs kept in a local state dir, newest first.")
    add_filter_args(p)
    p.add_argument("--limit", type=int, default=50, metavar="N", help="at most N runs (default 50; 0: all)")
    p.add_argument("--output", "-o", choices=("text", "json"), default="text")
    p.add_argument("--state-dir", metavar="DIR", default=None, help="the state dir (default: $FLOWD_STATE_DIR, ...)")
    p.add_argument("--daemon", action="store_true",
                   help="list the runs the daemons serve (from the compacted status topic) instead of local runs")
    from flowd.cli.bus import add_bus_args

    add_bus_args(p)
    p.set_defaults(func=run)


def _when(t: float | None) -> str:
    """Local time with its UTC offset (``2026-12-06 03:14:42 +01:00``): what the user's clock
    says, and unambiguous when pasted elsewhere (``--output json`` gives UTC ISO-8601)."""
    if t is None:
        return "-"
    local = datetime.fromtimestamp(t).astimezone()
    return local.strftime("%Y-%m-%d %H:%M:%S ") + local.isoformat()[-6:]


def _table(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:5])) + "  " + row[5])


def _took(summary: Any) -> str:
    if summary.started_at is None:
        return "-"
    end = summary.finished_at
    if end is None:
        return "…" if summary.active else "-"
    return f"{end - summary.started_at:.1f}s"


def run(args: argparse.Namespace) -> int:
    from flowd.runtime.history import list_runs, parse_since, summary_json
    from flowd.runtime.store import SnapshotStore, default_state_dir

    try:
        since = parse_since(args.since) if args.since else None
    except ValueError as exc:
        print(f"flowd runs: error: {exc}", file=sys.stderr)
        return 2
    if args.daemon:
        return _daemon_runs(args, since)
    store = SnapshotStore(Path(args.state_dir) if args.state_dir else default_state_dir())
    runs = list_runs(store, status=args.status, pipeline=args.pipeline, since=since)
    if args.limit:
        runs = runs[: args.limit]
    if args.output == "json":
        print(json.dumps({"state_dir": str(store.root), "runs": [summary_json(r) for r in runs]}, indent=2))
        return 0
    if not runs:
        print(f"no runs in {store.root}" + (" match" if args.status or args.pipeline or since else ""), file=sys.stderr)
        return 0
    rows = [("RUN", "STATUS", "PIPELINE", "CREATED", "TOOK", "OPS")]
    for r in runs:
        status = r.status + (" (live)" if r.active else "")
        ops = ", ".join(f"{n} {s}" for s, n in sorted(r.counts.items(), key=lambda item: -item[1]))
        rows.append((r.run_id, status, r.pipeline, _when(r.created_at), _took(r), ops))
    _table(rows)
    return 0


def _daemon_runs(args: argparse.Namespace, since: float | None) -> int:
    """The daemons' runs: every record of the compacted ``status`` topic (one per run)."""
    import anyio

    from flowd.cli.bus import bus_config
    from flowd.daemon.client import run_summaries
    from flowd.daemon.kafka import BusError
    from flowd.runtime.history import pipeline_matches

    config = bus_config(args)
    try:
        summaries = anyio.run(lambda: run_summaries(config))
    except BusError as exc:
        print(f"flowd runs: {exc}", file=sys.stderr)
        return 1
    runs = sorted(summaries.values(), key=lambda s: s.started_at or s.time, reverse=True)
    runs = [s for s in runs if (not args.status or s.status in args.status.split(","))
            and (not args.pipeline or pipeline_matches(args.pipeline, s.pipeline))
            and (since is None or (s.started_at or s.time) >= since)]
    if args.limit:
        runs = runs[: args.limit]
    from flowd.runtime.history import _iso

    if args.output == "json":
        print(json.dumps({"brokers": config.brokers, "runs": [
            {"run_id": s.run_id, "pipeline": s.pipeline, "status": s.status, "created_at": _iso(s.started_at),
             "started_at": _iso(s.started_at), "finished_at": _iso(s.finished_at), "message": s.message,
             "active": s.finished_at is None, "counts": s.counts} for s in runs]}, indent=2))
        return 0
    if not runs:
        print(f"no runs on {config.brokers} ({config.prefix}*)" + (" match" if args.status or args.pipeline or since else ""),
              file=sys.stderr)
        return 0
    rows = [("RUN", "STATUS", "PIPELINE", "CREATED", "TOOK", "OPS")]
    for s in runs:
        took = f"{s.finished_at - s.started_at:.1f}s" if s.finished_at and s.started_at else "-"
        ops = ", ".join(f"{n} {k}" for k, n in sorted(s.counts.items(), key=lambda item: -item[1]))
        rows.append((s.run_id, s.status + (" (live)" if s.finished_at is None else ""), s.pipeline,
                     _when(s.started_at), took, ops))
    _table(rows)
    return 0
