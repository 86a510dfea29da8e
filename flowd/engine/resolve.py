"""Run-time resolution of an op's params and runtime (POLYFLOW §3.7), for the engine.

Given the op spec, the finished upstream nodes and the enclosing pipeline's inputs, produce the
literal params (refs followed, templates rendered, IO types coerced) and the rendered runtime
body. Pure: it reads engine state and returns values or raises :class:`ResolveError`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flowd.engine import templates
from flowd.engine.index import child_params
from flowd.engine.joins import JoinError, JoinSource, join_values, select
from flowd.engine.plain import templated
from flowd.engine.state import Node, RunState
from flowd.spec.compiled import IOSpec, Op, ParamSpec
from flowd.spec.types import EXACT_TYPES
from flowd.spec.types import coerce as _coerce  # the spec layer owns IO typing


class ResolveError(ValueError):
    """An op cannot be compiled at run time: the message names the param and the cause."""


_NAMESPACE_URL = bytes.fromhex("6ba7b8119dad11d180b400c04fd430c8")


def uuid5(name: str) -> str:
    """RFC 4122 UUID version 5 of ``name`` in the URL namespace (what ``uuid.uuid5`` computes;
    written out because the engine imports no ``uuid`` module, whose uuid4 is random)."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_URL + name.encode()).digest()[:16])  # RFC 4122 v5 is SHA-1 by definition
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def op_uuid(run_id: str, path: str) -> str:
    """``globals.uuid`` of the op at ``path`` (the pipeline itself: ``""``): deterministic, so a
    replay, a resume or another replica derives the same one."""
    return uuid5(f"flowd:{run_id}/{path}")


def iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat()


# globals of a run (POLYFLOW §3.5), for a ref (``globals.<key>``) or a template. ``context``
# is the run's context from its submission (owner, project, context_path from the adapter)
def run_globals(run_id: str, node: Node, context: dict[str, Any] | None = None) -> dict[str, Any]:
    ctx = context or {}
    duration = None
    if node.finished_at is not None:
        duration = node.finished_at - (node.started_at if node.started_at is not None else node.created_at)
    uid = op_uuid(run_id, node.path)
    owner = ctx.get("owner_name") or "flowd"
    project = ctx.get("project_name") or "default"
    context_path = ctx.get("context_path") or "/plx-context"
    artifacts = ctx.get("artifacts_path") or f"{context_path}/artifacts"
    return {
        "owner_name": owner,
        "project_name": project,
        "project_unique_name": f"{owner}.{project}",
        "project_uuid": uuid5(f"flowd:project:{owner}.{project}"),
        "username": ctx.get("username") or owner,
        "user_email": ctx.get("user_email"),
        "run_info": f"{owner}.{project}.runs.{uid}",
        "uuid": uid,
        "run_id": run_id,
        "name": node.name,
        "status": node.status,
        "namespace": ctx.get("namespace"),
        "iteration": (node.iteration if node.iteration is not None else node.index) if node.suggestion is not None else None,
        "bracket_iteration": node.bracket if node.suggestion is not None else None,
        "original_uuid": f"{run_id}/{node.origin}" if node.origin else None,
        "context_path": context_path,
        "artifacts_path": artifacts,
        "run_artifacts_path": f"{artifacts}/{uid}",
        "run_outputs_path": f"{artifacts}/{uid}/outputs",
        "run_relative_outputs_path": f"{uid}/outputs",
        "store_path": artifacts,
        "schedule_at": iso(node.schedule_at),
        "created_at": iso(node.created_at),
        # flowd compiles an op when its trigger fires; the node keeps no separate time for it
        "compiled_at": iso(node.started_at if node.started_at is not None else node.created_at),
        "started_at": iso(node.started_at),
        "finished_at": iso(node.finished_at),
        "duration": duration,
        "cloning_kind": None,
        "is_independent": node.parent is None,
    }


# the message an executor gives a cache hit (flowd.runtime.cache.HIT_PREFIX): its tail names the
# run and op whose results (and artifacts) were reused
CACHE_HIT_PREFIX = "cache hit: outputs of "


def run_artifacts(run_id: str, node: Node, context: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The ``artifacts`` section of an op (POLYFLOW §3.4): ``base`` (where the store keeps what
    the op wrote under ``$FLOWD_ARTIFACTS``: ``<store>/<run id>/<op path>``), ``outputs`` (the
    same place) and each reported output that lies there, by name. A cache hit's are the original
    op's (nothing is copied). None when the adapter named no artifact store."""
    store = (context or {}).get("artifacts_store")
    if not store:
        return None
    origin = f"{run_id}/{node.path}"
    if node.reason == "CacheHit" and node.message and node.message.startswith(CACHE_HIT_PREFIX):
        origin = node.message[len(CACHE_HIT_PREFIX):]
    base = f"{str(store).rstrip('/')}/{origin}"
    info: dict[str, Any] = {"base": base, "outputs": base}
    for name, value in (node.outputs or {}).items():
        if isinstance(value, str) and value.startswith(base + "/"):
            info[name] = value
    return info


def _globals_of(run: RunState, node: Node) -> dict[str, Any]:
    return run_globals(run.run_id, node, run.context)


# id(component) -> (component, its runtime has templates). Keyed by the component, which every
# matrix child and nested-DAG instance shares, never by the op: a matrix child's op is its own
# copy, and pinning each one here kept ~0.5 KB per child alive after its run was forgotten
_run_flags: dict[int, tuple[Any, bool]] = {}


def has_templates(op: Op, params: dict[str, ParamSpec] | None = None) -> bool:
    """Does rendering the op's runtime need its params' context? ``params``: the op's params
    when they are not ``op.params`` (a matrix child's, ``Resolver.param_specs``)."""
    component = op.component
    entry = _run_flags.get(id(component))
    if entry is None or entry[0] is not component:
        if len(_run_flags) > 200_000:
            _run_flags.clear()
        entry = (component, templated(component.run))
        _run_flags[id(component)] = entry
    return entry[1] or templated([op.params if params is None else params, op.conditions, op.trigger,
                                   op.is_approved])


def as_str(value: Any, io: IOSpec | None = None) -> str:
    if value is None:
        return ""
    if io is not None and io.is_flag:
        return f"--{io.name}" if value else ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def as_arg(name: str, value: Any, io: IOSpec | None) -> str:
    if value is None:
        return ""
    if io is not None and io.arg_format:
        return templates.render_text(io.arg_format, {name: value})
    if io is not None and io.is_flag:
        return f"--{name}" if value else ""
    return f"--{name}={as_str(value, io)}"


def op_view(run_id: str, target: Node, node_at: Callable[[str], Node | None] | None,
            context: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ``{{ ops.X }}`` shows of a finished (or running) op. For a matrix op ([FLOWD] fan-in)
    ``outputs`` maps each output name to the list of its children's values in children order
    (None where a child did not report it), and ``children`` lists each child as
    ``{index, status, params, outputs}``."""
    view: dict[str, Any] = {
        "outputs": target.outputs or {},
        "inputs": target.params or {},
        "status": target.status,
        "globals": run_globals(run_id, target, context),
    }
    if target.kind == "matrix" and node_at is not None:
        view["children"] = matrix_children(target, node_at)
    return view


def matrix_children(matrix: Node, node_at: Callable[[str], Node | None]) -> list[dict[str, Any]]:
    out = []
    for path in matrix.children or ():
        child = node_at(path)
        if child is not None:
            out.append({"index": child.index, "status": child.status, "params": child.params or {},
                        "outputs": child.outputs or {}})
    return out


def fan_in_outputs(matrix: Node, declared: list[IOSpec], node_at: Callable[[str], Node | None]) -> dict[str, list[Any]]:
    """A matrix op's outputs: output name -> the children's values, in children order."""
    children = [node_at(path) for path in matrix.children or ()]
    names: dict[str, None] = {io.name: None for io in declared}
    for child in children:
        if child is not None and child.outputs:
            for name in child.outputs:  # mostly the declared ones: no dict built per child
                if name not in names:
                    names[name] = None
    return {name: [(child.outputs or {}).get(name) if child is not None else None for child in children]
            for name in names}


def dag_outputs(run_id: str, dag: Node, op: Op, node_at: Callable[[str], Node | None],
                context: dict[str, Any] | None = None) -> dict[str, Any]:
    """[FLOWD] the outputs of a succeeded DAG op: each declared output whose ``value`` binds an
    inner op (``{{ ops.X.outputs.Y }}``) rendered over the DAG's own ops; other declared
    defaults as they are. Raises ResolveError naming the output."""
    ctx: dict[str, Any] = {
        "globals": run_globals(run_id, dag, context),
        "dag": {"inputs": dict(dag.params or {})},
        "ops": {},
    }
    ctx.update(dag.params or {})
    for path in dag.children or ():
        child = node_at(path)
        if child is not None:
            ctx["ops"][child.name] = op_view(run_id, child, node_at, context)
    out: dict[str, Any] = {}
    for io in op.component.outputs:
        value = io.value
        if templates.is_template(value):
            try:
                value = templates.render_value(value, ctx)
            except templates.TemplateError as exc:
                if io.is_optional:
                    continue
                raise ResolveError(f"output {io.name!r} of DAG {dag.path or op.name!r}: {exc}") from None
        if value is None:
            continue
        out[io.name] = Resolver._coerce(io, value, "output") if io.type is not None else value  # noqa: SLF001
    return out


def complete_params(op: Op, resolved: dict[str, Any]) -> dict[str, Any]:
    """``resolved`` (an op's params, refs followed and templates rendered) with the declared
    defaults of missing inputs, every input and output coerced to its declared type. Raises
    ResolveError naming a required input left without a value."""
    # a value already of its declared scalar type is its own coerced form (no call for it)
    for io in op.component.inputs:
        value = resolved.get(io.name)
        if value is None:
            if io.is_optional or io.delay_validation or io.value is not None:
                value = resolved[io.name] = io.value
            else:
                raise ResolveError(f"input {io.name!r} is required and no value was resolved")
        if value is not None and io.type is not None and (
                type(value) is not EXACT_TYPES.get(io.type) or io.is_list or io.validation):
            resolved[io.name] = Resolver._coerce(io, value, "input")  # noqa: SLF001
    for io in op.component.outputs:
        value = resolved.get(io.name)
        if value is not None and io.type is not None and (
                type(value) is not EXACT_TYPES.get(io.type) or io.is_list or io.validation):
            resolved[io.name] = Resolver._coerce(io, value, "output")  # noqa: SLF001
    return resolved


def canonical(op: Op, values: dict[str, Any]) -> bool:
    """Is ``values`` already what ``complete_params`` makes of it: every input bound to a value
    of its declared scalar type (nothing to default or coerce), every output it binds too?"""
    for ios in (op.component.inputs, op.component.outputs):
        for io in ios:
            value = values.get(io.name)
            if value is None:
                if ios is op.component.inputs:
                    return False
                continue
            if io.type is not None and (type(value) is not EXACT_TYPES.get(io.type) or io.is_list or io.validation):
                return False
    return True


def outputs_of(op: Op, reported: dict[str, Any] | None) -> dict[str, Any]:
    """An op's reported outputs merged with its declared defaults, declared types coerced. Needs
    nothing of the run: a finished job's report does not build a Resolver.

    A report that needs nothing added or coerced is returned as it is, not copied: the node
    keeps the event's dict (one per op of a million-op run). Events are not changed once handed
    to the engine, as commands are not once it emitted them."""
    out = reported if reported is not None else {}
    copied = reported is None
    for io in op.component.outputs:
        value = out.get(io.name)
        if value is None and io.value is not None:
            if not copied:
                out, copied = dict(out), True
            value = out[io.name] = io.value
        # a value of its declared scalar type is its own coerced form: most reports (one per op)
        if value is not None and io.type is not None and (
                type(value) is not EXACT_TYPES.get(io.type) or io.is_list or io.validation):
            coerced = Resolver._coerce(io, value, "output")  # noqa: SLF001
            if coerced is not value:
                if not copied:
                    out, copied = dict(out), True
                out[io.name] = coerced
    return out


class Resolver:
    """Resolves one op of one run. ``nodes`` is the run's node map and ``base`` the path of the
    pipeline the op belongs to (its siblings are ``base/name``); ``dag`` is the enclosing
    pipeline node (its params are the DAG's inputs). Built up to three times per op, so it
    holds only what it is handed: everything else is derived on first use."""

    __slots__ = ("run_id", "join_source", "joined", "run_context", "node", "op", "dag", "nodes", "base",
                 "_ops_ctx", "_child_of", "_param_specs")

    def __init__(self, run_id: str, node: Node, op: Op, dag: Node | None, nodes: dict[str, Node], base: str = "",
                 context: dict[str, Any] | None = None, joins: JoinSource | None = None,
                 child_of: tuple[dict[str, ParamSpec], dict[str, Any], dict[str, Any]] | None = None):
        self.run_id = run_id
        # the runs a join may select (engine state), and what the last params() joined:
        # "<run id>/<op path>" of every selected run, in order (lineage, §8.4 step 4)
        self.join_source = joins
        self.joined: list[str] = []
        self.run_context = context
        self.node = node
        self.op = op
        self.dag = dag
        self.nodes = nodes
        self.base = base
        self._ops_ctx: dict[str, Any] | None = None
        # a matrix child's params are its own values over a spec its siblings share: derived
        # here when first needed (``child_params`` of the matrix op's params, the matrix's
        # resolved params and the child's suggestion), never kept on the spec
        self._child_of = child_of
        self._param_specs: dict[str, ParamSpec] | None = None

    def sibling(self, name: str) -> Node | None:
        """The node of the op ``name`` of the same DAG."""
        return self.nodes.get(f"{self.base}/{name}" if self.base else name)

    def node_at(self, path: str) -> Node | None:
        return self.nodes.get(path)

    @property
    def param_specs(self) -> dict[str, ParamSpec]:
        """The op's params as specs: the op's own, or a matrix child's values."""
        if self._param_specs is None:
            self._param_specs = self.op.params if self._child_of is None else child_params(*self._child_of)
        return self._param_specs

    # --- refs -------------------------------------------------------------------------------

    def _follow(self, name: str, ref: str, path: str) -> Any:
        if not isinstance(path, str):
            raise ResolveError(f"param {name!r}: a ref value must be a path string, got {path!r}")
        path = path.strip()
        if path.startswith("{{") and path.endswith("}}"):
            path = path[2:-2].strip()
        section, _, key = path.partition(".")
        if ref.startswith("ops."):
            target_name = ref[4:]
            target = self.sibling(target_name)
            if target is None:
                raise ResolveError(f"param {name!r}: op {target_name!r} does not exist in this DAG")
            what = f"op {target_name!r}"
            # only the section asked for is built: globals hash a uuid and format every time,
            # which cost more than the rest of a fan-out worker's compile
            sections: dict[str, Callable[[], Any]] = {
                "outputs": lambda: target.outputs,
                "inputs": lambda: target.params,
                "globals": lambda: run_globals(self.run_id, target, self.run_context),
                "artifacts": lambda: run_artifacts(self.run_id, target, self.run_context),
            }
            if section not in sections:
                raise ResolveError(f"param {name!r}: {ref} has no {section!r} information")
            values = sections[section]()
            if section == "artifacts" and values is None and target.status in ("succeeded", "skipped"):
                raise ResolveError(f"param {name!r}: {ref} has no artifacts: no artifact store is configured "
                                   "(--artifacts-store / $FLOWD_ARTIFACTS_STORE)")
        elif ref == "dag":
            dag = self.dag
            if dag is None:
                raise ResolveError(f"param {name!r}: `ref: dag` is only valid inside a DAG")
            what = "the DAG"
            if section not in ("inputs", "globals"):
                raise ResolveError(f"param {name!r}: {ref} has no {section!r} information")
            values = dag.params if section == "inputs" else run_globals(self.run_id, dag, self.run_context)
        elif ref.startswith("runs."):
            raise ResolveError(
                f"param {name!r}: references to other runs ({ref}) are resolved by the daemon "
                "(flowd serve), not by this runtime"
            )
        else:
            raise ResolveError(f"param {name!r}: unsupported ref {ref!r}")
        if values is None:
            raise ResolveError(f"param {name!r}: {what} has no {section} yet (status {self._status_of(ref)})")
        if not key:
            return dict(values)
        if key not in values:
            if section == "outputs":
                raise ResolveError(f"param {name!r}: {what} did not report output {key!r}")
            raise ResolveError(f"param {name!r}: {what} has no {section[:-1] if section != 'globals' else 'global'} {key!r}")
        return values[key]

    def _status_of(self, ref: str) -> str:
        if ref.startswith("ops."):
            target = self.sibling(ref[4:])
            return target.status if target is not None else "unknown"
        return self.dag.status if self.dag is not None else "unknown"

    # --- template context -------------------------------------------------------------------

    def _ops_context(self) -> dict[str, Any]:
        if self._ops_ctx is None:
            ctx: dict[str, Any] = {}
            for up in self.op.upstream:
                target = self.sibling(up)
                if target is not None:
                    ctx[up] = op_view(self.run_id, target, self.node_at, self.run_context)
            self._ops_ctx = ctx
        return self._ops_ctx

    def context(self, params: dict[str, Any]) -> dict[str, Any]:
        ios = {io.name: io for io in self.op.component.inputs}
        ios.update({io.name: io for io in self.op.component.outputs})
        params_ctx: dict[str, Any] = {}
        args = []
        for name, value in params.items():
            io = ios.get(name)
            arg = as_arg(name, value, io)
            params_ctx[name] = {
                "value": value,
                "type": io.type if io else None,
                "connection": io.connection if io else None,
                "as_str": as_str(value, io),
                "as_arg": arg,
            }
            if arg:
                args.append(arg)
        params_ctx["as_args"] = args
        ctx: dict[str, Any] = {
            "globals": run_globals(self.run_id, self.node, self.run_context),
            "ops": self._ops_context(),
            "dag": {"inputs": dict(self.dag.params or {}) if self.dag is not None else {}},
        }
        for name, value in params.items():
            io = ios.get(name)
            ctx[name] = as_str(value, io) if io is not None and io.is_flag else value
        ctx["params"] = params_ctx
        return ctx

    # --- params -----------------------------------------------------------------------------

    def params(self, *, partial: bool = False) -> dict[str, Any]:
        """Literal params of the op. ``partial`` (a matrix op) leaves required inputs to the
        matrix suggestions and skips defaults and coercion, which its children do."""
        op = self.op
        specs = self.param_specs
        resolved: dict[str, Any] = {}
        rendered: list[str] = []
        for name, param in specs.items():
            if param.ref:
                resolved[name] = self._follow(name, param.ref, param.value)
            elif templates.is_template(param.value):
                rendered.append(name)
            else:
                resolved[name] = param.value
        if rendered:
            for name in rendered:
                try:
                    resolved[name] = templates.render_value(specs[name].value, self.context(resolved))
                except templates.TemplateError as exc:
                    raise ResolveError(f"param {name!r} of op {self._op_name()!r}: {exc}") from None
        if op.joins:
            self._join(resolved)
        if partial:
            return resolved
        return complete_params(op, resolved)

    def _join(self, resolved: dict[str, Any]) -> None:
        """§8.4: render each join with the params resolved so far, select its runs, and bind
        each join param not already a param to the list of its value over them."""
        source = self.join_source
        self.joined = []
        for i, join in enumerate(self.op.joins):
            where = f"join #{i + 1} of op {self._op_name()!r}"
            if source is None:
                raise ResolveError(f"{where}: this runtime knows no runs to join")
            ctx = self.context(resolved)
            try:
                fields = {k: templates.render_value(v, ctx) if isinstance(v, str) and templates.is_template(v) else v
                          for k in ("query", "sort", "limit", "offset") for v in (join.get(k),)}
            except templates.TemplateError as exc:
                raise ResolveError(f"{where}: {exc}") from None
            try:
                selected = select(source, (self.run_id, self.node.path), str(fields["query"]),
                                  None if fields["sort"] is None else str(fields["sort"]), fields["limit"], fields["offset"])
            except JoinError as exc:
                raise ResolveError(f"{where}: {exc}") from None
            for name, param in (join.get("params") or {}).items():
                if name in self.param_specs:
                    continue  # an op param of the same name wins (§3.7 step 1)
                value = param.get("value") if isinstance(param, dict) else None
                if not isinstance(value, str):
                    raise ResolveError(f"{where}: param {name!r} needs a value path such as `outputs.loss`")
                resolved[name] = join_values(selected, value, _globals_of)
            self.joined.extend(f"{rec.run.run_id}/{rec.node.path}" for rec in selected)

    @staticmethod
    def _coerce(io: IOSpec, value: Any, what: str) -> Any:
        try:
            return _coerce(io, value)
        except ValueError as exc:
            raise ResolveError(f"{what} {io.name!r}: {exc}") from None

    def outputs(self, reported: dict[str, Any] | None) -> dict[str, Any]:
        """Reported outputs merged with declared defaults, declared types coerced."""
        return outputs_of(self.op, reported)

    # --- conditions, trigger, runtime -------------------------------------------------------

    def _op_name(self) -> str:
        return self.node.path or self.op.name

    def condition(self, params: dict[str, Any]) -> bool:
        try:
            return templates.evaluate_condition(self.op.conditions or "true", self.context(params))
        except templates.TemplateError as exc:
            raise ResolveError(f"conditions of op {self._op_name()!r}: {exc}") from None

    def render(self, value: Any, params: dict[str, Any], what: str) -> Any:
        try:
            return templates.render_deep(value, self.context(params))
        except templates.TemplateError as exc:
            raise ResolveError(f"{what} of op {self._op_name()!r}: {exc}") from None

    def known_params(self) -> dict[str, Any]:
        """The params that can be resolved now, for fields rendered before the op is compiled
        (a templated ``trigger`` is decided when the first upstream op is done): literals,
        refs and templates whose targets are ready, declared defaults. The others are left out,
        so a template naming one fails with "... is undefined" instead of guessing."""
        known: dict[str, Any] = {}
        pending: list[str] = []
        for name, param in self.param_specs.items():
            try:
                if param.ref:
                    known[name] = self._follow(name, param.ref, param.value)
                elif templates.is_template(param.value):
                    pending.append(name)
                else:
                    known[name] = param.value
            except ResolveError:
                continue
        for name in pending:
            try:
                known[name] = templates.render_value(self.param_specs[name].value, self.context(known))
            except templates.TemplateError:
                continue
        for io in self.op.component.inputs:
            if io.name not in known and io.value is not None:
                known[io.name] = io.value
        return known

    def env(self, params: dict[str, Any]) -> dict[str, str]:
        env: dict[str, str] = {}
        ios = {io.name: io for io in self.op.component.inputs}
        ios.update({io.name: io for io in self.op.component.outputs})
        for name, value in params.items():
            param = self.param_specs.get(name)
            io = ios.get(name)
            target = (param.to_env if param is not None else None) or (io.to_env if io is not None else None)
            if target:
                env[target] = as_str(value, io)
        return env
