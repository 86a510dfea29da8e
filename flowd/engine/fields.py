"""Fields of a node's spec that may be templates, rendered with the node's resolved params
([FLOWD] POLYFLOW §11.1): numbers (``concurrency: "{{ n }}"``), the termination block, a
pipeline's concurrency limit; and the :class:`Resolver` that renders them."""

from __future__ import annotations

from typing import Any

import msgspec

from flowd.engine.index import Index
from flowd.engine.resolve import ResolveError, Resolver
from flowd.engine.state import Node, RunState
from flowd.engine.templates import is_template
from flowd.spec.compiled import Op, Termination


def resolver(run: RunState, index: Index, node: Node) -> Resolver:
    parent_path = node.parent
    if parent_path is None:
        return Resolver(run.run_id, node, index.specs[node.path], None, run.nodes, "", run.context)
    parent = run.nodes[parent_path]
    dag_node: Node | None = parent
    child_of = None
    if parent.kind == "matrix":
        # a matrix child reads `ref: dag` from the DAG around the matrix
        dag_node = run.nodes.get(parent.parent) if parent.parent is not None else None
        if node.suggestion is not None:
            child_of = (index.specs[parent_path].params, parent.params or {}, node.suggestion)
    return Resolver(run.run_id, node, index.specs[node.path], dag_node, run.nodes, parent_path, run.context,
                    child_of=child_of)


def number(run: RunState, index: Index, node: Node, value: Any, what: str, *, integer: bool = True) -> Any:
    """A numeric field that may be a template, rendered with the node's resolved params.
    Raises ResolveError."""
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return value
    rendered = value
    if isinstance(value, str) and is_template(value):
        rendered = resolver(run, index, node).render(value, node.params or {}, what)
    try:
        num = float(rendered) if not isinstance(rendered, bool) else None
    except (TypeError, ValueError):
        num = None
    if num is None or (integer and num != int(num)):
        raise ResolveError(f"{what}: {value!r} is not {'an integer' if integer else 'a number'} (got {rendered!r})")
    return int(num) if integer else num


def termination(run: RunState, index: Index, node: Node, spec: Op) -> Termination:
    term = spec.termination
    if not any(isinstance(v, str) for v in (term.max_retries, term.timeout, term.ttl)):
        return term
    return msgspec.structs.replace(
        term,
        max_retries=number(run, index, node, term.max_retries, "termination.maxRetries") or 0,
        timeout=number(run, index, node, term.timeout, "termination.timeout", integer=False),
        ttl=number(run, index, node, term.ttl, "termination.ttl", integer=False),
    )


def limit(run: RunState, index: Index, node: Node, value: Any, *, strict: bool = False) -> int | None:
    """A pipeline's concurrency. Before the pipeline starts its params may not be known yet:
    then a template gives no limit, and ``start_pipeline`` evaluates it strictly."""
    try:
        lim: int | None = number(run, index, node, value, "concurrency")
    except ResolveError:
        if strict:
            raise
        return None
    if lim is not None and lim <= 0:
        if strict:
            raise ResolveError(f"concurrency must be greater than 0, got {lim}")
        return None
    return lim
