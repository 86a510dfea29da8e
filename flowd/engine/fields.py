"""Fields of a node's spec that may be templates, rendered with the node's resolved params
([FLOWD] POLYFLOW §11.1): numbers (``concurrency: "{{ n }}"``), the termination block, a
pipeline's concurrency limit; and the :class:`Resolver` that renders them."""

from __future__ import annotations

from typing import Any

import msgspec

from flowd.engine.index import Index, child_params
from flowd.engine.resolve import ResolveError, Resolver
from flowd.engine.state import Node, RunState, child_path
from flowd.engine.templates import is_template
from flowd.spec.compiled import Op, ParamSpec, Termination


def resolver(run: RunState, index: Index, node: Node) -> Resolver:
    parent = run.nodes.get(node.parent) if node.parent is not None else None
    dag_node = parent
    if parent is not None and parent.kind == "matrix":
        # a matrix child reads `ref: dag` from the DAG around the matrix
        dag_node = run.nodes.get(parent.parent) if parent.parent is not None else None
    base = parent.path if parent is not None else ""

    def sibling(name: str) -> Node | None:
        return run.nodes.get(child_path(base, name))

    param_specs = None
    if parent is not None and parent.kind == "matrix" and node.suggestion is not None:
        matrix, suggestion = parent, node.suggestion

        def param_specs() -> dict[str, ParamSpec]:
            return child_params(index.specs[matrix.path].params, matrix.params or {}, suggestion)

    return Resolver(run.run_id, node, index.specs[node.path], dag_node, sibling, run.nodes.get, run.context,
                    param_specs=param_specs)


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
