"""Fields flowd accepts (they are valid Polyaxon) but does not act on yet: each gets a warning
from ``flowd check``, and ``flowd run``/``flowd submit`` print the same once at run start.

This is the one list to shrink as features land: remove an entry when flowd honours it. (Every
matrix kind and early-stopping policy runs now, so none of them is listed.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flowd.spec import model as m

__all__ = ["IGNORED_FIELDS", "check_ignored"]

# op/component field -> what flowd does instead
IGNORED_FIELDS: dict[str, str] = {
    "plugins": "flowd configures no pod auxiliaries (auth, docker, shm, sidecar, notifications...)",
    "build": "flowd runs no build step: the op runs with the image it names",
    "queue": "flowd has no queues: ops are admitted by `concurrency` only",
    "cost": "flowd does not account costs",
    "mount": "flowd uploads and mounts no local paths",
    "hooks": "flowd does not run hooks yet",
    "joins": "flowd does not run joins yet: their params get no values",
    "cache": "only `flowd run` caches results (in its state dir); `flowd serve` does not yet: every op runs there",
}

_CAMEL = {"plugins": "plugins", "build": "build", "queue": "queue", "cost": "cost", "mount": "mount",
          "hooks": "hooks", "joins": "joins", "cache": "cache"}

Emit = Callable[[str, tuple[Any, ...], str], None]


def _set(value: Any) -> bool:
    return value is not None and value != [] and value != {}


def check_ignored(op: m.PolyaxonfileSpec, merged: m.PolyaxonfileSpec, emit: Emit) -> None:
    """Warn about every field of ``op`` (or of its composed component ``merged``) that flowd
    accepts and ignores."""
    for field, why in IGNORED_FIELDS.items():
        if _set(getattr(op, field, None)) or _set(getattr(merged, field, None)):
            emit("warning", (_CAMEL[field],), f"`{_CAMEL[field]}` is accepted but not acted on: {why}")
