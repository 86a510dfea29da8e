"""``flowd resume RUN``: run a finished, unsuccessful run again from where it ended (ops that
succeeded keep their results).

Served runs (the default): a ``resume`` command is published for the daemons; exit 0 published,
1 failure. Local runs (``--state-dir D``, or ``--local`` for the default state dir): the run in
that state dir is resumed here, in the foreground, as ``flowd run FILE --resume`` does; exit 0
when it then succeeds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from flowd.cli._control import publish_command
from flowd.cli.bus import add_bus_args

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    from flowd.cli.run import DEFAULT_MAX_PROCS

    p = subparsers.add_parser("resume", help="resume a failed or stopped run (served by the daemons, or local with --state-dir)",
                              description="Run again what did not succeed in a finished run. Without --state-dir/--local "
                              "the run is one the daemons serve; with them, a local run of `flowd run`.")
    p.add_argument("run_id", metavar="RUN", help="run id (for a local run also a unique prefix, or `last`)")
    add_bus_args(p)
    local = p.add_argument_group("local runs")
    local.add_argument("--state-dir", metavar="DIR", default=None,
                       help="resume the local run in this state dir (as `flowd run FILE --resume` does)")
    local.add_argument("--local", action="store_true", help="resume a local run in the default state dir ($FLOWD_STATE_DIR, ...)")
    local.add_argument("--output", "-o", choices=("text", "json"), default="text")
    local.add_argument("--logs", action="store_true", help="print the jobs' output as they run, prefixed by op path")
    local.add_argument("--approve", action="append", default=[], metavar="OP")
    local.add_argument("--stop-grace", metavar="SECONDS", type=float, default=5.0)
    local.add_argument("--max-procs", metavar="N", type=int, default=DEFAULT_MAX_PROCS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.state_dir is not None or args.local:
        from flowd.cli.run import resume_local

        return resume_local(args, args.run_id)
    from flowd.daemon import wire

    message = wire.ResumeCommand(run_id=args.run_id, time=time.time())
    return publish_command(args, message, command="resume", done=f"resume requested for {args.run_id}")
