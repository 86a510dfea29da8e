"""The connection catalog: named connections (Polyaxon's ``V1Connection``) that ops use by name in
``run.connections``, ``init[].connection`` and params/IO ``connection:``.

Both executors read the same catalog (``connections`` of the executor settings, see
docs/kubernetes.md and docs/local-runtime.md): the Kubernetes executor turns a connection into
volumes, ``secretKeyRef`` env and mounts; the local executor reads the same secrets and config
maps from a folder per resource (flowd.runtime.secrets). This module only holds the shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

__all__ = ["GIT_KINDS", "STORE_KINDS", "Connection", "ConnectionResource", "named"]

# connection kinds whose init step clones a repository
GIT_KINDS = frozenset({"git"})
# connection kinds whose init step copies files (``artifacts``/``paths``) out of a store or volume
STORE_KINDS = frozenset({"s3", "gcs", "wasb", "host_path", "volume_claim"})


class ConnectionResource(msgspec.Struct, omit_defaults=True, frozen=True, rename="camel"):
    """A Secret or ConfigMap of a connection (Polyaxon's ``V1ConnectionResource``).

    With ``mount_path`` it is mounted as a volume there (only ``items`` if given); without,
    its keys become env vars of the main container (only ``items`` if given)."""

    name: str
    items: list[str] | None = None
    mount_path: str | None = None


class Connection(msgspec.Struct, omit_defaults=True, frozen=True, rename="camel"):
    """A named connection from the agent's catalog (Polyaxon's ``V1Connection``). Ops list
    the names they use in ``run.connections`` (and params/IO with ``connection:``).

    ``kind`` ``host_path`` and ``volume_claim`` mount ``schema`` (``hostPath``/``volumeClaim``,
    ``mountPath``, ``readOnly``) into the main container; bucket and other kinds only bring
    their secret, config map and env."""

    name: str = ""
    kind: str = "custom"
    schema: dict[str, Any] | None = msgspec.field(default=None, name="schema")
    secret: ConnectionResource | None = None
    config_map: ConnectionResource | None = None
    env: list[dict[str, Any]] = []


def named(catalog: Mapping[str, Connection]) -> dict[str, Connection]:
    """The catalog with each connection's ``name`` set from its key (a catalog entry need not
    repeat its name)."""
    return {key: conn if conn.name else msgspec.structs.replace(conn, name=key) for key, conn in catalog.items()}
