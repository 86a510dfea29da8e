"""Which runs' artifacts may go: the artifact half of ``flowd gc`` (and of a daemon's sweep).

A run's artifacts (``<run id>/`` in the store) are deleted only when the run itself is gone or
going (past the retention, or removed earlier by ``flowd rm``) AND nothing still refers to them:
no kept run (a consumer's params, a cache hit's outputs name them) and no cache entry (a later
hit would hand out their paths). A run being carried out right now is never touched.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["collectable"]


def collectable(stored: Iterable[str], *, going: set[str], kept: set[str], referenced: set[str]) -> list[str]:
    """Run ids of ``stored`` (the store's top-level prefixes) whose artifacts may be deleted:
    those of runs ``going`` and orphans (runs no longer kept, e.g. removed by ``flowd rm``),
    minus anything ``kept`` or ``referenced``."""
    return sorted(r for r in stored if (r in going or r not in kept) and r not in kept | referenced)


def references(blob: bytes, location: str, candidates: Iterable[str]) -> set[str]:
    """The run ids among ``candidates`` whose artifacts ``blob`` (a run's saved state, a cache
    entry) names: any ``<location>/<run id>/`` inside it. The saved state holds params and
    outputs verbatim, so a byte search finds every reference without restoring an engine."""
    head = location.rstrip("/").encode() + b"/"
    if head not in blob:
        return set()
    return {r for r in candidates if head + r.encode() + b"/" in blob}
