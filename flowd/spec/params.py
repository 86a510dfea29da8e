"""Params against IO: the submission-time algorithm (POLYFLOW §2.8, §3.3, §3.4) and templates.

:func:`check_params` validates one op's params against its effective component, with the DAG
context of §3.4 when the op is a DAG node. :func:`template_refs` finds the cross-op
``{{ ops.X.outputs.Y }}`` / ``{{ dag.inputs.Z }}`` references that flowd turns into
dependency edges (§3.5/§3.6 [FLOWD]).

Pure functions. Findings are reported through an ``emit(severity, subpath, message)`` callback
so the caller decides where (file, path) they point.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from flowd.spec import model as m
from flowd.spec import pql
from flowd.spec.compiled import IOSpec
from flowd.spec.diagnostics import closest, did_you_mean
from flowd.spec.types import CoercionError, coerce, is_template, refs_compatible

__all__ = ["GLOBALS", "DagContext", "OpInfo", "check_params", "template_refs", "TemplateRef", "delayed",
           "provided_by_matrix", "check_ref_syntax"]

Emit = Callable[[str, tuple[Any, ...], str], None]

# §3.4: the 21 global keys accepted by the static check
GLOBALS = (
    "owner_name", "project_name", "project_unique_name", "project_uuid", "run_info", "name", "uuid",
    "status", "namespace", "iteration", "context_path", "artifacts_path", "created_at", "compiled_at",
    "schedule_at", "started_at", "finished_at", "duration", "cloning_kind", "original_uuid",
    "is_independent",
)
_GLOBALS = frozenset(GLOBALS)
_NUMERIC_HP = frozenset({"range", "linspace", "logspace", "geomspace", "uniform", "quniform", "loguniform",
                         "qloguniform", "normal", "qnormal", "lognormal", "qlognormal"})


class OpInfo:
    """What the DAG context knows about one op: its declared inputs and outputs (None: unknown).
    ``fan_in``: the op is a matrix, so each of its outputs is a list of its children's values."""

    __slots__ = ("inputs", "outputs", "fan_in")

    def __init__(self, inputs: dict[str, IOSpec] | None, outputs: dict[str, IOSpec] | None,
                 fan_in: bool = False) -> None:
        self.inputs = inputs
        self.outputs = outputs
        self.fan_in = fan_in


class DagContext:
    """§3.4: the ops of one DAG and the DAG component's own inputs."""

    __slots__ = ("ops", "dag_inputs")

    def __init__(self, ops: dict[str, OpInfo], dag_inputs: dict[str, IOSpec]) -> None:
        self.ops = ops
        self.dag_inputs = dag_inputs


def delayed(io: IOSpec) -> bool:
    """Inputs: delayed only when set; outputs are checked with :func:`_required_outputs`."""
    return bool(io.delay_validation)


def _required_outputs(outputs: list[IOSpec]) -> list[str]:
    # §2.8 quirk (verdict-relevant for outputs): an explicit delayValidation carries over to
    # the following outputs that do not set it; the default for outputs is delayed.
    current: bool | None = None
    names = []
    for o in outputs:
        if o.delay_validation is not None:
            current = o.delay_validation
        eff = o.delay_validation if o.delay_validation is not None else (current if current is not None else True)
        if eff is False and not o.is_optional:
            names.append(o.name)
    return names


_syntax: dict[tuple[str, str], str | None] = {}


def check_ref_syntax(ref: str, value: Any) -> str | None:
    """§3.4 syntax of ``ref`` and of its value path; returns an error message or None."""
    if not isinstance(value, str):
        return _check_ref_syntax(ref, value)
    key = (ref, value)
    if key in _syntax:
        return _syntax[key]
    if len(_syntax) > 50_000:
        _syntax.clear()
    result = _syntax[key] = _check_ref_syntax(ref, value)
    return result


def _check_ref_syntax(ref: str, value: Any) -> str | None:
    if ref == "dag":
        pass
    elif ref.startswith("ops."):
        parts = ref.split(".")
        if len(parts) != 2 or not parts[1]:
            return f"Could not parse ref `{ref}`: expected `ops.<op-name>`, `dag` or `runs.<uuid>`"
    elif ref.startswith("runs."):
        parts = ref.split(".")
        try:
            if len(parts) != 2:
                raise ValueError
            uuid.UUID(parts[1])
        except ValueError:
            return f"ref `{ref}` should reference a valid run uuid (`runs.<uuid>`)"
    else:
        return f"Could not parse ref `{ref}`: expected `ops.<op-name>`, `dag` or `runs.<uuid>`"
    if not isinstance(value, str):
        return "Value must be of type string when a ref is provided"
    problem = check_value_path(value)
    if problem:
        return problem
    if ref == "dag" and _strip_braces(value).split(".")[0] == "outputs":
        return "You can not use `outputs` with `ref: dag`: a DAG has no outputs while it runs"
    return None


_TPL = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)
_PLACEHOLDER = "__tpl__"


def check_joins(joins: list[m.Join], emit: Emit) -> None:
    """§8.4: each join's ``query`` and ``sort`` parse (templates stand for a value), and name
    run fields flowd knows. Both a syntax error and an unknown field are warnings here and errors
    when the op runs: the reference checks neither at submission (one of its fixtures queries
    ``hub.name``; a query that is a bare date is accepted too), and flowd's verdict is its."""
    for i, join in enumerate(joins):
        for key, parse in (("query", pql.parse_query), ("sort", pql.parse_sort)):
            text = getattr(join, key)
            if text is None:
                continue
            plain = _TPL.sub(_PLACEHOLDER, text) if isinstance(text, str) else text
            try:
                parsed = parse(plain, strict_fields=False)
            except pql.PqlError as exc:
                emit("warning", ("joins", i, key), f"join {key} `{text}`: {exc}: the op will fail when it runs")
                continue
            fields = parsed.fields if isinstance(parsed, pql.Query) else [f for f, _ in parsed]
            for field in fields:
                problem = None if _PLACEHOLDER in field else pql.check_field(field)
                if problem:
                    emit("warning", ("joins", i, key), f"join {key} `{text}`: {problem}: the op will fail "
                                                       "when it runs")


def check_value_path(value: Any, *, what: str = "a ref") -> str | None:
    """§3.4 syntax of a reference path (``outputs.loss``, ``artifacts.x.y``, ``globals.uuid``...),
    shared by ``ref`` values and join params; ``{{ }}`` around the path are ignored."""
    if not isinstance(value, str):
        return f"Could not parse value {value!r} of {what}: expected a path such as `outputs.<name>`"
    path = _strip_braces(value)
    parts = path.split(".")
    if len(parts) == 1:
        if parts[0] not in ("inputs", "outputs", "io", "artifacts"):
            return (f"Could not parse value `{value}` of {what}: a single-part path must be one of "
                    "`inputs`, `outputs`, `io`, `artifacts`")
    elif parts[0] not in ("inputs", "outputs", "artifacts", "globals") or (len(parts) > 2 and parts[0] != "artifacts"):
        return (f"Could not parse value `{value}` of {what}: expected `outputs.<name>`, `inputs.<name>`, "
                "`globals.<key>` or `artifacts[.<name>]`")
    if any(not p for p in parts):
        return f"Could not parse value `{value}` of {what}: empty path element"
    return None


def _strip_braces(value: str) -> str:
    v = value.strip()
    if v.startswith("{{") and v.endswith("}}"):
        v = v[2:-2].strip()
    return v


def provided_by_matrix(matrix: Any) -> set[str] | None:
    """Input names a matrix provides (§2.8 rule 2); None means "any name" (a templated mapping)."""
    if matrix is None:
        return set()
    if isinstance(matrix, m.MappingMatrix):
        values = matrix.values
        if isinstance(values, str):
            return None
        return set(values[0]) if values else set()
    names: set[str] = set()
    params = getattr(matrix, "params", None)
    if isinstance(params, dict):
        names |= set(params)
    if isinstance(matrix, m.HyperbandMatrix) and matrix.resource is not None:
        names.add(matrix.resource.name)
    return names


def _source_type(ctx_ref: str, parts: list[str], info: OpInfo | None, ctx: DagContext) -> tuple[bool, Any, bool, str]:
    """Is the key in the context? Its (type, is_list) for §2.7, or unchecked. Returns
    (found, type, is_list, message-if-missing)."""
    head = parts[0]
    if ctx_ref == "dag":
        inputs = ctx.dag_inputs
        if len(parts) == 1:
            if head in ("inputs",):
                return True, "dict", False, ""
            if head == "artifacts":
                return True, "str", False, ""
            return False, None, False, "the DAG context has `inputs`, `globals`, `artifacts`"
        key = parts[1]
        if head == "inputs":
            io = inputs.get(key)
            if io is None:
                names = ", ".join(f"`{n}`" for n in inputs) or "none"
                return False, None, False, f"the DAG declares no input `{key}` (inputs: {names}){did_you_mean(key, inputs)}"
            return True, io.type, io.is_list, ""
        if head == "globals":
            if key in _GLOBALS:
                return True, "str", False, ""
            return False, None, False, f"`{key}` is not a global{did_you_mean(key, GLOBALS)}"
        if head == "artifacts":
            return True, "?", False, ""
        return False, None, False, ""
    assert info is not None
    if len(parts) == 1:
        if head in ("inputs", "outputs"):
            return True, "dict", False, ""
        return True, "str", False, ""  # io, artifacts
    key = parts[1]
    if head in ("inputs", "outputs"):
        decl = info.inputs if head == "inputs" else info.outputs
        assert decl is not None
        io = decl.get(key)
        if io is None:
            names = ", ".join(f"`{n}`" for n in decl) or "none"
            return False, None, False, f"it declares no {head[:-1]} `{key}` ({head}: {names}){did_you_mean(key, decl)}"
        if head == "outputs" and info.fan_in:
            return True, io.type, True, ""  # [FLOWD] fan-in: one value per matrix child
        return True, io.type, io.is_list, ""
    if head == "globals":
        if key in _GLOBALS:
            return True, "str", False, ""
        return False, None, False, f"`{key}` is not a global{did_you_mean(key, GLOBALS)}"
    # artifacts.<name>: declared type if an artifacts-typed IO of that name exists, else unchecked
    for decl in (info.inputs or {}, info.outputs or {}):
        io = decl.get(key)
        if io is not None and io.type == "artifacts":
            return True, io.type, io.is_list, ""
    return True, "?", False, ""


def _check_ref_in_context(p: m.Param, io: IOSpec, ctx: DagContext | None, emit: Emit, path: tuple[Any, ...],
                          *, compat: bool, is_output: bool) -> None:
    ref = p.ref
    assert ref is not None
    if ref.startswith("runs."):
        return
    parts = _strip_braces(p.value).split(".")
    target = "the DAG" if ref == "dag" else f"op `{ref[4:]}`"
    if is_output:
        if parts[0] == "artifacts":
            return
        emit("error", path, f"output param `{io.name}` has a ref value `{ref}.{'.'.join(parts)}` but {target} "
                            "has no such information (refs to ops/dag are not available on outputs)")
        return
    if ctx is None:
        emit("error", path, f"param `{io.name}` has a ref value `{ref}.{'.'.join(parts)}` but there is no such "
                            f"information: `ref: {ref}` is only available inside a DAG")
        return
    info = None
    if ref != "dag":
        info = ctx.ops.get(ref[4:])
        if info is None or info.inputs is None:
            return  # an orphan (reported by the graph check) or a component we could not read
    found, t_out, list_out, why = _source_type("dag" if ref == "dag" else "ops", parts, info, ctx)
    if not found:
        emit("error", path, f"param `{io.name}` has a ref value `{ref}.{'.'.join(parts)}` but {target} has no such "
                            f"information" + (f": {why}" if why else ""))
        return
    if t_out == "?":
        return
    if not refs_compatible(io.type, t_out, reference_compat=compat):
        emit("error", path, f"param `{io.name}` of type `{io.type}` takes `{ref}.{'.'.join(parts)}` of type "
                            f"`{t_out}`: the ref does not correspond to the type of the input")
        return
    if bool(io.is_list) != bool(list_out):
        hint = ""
        if info is not None and info.fan_in and parts[0] == "outputs":
            hint = (f" (op `{ref[4:]}` is a matrix: each of its outputs is a list with one value per child; "
                    "declare the input `isList: true`)")
        emit("error", path, f"param `{io.name}` (isList: {bool(io.is_list)}) takes `{ref}.{'.'.join(parts)}` "
                            f"(isList: {bool(list_out)}): does not correspond to the output value{hint}")


_EMPTY: frozenset[str] = frozenset()
_shapes: dict[tuple[int, int], tuple[Any, Any, Any, list[IOSpec], list[IOSpec]]] = {}


def _shape(inputs: list[IOSpec], outputs: list[IOSpec]) -> tuple[frozenset[str], list[str], list[str]]:
    """IO names, required inputs and required outputs of one IO declaration (cached: a component
    used by many ops is looked at once)."""
    key = (id(inputs), id(outputs))
    hit = _shapes.get(key)
    if hit is not None and hit[3] is inputs and hit[4] is outputs:
        return hit[0], hit[1], hit[2]
    names = frozenset(i.name for i in inputs) | frozenset(o.name for o in outputs)
    required = [i.name for i in inputs if not i.is_optional and not delayed(i)]
    required_out = _required_outputs(outputs)
    if len(_shapes) > 10_000:
        _shapes.clear()
    _shapes[key] = (names, required, required_out, inputs, outputs)
    return names, required, required_out


def check_params(
    *,
    params: dict[str, m.Param],
    inputs: list[IOSpec],
    outputs: list[IOSpec],
    matrix: Any,
    joins: list[m.Join] | None,
    strict: bool,
    ctx: DagContext | None,
    emit: Emit,
    compat: bool = False,
    params_path: tuple[Any, ...] = ("params",),
    literal_paths: dict[str, tuple[Any, ...]] | None = None,
) -> None:
    """§3.3 for one op. ``emit`` receives paths relative to the op."""
    P: dict[str, m.Param] = params
    join_params: set[str] = set()
    if joins:
        check_joins(joins, emit)
        P = dict(params)
        for j in joins:
            for name, jp in (j.params or {}).items():
                if name not in P:
                    P[name] = jp
                    join_params.add(name)
    shape = _shape(inputs, outputs)
    io_names, required, required_out = shape
    # §2.8 rule 1
    if (required or required_out) and not P and matrix is None:
        names = ", ".join(f"`{n}`" for n in required + required_out)
        emit("error", params_path, f"the component has non optional inputs/outputs ({names}) but no params were passed")
        return
    provided = provided_by_matrix(matrix) if matrix is not None else _EMPTY
    undeclared = [n for n in P if n not in io_names]

    def ppath(name: str) -> tuple[Any, ...]:
        if literal_paths and name in literal_paths:
            return literal_paths[name]
        return (*params_path, name)

    for io in inputs:
        name = io.name
        p = P.get(name)
        if p is not None:
            if name in join_params:
                if not io.is_list and io.type != "artifacts":
                    emit("error", ("joins",), f"input `{name}` does not expect a list of values from the join "
                                              "(declare it with `isList: true` or `type: artifacts`)")
                    continue
                problem = None if isinstance(p.value, dict) else check_value_path(p.value, what=f"join param `{name}`")
                if problem:
                    emit("error", ("joins",), problem)
                continue
            if p.ref is not None:
                msg = check_ref_syntax(p.ref, p.value)
                if msg:
                    emit("error", ppath(name), msg)
                    continue
            if is_template(p.value):
                continue
            if p.ref is not None:
                _check_ref_in_context(p, io, ctx, emit, ppath(name), compat=compat, is_output=False)
                continue
            if p.value is None:
                if not io.is_optional:
                    emit("error", ppath(name), f"Could not parse value for input `{name}`: no value was provided "
                                               "and the input is required")
                continue
            try:
                coerce(io, p.value, reference_compat=compat)
            except CoercionError as exc:
                emit("error", ppath(name), f"Could not parse value for input {exc}")
            continue
        if provided is None or name in provided:
            if provided is not None:
                _check_matrix_type(io, matrix, emit)
            continue
        # reference quirk (POLYFLOW §6.2): the oracle looks every input that is not passed up in the
        # matrix `params` (and hyperband's `resource`) and fails when they are missing
        if isinstance(matrix, m.HyperbandMatrix) and (matrix.params is None or matrix.resource is None):
            emit("error", ("matrix",), f"input `{name}` is not passed as a param and the hyperband matrix has no "
                                       "`params`/`resource` that could provide it")
            continue
        if isinstance(matrix, m.IterativeMatrix) and matrix.params is None:
            emit("error", ("matrix",), f"input `{name}` is not passed as a param and the iterative matrix has no "
                                       "`params` that could provide it")
            continue
        if io.is_optional or delayed(io):
            continue
        near = closest(name, undeclared)
        hint = f"; a param `{near}` was passed but is not declared (did you mean `{name}`?)" if near else ""
        emit("error", params_path, f"Input `{name}` is required, no param was passed{hint}")
    for io in outputs:
        p = P.get(io.name)
        if p is None or io.name in join_params:
            continue
        if p.ref is not None:
            msg = check_ref_syntax(p.ref, p.value)
            if msg:
                emit("error", ppath(io.name), msg)
                continue
        if is_template(p.value):
            continue
        if p.ref is not None:
            _check_ref_in_context(p, io, ctx, emit, ppath(io.name), compat=compat, is_output=True)
            continue
        if p.value is not None:
            try:
                coerce(io, p.value, reference_compat=compat)
            except CoercionError as exc:
                emit("error", ppath(io.name), f"Could not parse value for output {exc}")
    for name in undeclared:
        p = P[name]
        if p.ref is not None:
            msg = check_ref_syntax(p.ref, p.value)
            if msg:
                emit("error", ppath(name), msg)
                continue
        if name in join_params:
            continue
        if p.context_only is False:
            emit("error", ppath(name), f"param `{name}` has `contextOnly: false` and requires a matching "
                                       f"input/output declaration{did_you_mean(name, io_names)}")
        elif strict and p.context_only is not True:
            emit("error", ppath(name), f"Received undeclared param `{name}` with `strictParams: true`: declare it as "
                                       f"an input/output or set `contextOnly: true`{did_you_mean(name, io_names)}")
        elif p.context_only is not True:
            hint = did_you_mean(name, io_names)
            emit("warning", ppath(name), f"param `{name}` matches no declared input or output; it is passed as a "
                                         f"context param only{hint}")


def _check_matrix_type(io: IOSpec, matrix: Any, emit: Emit) -> None:
    params = getattr(matrix, "params", None)
    if not isinstance(params, dict):
        return
    hp = params.get(io.name)
    if hp is None:
        return
    kind = type(hp).__struct_config__.tag
    ok = True
    if kind in _NUMERIC_HP:
        ok = io.type in ("int", "float")
    elif kind == "daterange":
        ok = io.type == "date"
    elif kind == "datetimerange":
        ok = io.type == "datetime"
    if not ok:
        emit("error", ("matrix", "params", io.name),
             f"input `{io.name}` of type `{io.type}` does not correspond to hyper-param type `{kind}`")


# --- templates: {{ ops.X.outputs.Y }}, {{ dag.inputs.Z }} (§3.5/§3.6 [FLOWD]) -------------------

_BLOCK = re.compile(r"\{\{(.*?)\}\}|\{%(.*?)%\}", re.S)
_ACCESS = r"(?:\s*\.\s*[A-Za-z0-9_][\w-]*|\s*\[\s*['\"][^'\"]+['\"]\s*\])"
_ROOT = re.compile(r"(?<![\w.\]'\"])(ops|dag)((?:" + _ACCESS + r")+)")
_PART = re.compile(r"\.\s*([A-Za-z0-9_][\w-]*)|\[\s*['\"]([^'\"]+)['\"]\s*\]")


class TemplateRef:
    """``ops.X[.section[.key]]`` or ``dag.section[.key]`` named inside a template."""

    __slots__ = ("ns", "op", "section", "key", "text", "dashed")

    def __init__(self, ns: str, op: str | None, section: str | None, key: str | None, text: str,
                 dashed: str | None = None) -> None:
        self.ns = ns
        self.op = op
        self.section = section
        self.key = key
        self.text = text
        # a name with `-` written with dot syntax: Jinja reads `ops.a-b` as `ops.a - b`
        self.dashed = dashed

    def __repr__(self) -> str:
        return f"TemplateRef({self.text!r})"


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        if "{{" in value or "{%" in value:
            yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


def template_refs(value: Any) -> list[TemplateRef]:
    """Every ``ops.*``/``dag.*`` reference inside ``{{ }}``/``{% %}`` blocks of the strings in ``value``."""
    if isinstance(value, str):
        hit = _text_refs.get(value)
        if hit is None:
            hit = _text_refs[value] = _scan(value) if ("{{" in value or "{%" in value) else []
            if len(_text_refs) > 50_000:
                _text_refs.clear()
        return hit
    out: list[TemplateRef] = []
    for text in _strings(value):
        out.extend(template_refs(text))
    return out


_text_refs: dict[str, list[TemplateRef]] = {}


def _scan(text: str) -> list[TemplateRef]:
    out: list[TemplateRef] = []
    for block in _BLOCK.finditer(text):
        expr = block.group(1) if block.group(1) is not None else block.group(2)
        for hit in _ROOT.finditer(expr):
            found = _PART.findall(hit.group(2))
            parts = [a or b for a, b in found]
            dashed = next((a for a, _ in found if "-" in a), None)
            ns = hit.group(1)
            shown = hit.group(0).strip()
            if ns == "ops":
                out.append(TemplateRef("ops", parts[0], parts[1] if len(parts) > 1 else None,
                                       parts[2] if len(parts) > 2 else None, shown, dashed))
            else:
                out.append(TemplateRef("dag", None, parts[0], parts[1] if len(parts) > 1 else None, shown, dashed))
    return out


