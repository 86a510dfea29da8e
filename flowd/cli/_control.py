"""Shared by the commands that publish one control message for a run (stop, approve, resume)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import anyio

from flowd.cli.bus import bus_config


def publish_command(args: argparse.Namespace, message: Any, *, command: str, done: str) -> int:
    """Publish ``message`` on the runs topic keyed by its run id. Exit 0 published, 1 failure."""
    from flowd.daemon.client import publish
    from flowd.daemon.kafka import BusError

    config = bus_config(args)
    try:
        anyio.run(publish, config, config.topics.runs, message.run_id, message)
    except BusError as exc:
        print(f"flowd {command}: {exc}", file=sys.stderr)
        return 1
    print(done)
    return 0
