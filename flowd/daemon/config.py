"""``flowd serve`` configuration: defaults < config file (TOML) < ``FLOWD_*`` env < flags.

Every field can be set in a TOML file (``--config FILE``, top-level keys as below), by an
environment variable ``FLOWD_<FIELD>`` (upper case, e.g. ``FLOWD_BROKERS``,
``FLOWD_SNAPSHOT_INTERVAL``) or by a flag ``--<field-with-dashes>``. The limits on what a
submission may make the daemon build (docs/limits.md) are a ``[limits]`` table in the file,
``FLOWD_<NAME>`` (e.g. ``FLOWD_MAX_OPS``) and ``--limit NAME=VALUE``, layered the same way.
"""

from __future__ import annotations

import os
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from flowd.spec.limits import Limits, limits_from

__all__ = ["FIELDS_HELP", "DaemonConfig", "Topics", "load_config"]


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
    # the result cache (flowd.daemon.cache): false = every op runs, nothing is read or written
    cache: bool = True
    # result cache entries each replica keeps in memory (the oldest results go first)
    cache_max_entries: int = 100_000
    # seconds an op start waits for the cache topic to be read after the daemon starts
    cache_wait: float = 10.0
    # partitions of the topics the daemon creates (existing topics are left alone)
    partitions: int = 6
    # replication factor of topics the daemon creates (0: 3, or fewer on a smaller cluster)
    replication_factor: int = 0
    create_topics: bool = True
    session_timeout_ms: int = 10000
    heartbeat_interval_ms: int = 2000
    max_batch: int = 2000
    client_id: str = ""
    # what one submission may make the daemon build (docs/limits.md)
    limits: Limits = Limits()
    # Kafka security (flowd.daemon.security; docs/daemon.md "Secured Kafka"). Secrets are read
    # from the *_file settings or from $FLOWD_SASL_PASSWORD / $FLOWD_SSL_KEY_PASSWORD, never argv.
    security_protocol: str = "PLAINTEXT"
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    ssl_key_password_file: str = ""
    ssl_check_hostname: bool = True
    sasl_mechanism: str = "PLAIN"
    sasl_username: str = ""
    sasl_password_file: str = ""
    # a client that cannot connect and authenticate within this many seconds fails
    connect_timeout: float = 15.0
    # urlRef in submitted specs (flowd.daemon.urlrefs; docs/daemon.md "urlRef"): off unless
    # this lists URL prefixes; loopback/link-local/private addresses only when a prefix names
    # the address or url_ref_allow_networks (CIDRs) holds it
    url_ref_allow: list[str] = []
    url_ref_allow_networks: list[str] = []
    url_ref_timeout: float = 10.0
    url_ref_max_bytes: int = 1024 * 1024
    url_ref_max_documents: int = 16
    url_ref_concurrency: int = 4
    # the artifact store (docs/artifacts.md): a folder (local executor; default <state_dir>/artifacts)
    # or s3://bucket[/prefix] (required for pods), its endpoint and region, and the catalog
    # connection whose secret carries the credentials into pods. Credentials are never settings:
    # the daemon's own S3 client reads AWS_* from its environment
    artifacts_store: str = ""
    artifacts_endpoint: str = ""
    artifacts_region: str = ""
    artifacts_connection: str = ""

    @property
    def topics(self) -> Topics:
        return Topics(self.prefix)

    @property
    def url_policy(self) -> Any:
        from flowd.daemon.urlrefs import UrlPolicy

        return UrlPolicy(allow=self.url_ref_allow, allow_networks=self.url_ref_allow_networks,
                         timeout=self.url_ref_timeout, max_bytes=self.url_ref_max_bytes,
                         max_documents=self.url_ref_max_documents, concurrency=self.url_ref_concurrency)


class Topics:
    __slots__ = ("runs", "events", "external", "subscriptions", "snapshots", "deadletter", "status", "cache")
    runs: str
    events: str
    external: str
    subscriptions: str
    snapshots: str
    deadletter: str
    status: str
    cache: str

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
    "cache": "result cache in the <prefix>cache topic (false: every op runs)",
    "cache_max_entries": "result cache entries each replica keeps in memory",
    "cache_wait": "seconds an op start waits for the cache topic to be read at start",
    "partitions": "partitions of topics the daemon creates",
    "replication_factor": "replication of topics the daemon creates (0: 3, or fewer brokers)",
    "session_timeout_ms": "consumer group session timeout",
    "url_ref_allow": "URL prefixes urlRefs may fetch, comma-separated (default none: urlRef off)",
    "url_ref_allow_networks": "CIDRs of private addresses allowed prefixes may resolve to, comma-separated",
    "url_ref_timeout": "seconds per network step of a urlRef fetch (2x for a whole document)",
    "url_ref_max_bytes": "largest urlRef document",
    "url_ref_max_documents": "most urlRef documents per submission",
    "artifacts_store": "artifact store: a folder, or s3://bucket[/prefix] (pods need S3)",
    "artifacts_endpoint": "S3-compatible endpoint of the artifact store (empty: AWS)",
    "artifacts_region": "region of the S3 artifact store",
    "artifacts_connection": "catalog connection whose secret gives pods the store credentials",
}

# the Kafka security settings: flags of `flowd serve` and of every command that talks to Kafka
SECURITY_HELP = {
    "security_protocol": "PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL",
    "ssl_cafile": "CA certificates (PEM) that sign the brokers' certificates (default: the system CAs)",
    "ssl_certfile": "client certificate (PEM) for mutual TLS",
    "ssl_keyfile": "its private key (PEM; default: in ssl_certfile)",
    "ssl_key_password_file": "file holding the passphrase of an encrypted key (or $FLOWD_SSL_KEY_PASSWORD)",
    "ssl_check_hostname": "verify that the broker's certificate matches its address (true|false)",
    "sasl_mechanism": "PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512",
    "sasl_username": "SASL user name",
    "sasl_password_file": "file holding the SASL password (or $FLOWD_SASL_PASSWORD)",
    "connect_timeout": "seconds to connect and authenticate before failing",
}
FIELDS_HELP.update(SECURITY_HELP)
# never settable in the TOML file either: they belong in a file of their own or the environment
SECRET_KEYS = {"sasl_password": "sasl_password_file or $FLOWD_SASL_PASSWORD",
               "ssl_password": "ssl_key_password_file or $FLOWD_SSL_KEY_PASSWORD",
               "ssl_key_password": "ssl_key_password_file or $FLOWD_SSL_KEY_PASSWORD"}


def parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


def _coerce(field: str, raw: str) -> Any:
    default = getattr(DaemonConfig(), field)
    if isinstance(default, bool):
        return parse_bool(raw)
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    if isinstance(default, dict):
        return msgspec.json.decode(raw)
    if isinstance(default, list):
        return parse_list(raw)
    return raw


def parse_list(raw: str) -> list[str]:
    """A JSON array, or comma-separated values."""
    raw = raw.strip()
    if raw.startswith("["):
        return list(msgspec.json.decode(raw, type=list[str]))
    return [item.strip() for item in raw.split(",") if item.strip()]


def load_config(*, file: str | None = None, env: Mapping[str, str] | None = None,
                overrides: dict[str, Any] | None = None, limit_items: list[str] | None = None) -> DaemonConfig:
    values: dict[str, Any] = {}
    if file:
        values.update(tomllib.loads(Path(file).read_text()))
        for key, instead in SECRET_KEYS.items():
            if key in values:
                raise ValueError(f"{file}: `{key}` cannot be set in the config file; use {instead}")
    env = os.environ if env is None else env
    table = values.pop("limits", None)
    if table is not None and not isinstance(table, dict):
        raise ValueError("`limits` must be a table: [limits] with max_ops = ... (docs/limits.md)")
    values["limits"] = msgspec.structs.asdict(limits_from(env=env, table=table, items=limit_items or ()))
    for field in DaemonConfig.__struct_fields__:
        if field == "limits":
            continue
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
