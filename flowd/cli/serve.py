"""``flowd serve``: run the daemon (docs/daemon.md). Configuration: flags > ``FLOWD_*`` env >
``--config`` TOML file > defaults. SIGTERM/SIGINT stop it gracefully (final snapshots)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

import anyio

from flowd.cli._limits import add_limit_args
from flowd.cli.logsetup import configure_logging
from flowd.daemon.config import FIELDS_HELP, DaemonConfig, load_config, parse_bool, parse_list

__all__ = ["add_parser", "run", "configure_logging"]


# defaults that load_config fills in at start, shown as what they become
_SHOWN_DEFAULTS = {"state_dir": "$XDG_STATE_HOME/flowd/daemon, else ~/.local/state/flowd/daemon"}


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("serve", help="run the flowd daemon over Kafka",
                              description="Consume pipeline submissions, commands and reports from Kafka, "
                              "run pipelines, and emit status events (docs/daemon.md).")
    p.add_argument("--config", metavar="FILE", default=None, help="TOML config file")
    defaults = DaemonConfig()
    for field, text in FIELDS_HELP.items():
        default = getattr(defaults, field)
        kind = (parse_bool if isinstance(default, bool) else parse_list if isinstance(default, list)
                else type(default) if default is not None else str)
        shown = _SHOWN_DEFAULTS.get(field, "none" if default is None else str(default))
        p.add_argument(f"--{field.replace('_', '-')}", dest=field, default=None, type=kind,
                       help=f"{text} (env FLOWD_{field.upper()}, default {shown})")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"),
                   help="structured logs on stderr from this level (default info)")
    add_limit_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flowd.daemon.executors import ExecutorUnavailable
    from flowd.daemon.kafka import BusError
    from flowd.daemon.serve import Daemon

    configure_logging(args.log_level, cache=True, json_stdlib=True)
    overrides = {f: getattr(args, f, None) for f in FIELDS_HELP}
    try:
        config = load_config(file=args.config, overrides=overrides, limit_items=args.limit)
        from flowd.daemon.security import client_security

        client_security(config)  # a missing password file or CA fails here, in one line
    except Exception as exc:  # noqa: BLE001 - a bad config file or value: say so, no traceback
        print(f"flowd serve: invalid configuration: {exc}", file=sys.stderr)
        return 2

    async def main() -> None:
        daemon = Daemon(config, on_released=_detach if config.executor == "local" and config.local_detach else None)
        async with anyio.create_task_group() as tg:
            async def stop_on_signal() -> None:
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for _ in signals:
                        _log().info("signal_received")
                        tg.cancel_scope.cancel()
                        return

            tg.start_soon(stop_on_signal)
            await daemon.run()

    failures: list[tuple[int, BaseException]] = []
    try:
        anyio.run(main)
    except* ExecutorUnavailable as group:
        failures.extend((2, leaf) for leaf in _leaves(group))
    except* BusError as group:
        failures.extend((1, leaf) for leaf in _leaves(group))
    except* Exception as group:  # noqa: BLE001 - a bug: say what it was, with its traceback, and fail
        import traceback

        for leaf in _leaves(group):
            traceback.print_exception(leaf, file=sys.stderr)
            failures.append((1, leaf))
    for _code, failure in failures:
        print(f"flowd serve: {type(failure).__name__}: {failure}", file=sys.stderr)
    return max((code for code, _ in failures), default=0)


def _detach() -> None:
    """Every partition is released (final snapshots committed, offsets too): exit now, before
    the local executor would stop the op processes. They run on in their own sessions and the
    daemon that takes their partitions over adopts them, exactly as after a crash."""
    _log().info("detached_from_local_ops")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _log() -> Any:
    import structlog

    return structlog.get_logger("flowd.daemon")


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]
