"""``flowd approve RUN OP``: approve an op held by ``isApproved: false``. Exit 0 published, 1 failure."""

from __future__ import annotations

import argparse
import time
from typing import Any

from flowd.cli._control import publish_command
from flowd.cli.bus import add_bus_args

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("approve", help="approve an op waiting for approval in a run served by the daemons")
    p.add_argument("run_id", metavar="RUN")
    p.add_argument("op", metavar="OP", help="the op's path (e.g. deploy, outer/inner)")
    add_bus_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flowd.daemon import wire

    message = wire.ApproveCommand(run_id=args.run_id, path=args.op, time=time.time())
    return publish_command(args, message, command="approve", done=f"approval sent for {args.run_id} op {args.op}")
