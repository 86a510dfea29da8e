"""``flowd resume RUN``: run a finished, unsuccessful run again from where it ended (ops that
succeeded keep their results). Exit 0 published, 1 failure."""

from __future__ import annotations

import argparse
import time
from typing import Any

from flowd.cli._control import publish_command
from flowd.daemon.config import add_bus_args

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("resume", help="resume a failed or stopped run served by the daemons")
    p.add_argument("run_id", metavar="RUN")
    add_bus_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flowd.daemon import wire

    message = wire.ResumeCommand(run_id=args.run_id, time=time.time())
    return publish_command(args, message, command="resume", done=f"resume requested for {args.run_id}")
