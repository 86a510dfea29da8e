"""``flowd submit FILE``: compile a Polyaxonfile locally and publish it as a submission.

Prints the run id on stdout. With ``--wait`` follows the run's events until its completion
event (exit 0 if it succeeded, 1 otherwise). With ``--send-spec`` the YAML text is sent as is
and the daemon compiles it (what a producer in another language does; see proto/README.md).
Exit codes: 0 published (and succeeded with --wait), 1 failure, 2 invalid spec or usage.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import anyio

from flowd.cli._limits import add_limit_args, limits_of
from flowd.cli.bus import add_bus_args, bus_config

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("submit", help="publish a pipeline run to the daemons",
                              description="Compile FILE and publish a submission to the runs topic; prints the run id.")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--param", "-P", action="append", default=[], metavar="NAME=VALUE", type=_param,
                   help="set an input of the top-level component (repeatable)")
    p.add_argument("--hub", metavar="DIR", default=None, help="folder of hub components (default: $FLOWD_HUB)")
    p.add_argument("--presets", metavar="DIR", default=None,
                   help="folder of named presets for `presets: [name]` (default: $FLOWD_PRESETS)")
    p.add_argument("--run-id", default=None, help="use this run id (default: a new UUID)")
    p.add_argument("--send-spec", action="store_true", help="send the YAML text; the daemon compiles it")
    p.add_argument("--wait", action="store_true", help="follow the run until it completes")
    add_limit_args(p)
    add_bus_args(p)
    p.set_defaults(func=run)


def _param(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value


def run(args: argparse.Namespace) -> int:
    import os

    from flowd.daemon import wire
    from flowd.daemon.client import follow_events, publish
    from flowd.daemon.kafka import BusError

    config = bus_config(args)
    file = Path(args.file)
    params = dict(args.param)
    run_id = args.run_id or str(uuid.uuid4())
    if args.send_spec:
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            print(f"flowd submit: cannot read {file}: {exc.strerror}", file=sys.stderr)
            return 2
        message = wire.Submission(run_id=run_id, time=time.time(), spec=text, params=params, source=str(file))
    else:
        from flowd.spec import compile_path

        limits = limits_of(args)
        if isinstance(limits, str):
            print(f"flowd submit: error: {limits}", file=sys.stderr)
            return 2
        result = compile_path(file, params=params, hub=args.hub or os.environ.get("FLOWD_HUB") or None, limits=limits,
                              presets=args.presets)
        for diag in [*result.errors, *result.warnings]:
            print(diag.format(), file=sys.stderr)
        if not result.valid or result.op is None:
            return 2
        seed = int(uuid.UUID(run_id).hex[:8], 16) if _is_uuid(run_id) else 0
        message = wire.Submission(run_id=run_id, time=time.time(), pipeline=result.op, seed=seed)

    async def main() -> int:
        await publish(config, config.topics.runs, run_id, message)
        print(run_id, flush=True)
        if not args.wait:
            return 0
        async for event in follow_events(config, follow=True, run_id=run_id):
            if isinstance(event, wire.CompletionEvent):
                print(f"{event.pipeline}: {event.status}" + (f" ({event.message})" if event.message else ""),
                      file=sys.stderr)
                return 0 if event.status == "succeeded" else 1
        return 1

    try:
        return anyio.run(main)
    except BusError as exc:
        print(f"flowd submit: {exc}", file=sys.stderr)
        return 1


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
