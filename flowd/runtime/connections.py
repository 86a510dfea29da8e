"""Connections under ``flowd run``: the catalog the Kubernetes executor reads, for local processes.

A connection brings a process env vars, secrets, config maps and mounted folders. In a pod the
kubelet provides them; on this machine flowd does, from a *secrets folder* (``--secrets-dir``,
``$FLOWD_SECRETS_DIR``, default ``~/.config/flowd/secrets``) that holds one folder per Secret or
ConfigMap and one file per key, the layout of a Secret mounted in a pod (and what ``kubectl
create secret generic NAME --from-file=DIR`` reads):

    <secrets dir>/<resource name>/<key>     (the file's content is the value)

Per connection, as on Kubernetes (flowd.k8s.pod):

* ``secret``/``configMap`` with ``mountPath``: that path names the resource's folder (the op's
  command, args and env values are rewritten, flowd.initsteps.paths);
* with ``items`` (no ``mountPath``): one env var per item, read from its file;
* neither: every file of the folder becomes an env var;
* ``env``: added as is;
* ``host_path``: ``schema.mountPath`` names ``schema.hostPath`` on this machine;
* ``volume_claim``: ``schema.mountPath`` names ``<state dir>/volumes/<claim>`` (created, kept
  across runs like a claim).

Values are read from the files by the process about to start the command, never written to the
run's state, argv or logs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from flowd.connections import Connection, ConnectionResource, named

__all__ = ["ConnectionProblem", "LocalConnections"]


class ConnectionProblem(Exception):
    pass


class LocalConnections:
    def __init__(self, catalog: Mapping[str, Connection], *, secrets_dir: Path, volumes_dir: Path) -> None:
        self.catalog = named(catalog)
        self.secrets_dir = Path(secrets_dir).absolute()  # processes run in other folders
        self.volumes_dir = Path(volumes_dir)

    def lookup(self, name: Any) -> Connection:
        conn = self.catalog.get(str(name))
        if conn is None:
            known = ", ".join(sorted(self.catalog)) or "none configured: see --executor-config"
            raise ConnectionProblem(f"unknown connection {name!r} (known: {known})")
        return conn

    def env_sources(self, names: Iterable[Any]) -> list[dict[str, Any]]:
        """What :func:`flowd.initsteps.envsources.read_env_sources` reads for these connections."""
        out: list[dict[str, Any]] = []
        for name in names:
            conn = self.lookup(name)
            for what, res in (("secret", conn.secret), ("configMap", conn.config_map)):
                if res is not None and not res.mount_path:
                    out += self._resource_env(conn, what, res)
            for item in conn.env:
                if not isinstance(item, dict) or "name" not in item:
                    raise ConnectionProblem(f"connection {conn.name or name!r}: env entries need a name")
                if item.get("value") is not None:
                    out.append({"name": str(item["name"]), "value": _str(item["value"])})
                else:
                    out.append(self._value_from(conn, item))
        return out

    def _folder(self, res: ConnectionResource) -> Path:
        return self.secrets_dir / res.name

    def _resource_env(self, conn: Connection, what: str, res: ConnectionResource) -> list[dict[str, Any]]:
        base = {"connection": conn.name, "what": what}
        if res.items:
            return [{**base, "name": k, "file": str(self._folder(res) / k)} for k in res.items]
        return [{**base, "resource": res.name, "dir": str(self._folder(res))}]

    def _value_from(self, conn: Connection, item: dict[str, Any]) -> dict[str, Any]:
        ref = (item.get("valueFrom") or {})
        for key, what in (("secretKeyRef", "secret"), ("configMapKeyRef", "configMap")):
            sel = ref.get(key)
            if isinstance(sel, dict) and sel.get("name") and sel.get("key"):
                return {"connection": conn.name, "what": what, "name": str(item["name"]),
                        "file": str(self.secrets_dir / str(sel["name"]) / str(sel["key"]))}
        raise ConnectionProblem(f"connection {conn.name!r}: env {item['name']!r} has neither a value nor a "
                                "secretKeyRef/configMapKeyRef flowd can read on this machine")

    def mounts(self, names: Iterable[Any]) -> dict[str, str]:
        """Container path -> local folder, for the connections' mounted resources and volumes."""
        out: dict[str, str] = {}
        for name in names:
            conn = self.lookup(name)
            for res in (conn.secret, conn.config_map):
                if res is not None and res.mount_path:
                    out[res.mount_path] = str(self._folder(res))
            schema = conn.schema or {}
            if conn.kind in ("host_path", "volume_claim"):
                mount = schema.get("mountPath")
                if not mount:
                    raise ConnectionProblem(f"connection {conn.name or name!r}: schema.mountPath is required for {conn.kind}")
                if conn.kind == "host_path":
                    if not schema.get("hostPath"):
                        raise ConnectionProblem(f"connection {conn.name or name!r}: schema.hostPath is required")
                    out[str(mount)] = str(schema["hostPath"])
                else:
                    claim = schema.get("volumeClaim")
                    if not claim or "/" in str(claim):
                        raise ConnectionProblem(f"connection {conn.name or name!r}: schema.volumeClaim must be a claim name")
                    folder = self.volumes_dir / str(claim)
                    folder.mkdir(parents=True, exist_ok=True)
                    out[str(mount)] = str(folder)
        return out


def _str(value: Any) -> str:
    import json

    return value if isinstance(value, str) else json.dumps(value)
