"""``flowd check`` of the templates of one op: syntax errors and unknown filters (errors), and
names it can tell are undefined (warnings: Polyaxon accepts them at submission, but flowd renders
with ``StrictUndefined``, so such a name fails the op when it is compiled).

The names a template of an op may read (POLYFLOW §3.5): ``globals``, ``params``, ``ops``,
``dag``, ``connections``, ``init``, every input/output of its component and every param of the
op, a matrix's param names, a join's params. When the op's names cannot all be known before
run time (a mapping matrix whose ``values`` is itself a template), names are not checked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import msgspec

from flowd.spec import model as m
from flowd.spec.jinja import ENV, syntax_problem, undeclared_names
from flowd.spec.types import is_template

__all__ = ["check_op_templates"]

_CONTEXT = frozenset({"globals", "params", "ops", "dag", "connections", "init"}) | frozenset(ENV.globals)


def _strings(value: Any, path: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], str]]:
    if isinstance(value, str):
        if is_template(value):
            yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, (*path, i))


def _matrix_names(matrix: Any) -> set[str] | None:
    """Param names a matrix's suggestions add, or None when they are only known at run time."""
    values = getattr(matrix, "values", None)
    if isinstance(values, list):
        return {k for v in values if isinstance(v, dict) for k in v}
    if isinstance(values, str):
        return None
    params = getattr(matrix, "params", None)
    if isinstance(params, dict):
        return set(params)
    if isinstance(params, str):
        return None
    return set()


def check_op_templates(op: m.PolyaxonfileSpec, inputs: list[Any], outputs: list[Any], run: Any,
                       emit: Callable[[str, tuple[Any, ...], str], None]) -> None:
    names: set[str] | None = set(_CONTEXT)
    assert names is not None
    names.update(io.name for io in inputs)
    names.update(io.name for io in outputs)
    names.update(op.params or {})
    if op.matrix is not None and not isinstance(op.matrix, str):
        extra = _matrix_names(op.matrix)
        names = None if extra is None else names | extra
    if names is not None and isinstance(op.joins, list):
        for join in op.joins:
            names.update((join.params or {}) if isinstance(join, m.Join) else {})
    fields: list[tuple[tuple[Any, ...], Any]] = [
        (("params", name), p.value) for name, p in (op.params or {}).items() if p.ref is None
    ]
    fields += [(("conditions",), op.conditions), (("trigger",), op.trigger), (("isApproved",), op.is_approved)]
    if op.matrix is not None:
        fields.append((("matrix",), msgspec.to_builtins(op.matrix)))
    if run is not None and not isinstance(run, m.DagRuntime):
        fields.append((("run",), msgspec.to_builtins(run)))
    for base, value in fields:
        for path, text in _strings(value, base):
            problem = syntax_problem(text)
            if problem is not None:
                emit("error", path, f"template `{text}` does not compile: {problem}")
                continue
            if names is None or base[0] == "matrix":
                continue
            unknown = sorted(undeclared_names(text) - names)
            if unknown:
                known = ", ".join(sorted(n for n in names - _CONTEXT)) or "none"
                # a warning, not an error: Polyaxon accepts it at submission (the verdict stays
                # the reference's), but flowd renders strictly, so the op will fail
                emit("warning", path, f"template `{text}` uses {', '.join(f'`{n}`' for n in unknown)}, which "
                                    f"{'is' if len(unknown) == 1 else 'are'} not defined for op "
                                    f"`{op.name or '(root)'}` (its inputs, outputs and params: {known}; "
                                    "also `globals`, `params`, `ops`, `dag`): rendering it will fail the op")
