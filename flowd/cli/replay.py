"""``flowd replay --partition N | --run RUN``: rebuild state offline from the log (and optionally
the latest snapshot) and report any divergence from the events the daemons emitted
(flowd/daemon/replay.py). Exit codes: 0 no divergence, 1 divergence or failure."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import anyio
import msgspec

from flowd.cli.bus import add_bus_args, bus_config

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("replay", help="rebuild a partition or run offline and check the emitted events")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--partition", type=int, metavar="N")
    which.add_argument("--run", metavar="RUN")
    p.add_argument("--from-snapshot", action="store_true",
                   help="start from the partition's latest snapshot instead of the log start")
    p.add_argument("--group-id", default=None, help="the daemons' consumer group (default: $FLOWD_GROUP_ID or flowd)")
    p.add_argument("--hub", default=None, help="hub folder the daemons compile submitted specs with")
    p.add_argument("--output", "-o", choices=("text", "json"), default="text")
    add_bus_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flowd.daemon.kafka import BusError
    from flowd.daemon.replay import replay

    args.command = "replay"
    config = bus_config(args)
    config = msgspec.structs.replace(config, **{k: v for k, v in (("group_id", args.group_id), ("hub", args.hub))
                                                if v is not None})
    try:
        report = anyio.run(lambda: replay(config, partition=args.partition, run_id=args.run,
                                          from_snapshot=args.from_snapshot))
    except BusError as exc:
        print(f"flowd replay: {exc}", file=sys.stderr)
        return 1
    if args.output == "json":
        print(msgspec.json.encode(report).decode())
    else:
        print(f"partition {report.partition} from {report.start}: replayed {report.replayed} record(s) up to offset "
              f"{report.end_offset}; {report.runs} run(s); {report.expected} event(s) expected, {report.emitted} emitted")
        for what in ("missing", "unexpected", "duplicated"):
            keys = getattr(report, what)
            if keys:
                print(f"  {what}: {len(keys)}: " + ", ".join(keys[:10]) + (" ..." if len(keys) > 10 else ""))
        print("no divergence" if not report.diverged else "DIVERGED")
    return 1 if report.diverged else 0
