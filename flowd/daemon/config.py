"""``flowd serve`` configuration: defaults < config file (TOML) < ``FLOWD_*`` env < flags.

Every field can be set in a TOML file (``--config FILE``, top-level keys as below), by an
environment variable ``FLOWD_<FIELD>`` (upper case, e.g. ``FLOWD_BROKERS``,
``FLOWD_SNAPSHOT_INTERVAL``) or by a flag ``--<field-with-dashes>``.
"""

from __future__ import annotations

import os
import socket
import tomllib
from pathlib import Path
from typing import Any

import msgspec

__all__ = ["DaemonConfig", "Topics", "load_config", "FIELDS_HELP"]


class DaemonConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    brokers: str = "127.0.0.1:9092"
    # topic names are <prefix><name>: runs, events, external, subscriptions, snapshots, deadletter
    prefix: str = "flowd."
    group_id: str = "flowd"
    # static membership: a restarted daemon with the same id gets its partitions back without a
    # rebalance (within session_timeout_ms); default: none (dynamic membership)
    instance_id: str | None = None
    executor: str = "local"
    executor_config: dict[str, Any] = {}
    # local executor: on a graceful stop, leave running op processes alone (the next daemon
    # adopts them, as after a crash) instead of stopping them
    local_detach: bool = True
    state_dir: str = ""
    hub: str | None = None
    metrics_host: str = "127.0.0.1"
    # 0 picks a free port (logged); -1 disables the HTTP server
    metrics_port: int = 9464
    # snapshot a partition at least this often (seconds) while it receives input...
    snapshot_interval: float = 30.0
    # ...or after this many input records, whichever comes first
    snapshot_records: int = 50000
    # finished runs stay in memory (``flowd status`` from the daemon, late reports) this long
    retention: float = 3600.0
    # partitions of the topics the daemon creates (existing topics are left alone)
    partitions: int = 6
    # replication factor of topics the daemon creates (0: 3, or fewer on a smaller cluster)
    replication_factor: int = 0
    create_topics: bool = True
    session_timeout_ms: int = 10000
    heartbeat_interval_ms: int = 2000
    max_batch: int = 2000
    client_id: str = ""

    @property
    def topics(self) -> Topics:
        return Topics(self.prefix)


class Topics:
    __slots__ = ("runs", "events", "external", "subscriptions", "snapshots", "deadletter", "status")

    def __init__(self, prefix: str) -> None:
        for name in self.__slots__:
            setattr(self, name, prefix + name)

    def all(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in self.__slots__}


FIELDS_HELP = {
    "brokers": "Kafka bootstrap servers, host:port[,host:port]",
    "prefix": "topic name prefix",
    "group_id": "consumer group of the daemons",
    "instance_id": "static group membership id of this daemon (group_instance_id)",
    "executor": "local | k8s | instant",
    "state_dir": "local state (attempt dirs of the local executor)",
    "hub": "folder of hub components for hubRef in submitted specs",
    "metrics_host": "address of the /metrics, /healthz, /readyz server",
    "metrics_port": "port of that server (0: any free port, -1: none)",
    "snapshot_interval": "seconds between snapshots of a partition that receives input",
    "snapshot_records": "input records between snapshots",
    "retention": "seconds a finished run stays in memory",
    "partitions": "partitions of topics the daemon creates",
    "replication_factor": "replication of topics the daemon creates (0: 3, or fewer brokers)",
    "session_timeout_ms": "consumer group session timeout",
}


def _coerce(field: str, raw: str) -> Any:
    default = getattr(DaemonConfig(), field)
    if isinstance(default, bool):
        return raw.lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    if isinstance(default, dict):
        return msgspec.json.decode(raw)
    return raw


def load_config(*, file: str | None = None, env: dict[str, str] | None = None,
                overrides: dict[str, Any] | None = None) -> DaemonConfig:
    values: dict[str, Any] = {}
    if file:
        values.update(tomllib.loads(Path(file).read_text()))
    env = os.environ if env is None else env
    for field in DaemonConfig.__struct_fields__:
        raw = env.get(f"FLOWD_{field.upper()}")
        if raw not in (None, ""):
            values[field] = _coerce(field, raw)
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    config = msgspec.convert(values, DaemonConfig)
    if not config.state_dir:
        base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        config.state_dir = str(Path(base) / "flowd" / "daemon")
    if not config.client_id:
        config.client_id = f"flowd-{socket.gethostname()}-{os.getpid()}"
    return config


def add_bus_args(parser: Any) -> None:
    """``--brokers``/``--prefix``/``--config`` shared by the user commands."""
    parser.add_argument("--brokers", default=None, help="Kafka bootstrap servers (default: $FLOWD_BROKERS, else 127.0.0.1:9092)")
    parser.add_argument("--prefix", default=None, help="topic name prefix (default: $FLOWD_PREFIX, else flowd.)")
    parser.add_argument("--config", default=None, metavar="FILE", help="daemon config file (TOML) to read brokers/prefix from")


def bus_config(args: Any) -> DaemonConfig:
    return load_config(file=args.config, overrides={"brokers": args.brokers, "prefix": args.prefix})
