"""``flowd status RUN``: a daemons' run's status, folded from its events on the ``events`` topic;
with ``--state-dir D`` (or ``--local``) a local run's, from its snapshot.

It reads the run's record in the compacted ``status`` topic (the daemon writes it with the run's
events); for a run that view does not hold (an invalid submission) it folds the one ``events``
partition the run id hashes to, from its start (read_committed).
Exit codes: 0 found (whatever its status), 1 unknown run or failure.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import anyio

from flowd.cli.bus import add_bus_args, bus_config

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("status", help="show a run's status (served by the daemons, or local with --state-dir)",
                              description="Show a run's status and its ops'. Without --state-dir/--local the run is "
                              "one the daemons serve; with them, a local run of `flowd run`.")
    p.add_argument("run_id", metavar="RUN", help="run id (for a local run also a unique prefix, or `last`)")
    p.add_argument("--output", "-o", choices=("text", "json"), default="text")
    local = p.add_argument_group("local runs")
    local.add_argument("--state-dir", metavar="DIR", default=None, help="the local run in this state dir")
    local.add_argument("--local", action="store_true", help="a local run in the default state dir ($FLOWD_STATE_DIR, ...)")
    add_bus_args(p)
    p.set_defaults(func=run)


async def _from_status_view(config: Any, run_id: str) -> dict[str, Any] | None:
    """The run from the compacted ``status`` topic (one partition, one record per run), in the
    shape ``run_status`` folds from the events; None when the view does not hold it."""
    from flowd.daemon.client import run_summaries
    from flowd.daemon.kafka import BusError

    try:
        summary = (await run_summaries(config, run_id=run_id)).get(run_id)
    except BusError as exc:
        # no view to read (an older daemon's cluster, no ACL for it): the events may tell; a
        # broker that cannot be reached is said at once, not tried a second time
        if getattr(exc, "missing_topic", False) or exc.denied:
            return None
        raise
    if summary is None or summary.ops_omitted:
        return None
    done = summary.finished_at is not None
    return {"run_id": run_id, "pipeline": summary.pipeline, "status": summary.status, "done": done,
            "message": summary.message,
            "ops": {path: {"status": op.status, "attempt": op.attempt, "message": op.message, "outputs": op.outputs,
                           "time": summary.time} for path, op in summary.ops.items()}}


def run(args: argparse.Namespace) -> int:
    from flowd.daemon.client import run_status
    from flowd.daemon.kafka import BusError

    if args.state_dir is not None or args.local:
        view = _local_view(args)
        if view is None:
            return 1
    else:
        config = bus_config(args)
        try:
            view = anyio.run(_from_status_view, config, args.run_id)
            if view is None:  # runs the view does not hold (invalid submissions, older daemons)
                view = anyio.run(run_status, config, args.run_id)
        except BusError as exc:
            print(f"flowd status: {exc}{_local_hint(args.run_id)}", file=sys.stderr)
            return 1
        if view is None:
            print(f"flowd status: no events for run {args.run_id}{_local_hint(args.run_id)}", file=sys.stderr)
            return 1
    if args.output == "json":
        print(json.dumps(view, indent=2))
        return 0
    from flowd.cli.progress import indent_message

    print(f"{view['pipeline']} {view['run_id']}: {view['status']}"
          + (f" ({indent_message(view['message'], '  ')})" if view["message"] else ""))
    for path, op in sorted(view["ops"].items()):
        extra = f" attempt {op['attempt']}" if op["attempt"] > 1 else ""
        print(f"  {path}: {op['status']}{extra}" + (f" - {indent_message(op['message'], '      ')}" if op["message"] else ""))
    for diag in view.get("diagnostics", []):
        print(f"  {diag['path']}: {diag.get('location', '')}: {diag['message']}")
    return 0


def _local_view(args: argparse.Namespace) -> dict[str, Any] | None:
    """A local run's status in the daemon's shape (``--output json`` is the same document)."""
    from pathlib import Path

    from flowd.runtime.history import load_run
    from flowd.runtime.store import SnapshotStore, default_state_dir

    store = SnapshotStore(Path(args.state_dir) if args.state_dir else default_state_dir())
    run_id = store.resolve(args.run_id)
    loaded = load_run(store, run_id) if run_id else None
    if loaded is None or run_id is None:
        print(f"flowd status: no run {args.run_id!r} in {store.root} (flowd runs lists them)", file=sys.stderr)
        return None
    _, _, view = loaded
    return {"run_id": run_id, "pipeline": view.pipeline, "status": view.status,
            "done": view.finished_at is not None and not store.is_active(run_id), "message": view.message,
            "ops": {path: {"status": op.status, "attempt": op.attempts, "message": op.message, "outputs": op.outputs}
                    for path, op in view.ops.items() if path}}


def _local_hint(ref: str) -> str:
    """When the daemons do not know the run but the default state dir does: say so."""
    from flowd.runtime.store import SnapshotStore, default_state_dir

    try:
        found = SnapshotStore(default_state_dir()).resolve(ref)
    except OSError:
        return ""
    return f" (a local run {found} exists: flowd status {ref} --local)" if found else ""
