"""What every artifact store offers: put, get, list and delete of a *key prefix*.

A key is a ``/``-separated relative name (``<run id>/<op path>/model.pt``); a prefix names a
"folder" of keys and is always taken whole (``run-1`` never matches ``run-10/...``). Stores hold
bytes and know nothing of runs, ops or the engine: the layout of keys is the caller's
(:mod:`flowd.artifacts.layout`).

Two implementations: :class:`flowd.artifacts.folder.FolderStore` (a directory: ``flowd run``)
and :class:`flowd.artifacts.s3.S3Store` (S3-compatible object storage: the cluster).
"""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Protocol, runtime_checkable

import msgspec

__all__ = ["ArtifactStoreError", "ObjectInfo", "Store", "Transfer", "check_prefix", "join"]


class ArtifactStoreError(Exception):
    """A store operation failed: the message names the store location and the key."""


class ObjectInfo(msgspec.Struct, frozen=True):
    key: str  # relative to the store's root
    size: int
    modified: float  # epoch seconds


class Transfer(msgspec.Struct, frozen=True):
    """What one put or get moved."""

    files: int = 0
    bytes: int = 0


def check_prefix(prefix: str) -> str:
    """``prefix`` without leading/trailing slashes; refuses what could leave the store's root
    (``..``, absolute paths, empty segments), so a key can never name a file outside it."""
    clean = prefix.strip("/")
    if clean == "":
        return ""
    parts = clean.split("/")
    if any(p in ("", ".", "..") for p in parts) or "\\" in clean or "\0" in clean:
        raise ArtifactStoreError(f"invalid artifact key {prefix!r}: empty, '.' or '..' segments are not allowed")
    return clean


def join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


@runtime_checkable
class Store(Protocol):
    """An artifact store. Every method takes a key prefix (see :func:`check_prefix`)."""

    def location(self, prefix: str) -> str:
        """Where ``prefix`` lives, for people and for other processes: an absolute path for a
        folder store, ``s3://bucket/<prefix of the store>/<prefix>`` for S3."""
        ...

    def local_path(self, prefix: str) -> Path | None:
        """The local directory holding ``prefix`` when the store is a folder (readers use it in
        place, without a copy), else None."""
        ...

    async def put(self, prefix: str, source: Path) -> Transfer:
        """Store ``source`` under ``prefix``: a directory's files as ``prefix/<relative path>``, a
        file as ``prefix/<its name>``. Objects already under ``prefix`` with the same keys are
        replaced; others are left alone."""
        ...

    async def get(self, prefix: str, dest: Path) -> Transfer:
        """Copy every object under ``prefix`` to ``dest/<key relative to prefix>``. Nothing under
        the prefix is an error (a missing artifact must not look like an empty one)."""
        ...

    async def list(self, prefix: str) -> list[ObjectInfo]:
        """Every object under ``prefix`` (recursively), sorted by key."""
        ...

    async def children(self, prefix: str) -> builtins.list[str]:
        """The names one level below ``prefix`` (``run ids`` at the root), sorted."""
        ...

    async def delete(self, prefix: str) -> int:
        """Delete every object under ``prefix``; returns how many. Deleting nothing is not an error."""
        ...
