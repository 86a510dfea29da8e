"""Outputs that are files: what an op wrote under ``$FLOWD_ARTIFACTS`` becomes, in its reported
outputs, the place the store keeps it.

Rules (the same for every executor), for an op whose artifacts end up at ``location``:

* a declared output ``N`` the op did not report, when ``$FLOWD_ARTIFACTS/N`` exists (a file or a
  directory), is reported as ``<location>/N``;
* a reported string that is a path inside ``$FLOWD_ARTIFACTS`` (absolute, or ``$FLOWD_ARTIFACTS/...``
  as written) becomes the same path under ``location``;
* a reported ``artifacts`` value ``{"files": [...], "dirs": [...]}`` gets each relative entry
  prefixed with ``location/`` (Polyaxon prefixes them with the run's uuid).

Pure: the caller says which names exist under the staging directory.
"""

from __future__ import annotations

from typing import Any

__all__ = ["bind_outputs"]


def _rebase(value: str, staging: str, location: str) -> str:
    for head in (staging.rstrip("/") + "/", "$FLOWD_ARTIFACTS/"):
        if value.startswith(head):
            return f"{location}/{value[len(head):]}"
    return value


def bind_outputs(outputs: dict[str, Any] | None, declared: list[str], present: set[str], *, staging: str,
                 location: str) -> dict[str, Any] | None:
    out = dict(outputs or {})
    for name, value in out.items():
        if isinstance(value, str):
            out[name] = _rebase(value, staging, location)
        elif isinstance(value, dict) and set(value) & {"files", "dirs"} and set(value) <= {"files", "dirs", "workers"}:
            out[name] = {k: ([e if str(e).startswith(("/", "s3://")) else f"{location}/{e}" for e in v]
                             if k in ("files", "dirs") and isinstance(v, list) else v) for k, v in value.items()}
    for name in declared:
        if name not in out and name in present:
            out[name] = f"{location}/{name}"
    return out or outputs
