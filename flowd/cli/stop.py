"""``flowd stop RUN [--op PATH]``: publish a stop command for a run (or one op of it, or a
trigger subscription). Exit codes: 0 published, 1 failure."""

from __future__ import annotations

import argparse
import time
from typing import Any

from flowd.cli._control import publish_command
from flowd.cli.bus import add_bus_args

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("stop", help="stop a pipeline run served by the daemons")
    p.add_argument("run_id", metavar="RUN")
    p.add_argument("--op", default="", metavar="PATH", help="stop only this op (e.g. train, outer/inner)")
    p.add_argument("--reason", default=None)
    add_bus_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flowd.daemon import wire

    message = wire.StopCommand(run_id=args.run_id, time=time.time(), path=args.op, reason=args.reason)
    return publish_command(args, message, command="stop",
                           done=f"stop requested for {args.run_id}{' op ' + args.op if args.op else ''}")
