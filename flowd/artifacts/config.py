"""Where a deployment keeps its artifacts, and opening that store.

One setting names the store, the same way for every command: ``--artifacts-store URL``, else
``$FLOWD_ARTIFACTS_STORE``, else (``flowd serve``) ``artifacts_store`` in ``flowd.toml``, else
the folder ``<state dir>/artifacts``. A URL is a folder (a path, or ``file:///path``) or
``s3://bucket[/prefix]``; for S3, ``artifacts_endpoint`` (``$FLOWD_ARTIFACTS_ENDPOINT``) names an
S3-compatible server (empty: AWS), ``artifacts_region`` the region, and ``artifacts_connection``
a connection of the catalog whose secret carries the credentials into job pods. Credentials
themselves are never settings: they come from the environment (``AWS_ACCESS_KEY_ID``, ...).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import msgspec

from flowd.artifacts.folder import FolderStore
from flowd.artifacts.store import ArtifactStoreError, Store

__all__ = ["ENV", "StoreConfig", "open_store"]

# environment variables of the settings (the flags and flowd.toml keys drop the FLOWD_ and lower-case)
ENV = {"url": "FLOWD_ARTIFACTS_STORE", "endpoint": "FLOWD_ARTIFACTS_ENDPOINT",
       "region": "FLOWD_ARTIFACTS_REGION", "connection": "FLOWD_ARTIFACTS_CONNECTION"}


class StoreConfig(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    url: str = ""
    endpoint: str = ""
    region: str = ""
    connection: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: str | None) -> StoreConfig:
        """The settings from ``FLOWD_ARTIFACTS_*``, with non-empty ``overrides`` (flags) on top."""
        env = os.environ if env is None else env
        values = {field: env.get(name, "") for field, name in ENV.items()}
        values.update({k: v for k, v in overrides.items() if v})
        return cls(**values)

    @property
    def is_s3(self) -> bool:
        return self.url.startswith("s3://")


def open_store(config: StoreConfig, *, default_folder: Path,
               credentials: dict[str, str] | None = None) -> Store:
    """The store ``config`` names (the folder ``default_folder`` when it names none).
    ``credentials`` (``access_key_id``, ``secret_access_key``, ``session_token``) override what
    the S3 client finds in the environment. Raises ArtifactStoreError on a bad URL."""
    url = config.url.strip()
    if not url:
        return FolderStore(default_folder)
    parts = urlsplit(url)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ArtifactStoreError(f"artifacts store {url!r}: an s3:// URL needs a bucket (s3://bucket/prefix)")
        from flowd.artifacts.s3 import S3Store  # imported only when used: the Rust extension loads lazily

        return S3Store(parts.netloc, parts.path, endpoint=config.endpoint, region=config.region or "us-east-1",
                       credentials=credentials)
    if parts.scheme == "file":
        return FolderStore(Path(parts.path))
    if parts.scheme:
        raise ArtifactStoreError(f"artifacts store {url!r}: unsupported scheme {parts.scheme!r} "
                                 "(a folder path, file:///path or s3://bucket/prefix)")
    return FolderStore(Path(url).expanduser())
