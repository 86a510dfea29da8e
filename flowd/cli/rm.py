"""``flowd rm RUN...``: remove local runs (their state, work dir and logs) from the state dir.
A run a flowd process is carrying out is not removed. Exit 0, 1 when any run was not removed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("rm", help="remove local runs and their logs", description="Remove local runs (state, work dir, logs).")
    p.add_argument("run_ids", metavar="RUN", nargs="+", help="run id (or a unique prefix, or `last`)")
    p.add_argument("--state-dir", metavar="DIR", default=None, help="the state dir (default: $FLOWD_STATE_DIR, ...)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flowd.runtime.store import SnapshotStore, default_state_dir, key_of

    store = SnapshotStore(Path(args.state_dir) if args.state_dir else default_state_dir())
    rc = 0
    for ref in args.run_ids:
        run_id = store.resolve(ref)
        if run_id is None:
            print(f"flowd rm: no run {ref!r} in {store.root}", file=sys.stderr)
            rc = 1
        elif store.is_active(run_id) and store.latest(key_of(run_id)) == run_id:
            print(f"flowd rm: run {run_id} is being run by a flowd process; not removed", file=sys.stderr)
            rc = 1
        else:
            store.discard(run_id)
            print(f"removed {run_id}")
    return rc
