"""The local result cache of ``flowd run`` (POLYFLOW §5.10): one JSON file per cache key under
``<state dir>/cache/``, shared by every run in that state dir.

An entry is written after an attempt succeeded (atomically: a temporary file renamed over the
final name, so a reader never sees half an entry and a crash leaves at worst a stray temporary
file). Before starting an attempt whose ``StartOp`` carries a ``cache_key`` the executor looks
the key up; a hit younger than ``cache_ttl`` is reported as ``succeeded`` with reason
``CacheHit`` and the original outputs, and no process starts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgspec

__all__ = ["CacheEntry", "LocalCache", "HIT_PREFIX"]

# the message of a cache hit: "cache hit: outputs of <run id>/<op path>"
HIT_PREFIX = "cache hit: outputs of "


class CacheEntry(msgspec.Struct):
    run_id: str
    path: str
    finished_at: float
    outputs: dict[str, Any] | None = None


class LocalCache:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.hits = 0
        self.misses = 0

    def _file(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def lookup(self, key: str, ttl: float | None, now: float) -> CacheEntry | None:
        try:
            entry = msgspec.json.decode(self._file(key).read_bytes(), type=CacheEntry)
        except (OSError, msgspec.DecodeError):
            self.misses += 1
            return None
        if ttl is not None and now - entry.finished_at > ttl:
            self.misses += 1
            return None
        self.hits += 1
        return entry

    def save(self, key: str, entry: CacheEntry) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = self.root / f".{key}.{os.getpid()}.tmp"
            tmp.write_bytes(msgspec.json.encode(entry))
            os.replace(tmp, self._file(key))
        except OSError:
            pass  # a cache that cannot be written only costs a re-run later
