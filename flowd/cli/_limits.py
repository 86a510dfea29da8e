"""``--limit NAME=VALUE`` and ``FLOWD_<NAME>`` for the commands that compile or run a spec
(check, run, submit). The names, defaults and their reasons are in docs/limits.md."""

from __future__ import annotations

import argparse
import os
from typing import Any

from flowd.spec.limits import LIMIT_NAMES, Limits, limits_from


def add_limit_args(parser: Any) -> None:
    parser.add_argument(
        "--limit", action="append", default=[], metavar="NAME=VALUE",
        help=f"raise or lower a limit (repeatable; also env FLOWD_<NAME>; docs/limits.md): {', '.join(LIMIT_NAMES)}",
    )


def limits_of(args: argparse.Namespace) -> Limits | str:
    """The limits from env and flags, or the text of a usage error."""
    try:
        return limits_from(env=os.environ, items=args.limit)
    except ValueError as exc:
        return str(exc)
