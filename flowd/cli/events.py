"""``flowd events [--follow] [--run RUN]``: print status and completion events as JSON lines
(read_committed: never an event of an aborted transaction). Exit codes: 0, 1 failure."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import anyio
import msgspec

from flowd.cli.bus import add_bus_args, bus_config

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("events", help="print the daemons' status events")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    p.add_argument("--run", default=None, metavar="RUN", help="only this run's events")
    p.add_argument("--from-now", action="store_true", help="skip events already on the topic")
    add_bus_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flowd.daemon.client import follow_events
    from flowd.daemon.kafka import BusError

    config = bus_config(args)

    async def main() -> None:
        async for event in follow_events(config, follow=args.follow, from_beginning=not args.from_now, run_id=args.run):
            sys.stdout.write(msgspec.json.encode(event).decode() + "\n")
            sys.stdout.flush()

    try:
        anyio.run(main)
    except BusError as exc:
        print(f"flowd events: {exc}", file=sys.stderr)
        return 1
    return 0
