"""Joins (POLYFLOW §8.4): at an op's compile step, select runs flowd knows with a query and bind
lists of their values into the op's params.

The runs a join sees are engine state, never read from outside: every op (at any depth) of every
run the engine holds. Under ``flowd run`` that is the pipeline's own run; under ``flowd serve``
it is every run of the partition, the finished ones included until the partition forgets them
(``retention`` seconds after they finished, and at most ``max_retained_runs`` of them: see
docs/joins.md). Each op is one run record with the fields of :mod:`flowd.spec.pql`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from flowd.engine.state import Node, RunState
from flowd.spec.limits import Limits, over
from flowd.spec.pql import Condition, PqlError, field_value, parse_query, parse_sort, sort_records

__all__ = ["JoinError", "JoinSource", "RunRecord", "select", "join_values"]


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


_FIELDS = ("uuid", "name", "status", "kind", "runtime", "tags", "pipeline", "controller", "created_at",
           "started_at", "finished_at", "duration", "inputs", "outputs", "metrics", "meta_values")


class RunRecord(Mapping[str, Any]):
    """The query fields of one op of one run (see flowd.spec.pql.FIELDS), computed when first
    read: a query usually decides on one or two fields (``pipeline: <uuid>``), so the others of
    the ops it rejects are never built (a uuid is a SHA-1)."""

    __slots__ = ("run", "node", "_source", "_tags", "_values")

    def __init__(self, run: RunState, node: Node, source: JoinSource, tags: bool) -> None:
        self.run = run
        self.node = node
        self._source = source
        self._tags = tags
        self._values: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        values = self._values
        if key in values:
            return values[key]
        if key not in _FIELDS:
            raise KeyError(key)
        value = values[key] = self._compute(key)
        return value

    def __contains__(self, key: object) -> bool:
        return key in _FIELDS

    def __iter__(self) -> Iterator[str]:
        return iter(_FIELDS)

    def __len__(self) -> int:
        return len(_FIELDS)

    def _compute(self, key: str) -> Any:
        run, node, uuid_of = self.run, self.node, self._source.uuid_of
        if key == "uuid":
            return uuid_of(run.run_id, node.path)
        if key in ("name", "status", "kind", "created_at", "started_at", "finished_at"):
            return getattr(node, key)
        if key == "runtime":
            return node.kind
        if key == "tags":
            return self._source.tags_of(run, node) if self._tags else []
        if key == "pipeline":
            return uuid_of(run.run_id, node.parent) if node.parent is not None else None
        if key == "controller":
            return uuid_of(run.run_id, "") if node.parent is not None else None
        if key == "duration":
            if node.finished_at is None:
                return None
            return node.finished_at - (node.started_at if node.started_at is not None else node.created_at)
        if key == "inputs":
            return node.params or {}
        if key == "outputs":
            return node.outputs or {}
        if key == "metrics":
            return _metrics(node)
        meta: dict[str, Any] = {}
        if node.suggestion is not None:
            meta["iteration"] = node.iteration if node.iteration is not None else node.index
            if node.bracket is not None:
                meta["bracket_iteration"] = node.bracket
        return meta


class JoinSource:
    """The runs a join may select from, as the engine holds them. ``tags_of(run, node)`` gives
    an op's tags (computed only when a query or sort names ``tags``)."""

    def __init__(self, runs: Callable[[], Iterable[RunState]], tags_of: Callable[[RunState, Node], list[str]],
                 limits: Limits, uuid_of: Callable[[str, str], str]) -> None:
        self._runs = runs
        self.tags_of = tags_of
        self.limits = limits
        self._uuid_of = uuid_of
        # (run id, path) -> uuid: a SHA-1 each, and every join scans every op again
        self._uuids: dict[tuple[str, str], str] = {}

    def uuid_of(self, run_id: str, path: str) -> str:
        uid = self._uuids.get((run_id, path))
        if uid is None:
            if len(self._uuids) > 1_000_000:
                self._uuids.clear()
            uid = self._uuids[(run_id, path)] = self._uuid_of(run_id, path)
        return uid

    def records(self, exclude: tuple[str, str], *, tags: bool, pipeline: str | None = None) -> list[RunRecord]:
        """A record per op held (but ``exclude``, the joining op); with ``pipeline`` (a uuid)
        only the ops directly under that pipeline: a query that requires ``pipeline: X`` reads
        X's children instead of every op of every run."""
        if pipeline is not None:
            return self._children_of(pipeline, exclude, tags)
        out = []
        for run in self._runs():
            skip = exclude[1] if run.run_id == exclude[0] else None
            for node in run.nodes.values():
                if node.path != skip:
                    out.append(RunRecord(run, node, self, tags))
        return out


    def _children_of(self, pipeline: str, exclude: tuple[str, str], tags: bool) -> list[RunRecord]:
        out = []
        for run in self._runs():
            for node in run.nodes.values():
                if not node.children or self.uuid_of(run.run_id, node.path) != pipeline:
                    continue
                skip = exclude[1] if run.run_id == exclude[0] else None
                for path in node.children:
                    child = run.nodes.get(path)
                    if child is not None and child.path != skip and child.parent == node.path:
                        out.append(RunRecord(run, child, self, tags))
        return out


def _required_pipeline(tree: Any) -> str | None:
    """The uuid X when every record the query matches must have ``pipeline: X`` (a plain
    equality in the query's top-level conjunction), else None."""
    if isinstance(tree, Condition):
        if tree.field == "pipeline" and tree.op == "eq" and not tree.negate and isinstance(tree.arg, str):
            return tree.arg
        return None
    kind, parts = tree
    if kind != "and":
        return None
    for part in parts:
        found = _required_pipeline(part)
        if found is not None:
            return found
    return None


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
           offset: Any) -> list[RunRecord]:
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
    records = source.records(exclude, tags=needs_tags, pipeline=_required_pipeline(parsed.tree))
    matched = [rec for rec in records if parsed.match(rec)]
    if order:
        matched = sort_records(matched, order)
    return matched[start:start + n]


def _value_of(record: RunRecord, path: str, globals_of: Callable[[RunState, Node], dict[str, Any]]) -> Any:
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
        values = globals_of(record.run, record.node)
    else:
        return None
    if not key:
        return dict(values)
    return field_value({section: values}, f"{section}.{key}")


def _is_artifacts(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and set(value) <= {"files", "dirs"}


def join_values(selected: list[RunRecord], path: str,
                globals_of: Callable[[RunState, Node], dict[str, Any]]) -> Any:
    """The list of ``path`` over the selected runs, in order (None where missing); ArtifactsType
    mappings are merged into one, each entry prefixed with ``<run uuid>/``."""
    values = [_value_of(rec, path, globals_of) for rec in selected]
    present = [v for v in values if v is not None]
    if present and all(_is_artifacts(v) for v in present):
        merged: dict[str, list[str]] = {"files": [], "dirs": []}
        for rec, v in zip(selected, values, strict=True):
            if v is None:
                continue
            for kind in ("files", "dirs"):
                merged[kind].extend(f"{rec['uuid']}/{item}" for item in v.get(kind) or [])
        return merged
    return values
