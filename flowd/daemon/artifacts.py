"""The daemon's artifact store (``artifacts_*`` in flowd.toml, ``FLOWD_ARTIFACTS_*``,
``--artifacts-*``; docs/artifacts.md "Under flowd serve"): where runs' artifacts refs point, and
what each executor is given. Pure: no client is opened here."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flowd.daemon.config import DaemonConfig

__all__ = ["artifacts_location", "executor_settings"]


def _s3_base(url: str) -> str:
    parts = urlsplit(url)
    prefix = parts.path.strip("/")
    return f"s3://{parts.netloc}/{prefix}" if prefix else f"s3://{parts.netloc}"


def artifacts_location(config: DaemonConfig) -> str | None:
    """The store location artifacts refs resolve against (the ``artifacts_store`` of a run's
    context), or None when this daemon's executor keeps no artifacts (instant; k8s without S3)."""
    url = config.artifacts_store.strip()
    if config.executor == "k8s":
        url = str((config.executor_config or {}).get("artifacts_store") or url)
        return _s3_base(url) if url.startswith("s3://") else None
    if config.executor != "local":
        return None
    if url.startswith("s3://"):
        return _s3_base(url)
    if url.startswith("file://"):
        return str(Path(urlsplit(url).path).absolute())
    return str(Path(url).expanduser().absolute()) if url else str((Path(config.state_dir) / "artifacts").absolute())


def executor_settings(config: DaemonConfig) -> dict[str, Any]:
    """What the executor gets: the k8s executor the ``artifacts_*`` settings (its own
    ``executor_config`` keys win); the local executor reads ``FLOWD_ARTIFACTS_*`` (returned as
    env, which ``flowd serve`` sets for its process, as ``flowd run --artifacts-store`` does)."""
    values = {"store": config.artifacts_store, "endpoint": config.artifacts_endpoint,
              "region": config.artifacts_region, "connection": config.artifacts_connection}
    if config.executor == "k8s":
        return {f"artifacts_{k}": v for k, v in values.items() if v}
    if config.executor == "local":
        return {f"FLOWD_ARTIFACTS_{k.upper()}": v for k, v in values.items() if v}
    return {}
