"""The Kafka flags every user command that talks to the daemon shares (``--brokers``,
``--prefix``, ``--config``, the security flags), and the one function that turns them into a
checked :class:`~flowd.daemon.config.DaemonConfig`. Argument parsing is the CLI's business: the
daemon's config module knows files and the environment, not argparse."""

from __future__ import annotations

import tomllib
from typing import Any

import msgspec

from flowd.daemon.config import SECURITY_HELP, DaemonConfig, load_config, parse_bool

__all__ = ["add_bus_args", "add_security_args", "bus_config"]


def add_security_args(parser: Any) -> None:
    """``--security-protocol``, ``--ssl-*``, ``--sasl-*``, ``--connect-timeout`` (no secrets: those
    are read from files or the environment)."""
    defaults = DaemonConfig()
    group = parser.add_argument_group("Kafka security (docs/daemon.md)")
    for field, text in SECURITY_HELP.items():
        default = getattr(defaults, field)
        kind = parse_bool if isinstance(default, bool) else type(default)
        group.add_argument(f"--{field.replace('_', '-')}", dest=field, default=None, type=kind,
                           help=f"{text} (env FLOWD_{field.upper()}, default {default!r})")


def add_bus_args(parser: Any) -> None:
    """``--brokers``/``--prefix``/``--config`` and the security flags, shared by the user commands."""
    parser.add_argument("--brokers", default=None, help="Kafka bootstrap servers (default: $FLOWD_BROKERS, else 127.0.0.1:9092)")
    parser.add_argument("--prefix", default=None, help="topic name prefix (default: $FLOWD_PREFIX, else flowd.)")
    parser.add_argument("--config", default=None, metavar="FILE", help="daemon config file (TOML) to read brokers/prefix/security from")
    add_security_args(parser)


def bus_config(args: Any) -> DaemonConfig:
    """The Kafka settings of a user command. A bad config (file, env, flags or security
    settings) exits 2 with one line on stderr. aiokafka's own log is silenced: its errors
    reach the user as the command's one-line error (flowd.daemon.kafka.start_client)."""
    import logging
    import sys

    from flowd.daemon.security import SecurityConfigError, client_security

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    overrides = {"brokers": args.brokers, "prefix": args.prefix}
    overrides.update({field: getattr(args, field, None) for field in SECURITY_HELP})
    try:
        config = load_config(file=args.config, overrides=overrides)
        client_security(config)
    except (SecurityConfigError, ValueError, OSError, tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        print(f"flowd {getattr(args, 'command', '')}: invalid configuration: {exc}".replace("  ", " "), file=sys.stderr)
        raise SystemExit(2) from None
    return config
