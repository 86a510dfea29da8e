"""Joins (POLYFLOW §8.4): at an op's compile step, select runs flowd knows with a query and bind
lists of their values into the op's params.

The runs a join sees are engine state, never read from outside: every op (at any depth) of every
run the engine holds. Under ``flowd run`` that is the pipeline's own run; under ``flowd serve``
it is every run of the partition, the finished ones included until the partition forgets them
(``retention`` seconds after they finished, and at most ``max_retained_runs`` of them: see
docs/joins.md). Each op is one run record with the fields of :mod:`flowd.spec.pql`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flowd.engine.state import Node, RunState
from flowd.spec.limits import Limits, over
from flowd.spec.pql import PqlError, field_value, parse_query, parse_sort, sort_records

__all__ = ["JoinError", "JoinSource", "run_record", "select", "join_values"]


class JoinError(ValueError):
    """A join cannot be executed: the message names the join and the cause."""


def _metrics(node: Node) -> dict[str, Any]:
    """Last reported value of each metric curve; a numeric output stands in for a metric the
    op reported only as an output (``metrics.loss`` of an op with output ``loss``)."""
    out: dict[str, Any] = {}
    for name, value in (node.outputs or {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = value
    for name, points in (node.curves or {}).items():
        if points:
            out[name] = points[-1][-1]
    return out


def run_record(run: RunState, node: Node, uuid_of: Callable[[str, str], str],
               tags: Callable[[], list[str]] | None = None) -> dict[str, Any]:
    """The query fields of one op of one run (see flowd.spec.pql.FIELDS); ``uuid_of(run id,
    path)`` is the op's ``globals.uuid``."""
    duration = None
    if node.finished_at is not None:
        duration = node.finished_at - (node.started_at if node.started_at is not None else node.created_at)
    meta: dict[str, Any] = {}
    if node.suggestion is not None:
        meta["iteration"] = node.iteration if node.iteration is not None else node.index
        if node.bracket is not None:
            meta["bracket_iteration"] = node.bracket
    return {
        "uuid": uuid_of(run.run_id, node.path),
        "name": node.name,
        "status": node.status,
        "kind": node.kind,
        "runtime": node.kind,
        "tags": tags() if tags is not None else [],
        "pipeline": uuid_of(run.run_id, node.parent) if node.parent is not None else None,
        "controller": uuid_of(run.run_id, "") if node.parent is not None else None,
        "created_at": node.created_at,
        "started_at": node.started_at,
        "finished_at": node.finished_at,
        "duration": duration,
        "inputs": node.params or {},
        "outputs": node.outputs or {},
        "metrics": _metrics(node),
        "meta_values": meta,
    }


class JoinSource:
    """The runs a join may select from, as the engine holds them. ``tags_of(run, node)`` gives
    an op's tags (computed only when a query or sort names ``tags``)."""

    def __init__(self, runs: Callable[[], Iterable[RunState]], tags_of: Callable[[RunState, Node], list[str]],
                 limits: Limits, uuid_of: Callable[[str, str], str]) -> None:
        self._runs = runs
        self._tags_of = tags_of
        self.limits = limits
        self.uuid_of = uuid_of

    def records(self, exclude: tuple[str, str], *, tags: bool) -> list[tuple[RunState, Node, dict[str, Any]]]:
        out = []
        for run in self._runs():
            for node in run.nodes.values():
                if (run.run_id, node.path) == exclude:
                    continue
                tag_fn = (lambda r=run, n=node: self._tags_of(r, n)) if tags else None
                out.append((run, node, run_record(run, node, self.uuid_of, tag_fn)))
        return out


def _window(value: Any, what: str, default: int | None) -> int | None:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise JoinError(f"`{what}` must be an integer, got {value!r}")
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise JoinError(f"`{what}` must be an integer, got {value!r}") from None
    if number < 0:
        raise JoinError(f"`{what}` must be 0 or more, got {number}")
    return number


def select(source: JoinSource, exclude: tuple[str, str], query: str, sort: str | None, limit: Any,
           offset: Any) -> list[tuple[RunState, Node, dict[str, Any]]]:
    """The selected runs of one (rendered) join, in order. Raises JoinError."""
    cap = source.limits.max_join_runs
    try:
        parsed = parse_query(query)
        order = parse_sort(sort)
    except PqlError as exc:
        raise JoinError(f"query {query!r}: {exc}" if "sort" not in str(exc) else str(exc)) from None
    n = _window(limit, "limit", cap)
    start = _window(offset, "offset", 0) or 0
    assert n is not None
    if n > cap:
        raise JoinError(str(over("`limit` asks for", n, "runs", setting="max_join_runs", limit=cap)))
    needs_tags = "tags" in parsed.fields or any(f == "tags" for f, _ in order)
    matched = [rec for rec in source.records(exclude, tags=needs_tags) if parsed.match(rec[2])]
    if order:
        by_id = {id(rec[2]): rec for rec in matched}
        matched = [by_id[id(r)] for r in sort_records([rec[2] for rec in matched], order)]
    return matched[start:start + n]


def _value_of(run: RunState, node: Node, record: dict[str, Any], path: str,
              globals_of: Callable[[RunState, Node], dict[str, Any]]) -> Any:
    """§3.4 value path ``p`` on one selected run (None when missing)."""
    p = path.strip()
    if p.startswith("{{") and p.endswith("}}"):
        p = p[2:-2].strip()
    section, _, key = p.partition(".")
    if section == "io":
        values: Any = {**record["inputs"], **record["outputs"]}
    elif section == "inputs":
        values = record["inputs"]
    elif section in ("outputs", "artifacts"):
        # flowd keeps no artifact store: an op's artifacts are the outputs it reported
        values = record["outputs"]
    elif section == "globals":
        values = globals_of(run, node)
    else:
        return None
    if not key:
        return dict(values)
    return field_value({section: values}, f"{section}.{key}")


def _is_artifacts(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and set(value) <= {"files", "dirs"}


def join_values(selected: list[tuple[RunState, Node, dict[str, Any]]], path: str,
                globals_of: Callable[[RunState, Node], dict[str, Any]]) -> Any:
    """The list of ``path`` over the selected runs, in order (None where missing); ArtifactsType
    mappings are merged into one, each entry prefixed with ``<run uuid>/``."""
    values = [_value_of(run, node, rec, path, globals_of) for run, node, rec in selected]
    present = [v for v in values if v is not None]
    if present and all(_is_artifacts(v) for v in present):
        merged: dict[str, list[str]] = {"files": [], "dirs": []}
        for (_, _, rec), v in zip(selected, values, strict=True):
            if v is None:
                continue
            for kind in ("files", "dirs"):
                merged[kind].extend(f"{rec['uuid']}/{item}" for item in v.get(kind) or [])
        return merged
    return values
