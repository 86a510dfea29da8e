"""Fields of a node's spec that may be templates, rendered with the node's resolved params
([FLOWD] POLYFLOW §11.1): numbers (``concurrency: "{{ n }}"``), the termination block, a
pipeline's concurrency limit; the :class:`Resolver` that renders them; and the shortcuts that
spare most ops a Resolver (``literal_params``, ``renders``, ``flags``)."""

from __future__ import annotations

from typing import Any

import msgspec

from flowd.engine.index import Index
from flowd.engine.plain import PipelineFlags, pipeline_flags, templated
from flowd.engine.resolve import ResolveError, Resolver, canonical, complete_params, has_templates
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


# what is known of a spec the engine builds itself (an iterative matrix's tuner job): nothing
_UNKNOWN = PipelineFlags(plain=False, to_env=True, to_init=True)


def flags(run: RunState, index: Index, node: Node) -> PipelineFlags:
    """What the spec of ``node`` lacks (templates, toEnv, toInit): what the run's whole pipeline
    lacks, found once per run, for every spec taken from it."""
    if node.suggestion is None and node.parent is not None and run.nodes[node.parent].kind == "matrix":
        return _UNKNOWN
    found = index.flags
    if found is None:
        found = index.flags = pipeline_flags(run.pipeline)
    return found


# matrix kinds whose suggestions are values of the pipeline itself (choices, ranges, mappings)
# or numbers drawn from it; a tuner's suggestions may come from a user's job (``iterative``)
_SUGGESTS_FROM_SPEC = frozenset({"grid", "random", "mapping"})


def _child_templated(index: Index, matrix: Node, suggestion: dict[str, Any]) -> bool:
    """Does a template occur in a matrix child's values (the matrix's resolved params with the
    child's suggestion over them), in a pipeline without a template anywhere? Decided once per
    matrix when its suggestions come from the pipeline, else per child."""
    found = index.matrix_templated.get(matrix.path)
    if found is None:
        spec = index.specs[matrix.path]
        if templated(matrix.params or {}):
            found = True
        elif spec.matrix is not None and spec.matrix.kind in _SUGGESTS_FROM_SPEC:
            found = False
        index.matrix_templated[matrix.path] = found
        if found is None:
            return templated(suggestion)
    return found


def renders(run: RunState, index: Index, node: Node, spec: Op, found: PipelineFlags | None = None) -> bool:
    """Does dispatching ``node`` render its runtime (``has_templates`` of its spec and params)?
    In a pipeline without a template anywhere only a matrix child's own values can hold one:
    one small check per child instead of a JSON encode of the op's params per dispatch.
    ``found``: ``flags`` of the node, when the caller has them already."""
    if (found or flags(run, index, node)).plain:
        if node.suggestion is None:
            return False  # not a matrix child (a tuner's job, the only other, is never plain)
        parent = run.nodes[node.parent] if node.parent is not None else None
        if parent is None or parent.kind != "matrix":
            return False
        if node.suggestion is not None:
            return _child_templated(index, parent, node.suggestion)
    return has_templates(spec, resolver(run, index, node).param_specs)


def literal_params(run: RunState, index: Index, node: Node, spec: Op) -> dict[str, Any] | None:
    """The op's params when nothing needs resolving (no ref, template, join, condition or
    templated approval: a plain matrix child's values, a plain op's literals), as
    ``Resolver.params`` would give them; None when the Resolver must do it. Raises ResolveError."""
    if spec.joins or spec.conditions is not None or not isinstance(spec.is_approved, bool):
        return None
    parent = run.nodes[node.parent] if node.parent is not None else None
    in_matrix = parent is not None and parent.kind == "matrix"
    suggestion = node.suggestion
    if in_matrix and suggestion is None:
        return None  # a tuner's job: a spec the engine built (``flags`` knows nothing of it)
    found = index.flags
    if found is None:
        found = index.flags = pipeline_flags(run.pipeline)
    if not found.plain:
        return None
    if in_matrix:
        assert parent is not None and suggestion is not None
        if _child_templated(index, parent, suggestion):
            return None
        base = parent.params
        if not base and canonical(spec, suggestion):
            return suggestion  # nothing to add or coerce: the child's params are its suggestion
        values = dict(base or {})
        values.update(suggestion)
        return complete_params(spec, values)
    resolved: dict[str, Any] = {}
    for name, param in spec.params.items():
        if param.ref:
            value = _sibling_output(run, node.parent, param.ref, param.value)
            if value is _UNRESOLVED:
                return None  # anything else, or an error to word: the Resolver's work
            resolved[name] = value
        else:
            resolved[name] = param.value
    return complete_params(spec, resolved)


_UNRESOLVED = object()


def _sibling_output(run: RunState, base: str | None, ref: str, path: Any) -> Any:
    """``ref: ops.X`` / ``value: outputs.Y`` (a fan-out worker's param) when X reported Y, as
    ``Resolver._follow`` reads it; ``_UNRESOLVED`` for any other ref or when it did not."""
    if not ref.startswith("ops.") or not isinstance(path, str):
        return _UNRESOLVED
    path = path.strip()
    if path.startswith("{{") and path.endswith("}}"):
        path = path[2:-2].strip()
    section, _, key = path.partition(".")
    if section != "outputs" or not key:
        return _UNRESOLVED
    target = run.nodes.get(f"{base}/{ref[4:]}" if base else ref[4:])
    outputs = target.outputs if target is not None else None
    if outputs is None or key not in outputs:
        return _UNRESOLVED
    return outputs[key]


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
    # a templated field is a str where a number is declared; every op, every attempt: no generator
    retries: Any = term.max_retries
    timeout: Any = term.timeout
    ttl: Any = term.ttl
    if type(retries) is not str and type(timeout) is not str and type(ttl) is not str:
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
