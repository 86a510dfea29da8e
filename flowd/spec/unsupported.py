"""Fields flowd accepts (they are valid Polyaxon) but does not act on yet: each gets a warning
from ``flowd check``, and ``flowd run``/``flowd submit`` print the same once at run start.

This is the one list to shrink as features land: remove an entry when flowd honours it (the
tuner kinds and early-stopping policies are being implemented on their own branch).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flowd.spec import model as m

__all__ = ["IGNORED_FIELDS", "IGNORED_MATRIX_KINDS", "IGNORED_STOPPING_POLICIES", "check_ignored"]

# op/component field -> what flowd does instead
IGNORED_FIELDS: dict[str, str] = {
    "plugins": "flowd configures no pod auxiliaries (auth, docker, shm, sidecar, notifications...)",
    "build": "flowd runs no build step: the op runs with the image it names",
    "queue": "flowd has no queues: ops are admitted by `concurrency` only",
    "cost": "flowd does not account costs",
    "mount": "flowd uploads and mounts no local paths",
    "hooks": "flowd does not run hooks yet",
    "cache": "only `flowd run` caches results (in its state dir); `flowd serve` does not yet: every op runs there",
}
# matrix kinds validated but not run (the op fails at run time)
IGNORED_MATRIX_KINDS: dict[str, str] = {
    kind: f"matrix kind `{kind}` is not supported by this version of flowd: the op will fail when it starts"
    for kind in ("hyperband", "bayes", "tpe", "iterative")
}
# metric early-stopping policies that never fire
IGNORED_STOPPING_POLICIES: dict[str, str] = {
    kind: f"early-stopping policy `{kind}` is not implemented by this version of flowd: it never fires"
    for kind in ("median", "truncation", "diff")
}

_CAMEL = {"plugins": "plugins", "build": "build", "queue": "queue", "cost": "cost", "mount": "mount",
          "hooks": "hooks", "cache": "cache"}

Emit = Callable[[str, tuple[Any, ...], str], None]


def _set(value: Any) -> bool:
    return value is not None and value != [] and value != {}


def check_ignored(op: m.PolyaxonfileSpec, merged: m.PolyaxonfileSpec, emit: Emit) -> None:
    """Warn about every field of ``op`` (or of its composed component ``merged``) that flowd
    accepts and ignores."""
    for field, why in IGNORED_FIELDS.items():
        if _set(getattr(op, field, None)) or _set(getattr(merged, field, None)):
            emit("warning", (_CAMEL[field],), f"`{_CAMEL[field]}` is accepted but not acted on: {why}")
    matrix = op.matrix
    if matrix is not None and not isinstance(matrix, str):
        tag = type(matrix).__struct_config__.tag
        if isinstance(tag, str) and tag in IGNORED_MATRIX_KINDS:
            emit("warning", ("matrix", "kind"), IGNORED_MATRIX_KINDS[tag])
        rules = getattr(matrix, "early_stopping", None)
        if isinstance(rules, list):
            _policies(rules, ("matrix", "earlyStopping"), emit)
    run = merged.run if isinstance(merged.run, m.DagRuntime) else op.run
    if isinstance(run, m.DagRuntime) and isinstance(run.early_stopping, list):
        _policies(run.early_stopping, ("run", "earlyStopping"), emit)


def _policies(rules: list[Any], where: tuple[Any, ...], emit: Emit) -> None:
    for i, rule in enumerate(rules):
        policy = getattr(rule, "policy", None)
        tag = type(policy).__struct_config__.tag if policy is not None else None
        if isinstance(tag, str) and tag in IGNORED_STOPPING_POLICIES:
            emit("warning", (*where, i, "policy"), IGNORED_STOPPING_POLICIES[tag])
