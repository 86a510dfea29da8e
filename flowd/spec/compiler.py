"""Validation and compilation of a Polyaxonfile into the compiled tree (POLYFLOW §3, §4).

``compile_text``/``compile_path`` read the document, compose every op (:mod:`.compose`),
apply the DAG rules D1–D16 of §4.3, validate params (§3.3/§3.4), infer edges (§3.6, with
flowd's ``{{ ops.X }}`` templates), and build :mod:`flowd.spec.compiled` objects.

Verdicts follow Polyaxon 2.18 (the conformance oracle). The DAG rules inside a *nested* DAG
(an op whose component is itself a DAG) are deferred by the reference to run time: here they
are reported as warnings and recorded on ``compiled.Dag.errors`` so the engine fails that DAG
run when it starts it (§4.3 [FLOWD]).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import msgspec

from flowd.spec import compiled as c
from flowd.spec import model as m
from flowd.spec.compose import Composer, Effective, default_hub
from flowd.spec.diagnostics import Diagnostic, Finding, Sources, did_you_mean
from flowd.spec.matrix import check_matrix, compile_early_stopping, compile_matrix
from flowd.spec.params import DagContext, OpInfo, check_params, template_refs
from flowd.spec.types import CoercionError, coerce, is_template

__all__ = ["CompileResult", "compile_text", "compile_path"]

_TERMINAL_EVENT = {"failed", "stopped", "succeeded", "skipped", "upstream_failed", "done"}
_TRUTH = {"y", "yes", "t", "true", "on", "1", "n", "no", "f", "false", "off", "0"}


class CompileResult(msgspec.Struct, kw_only=True):
    """The outcome of compiling one file. ``op`` is None when the file is invalid."""

    op: c.Op | None
    errors: list[Diagnostic] = []
    warnings: list[Diagnostic] = []

    @property
    def valid(self) -> bool:
        return not self.errors

    @property
    def diagnostics(self) -> list[Diagnostic]:
        return sorted(self.errors + self.warnings, key=lambda d: (d.path, d.line or 0, d.column or 0))


class _Inherit:
    """What a DAG passes down to its children as defaults (§1.6): termination, cache, queue."""

    __slots__ = ("termination", "cache", "queue", "plugins")

    def __init__(self, termination: dict[str, Any] | None = None, cache: dict[str, Any] | None = None,
                 queue: str | None = None, plugins: dict[str, Any] | None = None) -> None:
        self.termination = termination
        self.cache = cache
        self.queue = queue
        self.plugins = plugins


def _deep(base: Any, over: Any) -> Any:
    """``over`` wins, nested maps merged (DAG defaults under child values)."""
    if base is None:
        return over
    if over is None:
        return base
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = _deep(out.get(k), v)
        return out
    return over


def _builtins(value: Any) -> Any:
    if value is None:
        return None
    return msgspec.to_builtins(value)


def _termination(raw: Any) -> c.Termination:
    if raw is None or isinstance(raw, str):
        return c.Termination()
    backoff = raw.get("backoff")
    return c.Termination(
        max_retries=raw.get("maxRetries") if raw.get("maxRetries") is not None else 0,
        timeout=raw.get("timeout"),
        ttl=raw.get("ttl"),
        backoff=c.Backoff(**{k: v for k, v in backoff.items() if v is not None}) if isinstance(backoff, dict) else None,
    )


class _Compiler:
    def __init__(self, *, hub: str | None, reference_compat: bool, url_timeout: float) -> None:
        self.findings: list[Finding] = []
        self.where: dict[int, Any] = {}
        self.sources = Sources()
        self.compat = reference_compat
        self.cmp = Composer(hub=hub, findings=self.findings, where=self.where, sources=self.sources,
                            url_timeout=url_timeout, reference_compat=reference_compat)
        self._components: dict[Any, c.Component] = {}
        self._run_refs: dict[int, list[Any]] = {}

    def emit(self, sev: str, where: tuple[str, tuple[Any, ...]], msg: str) -> None:
        self.findings.append(Finding(sev, where[0], where[1], msg))  # type: ignore[arg-type]

    # -- root ------------------------------------------------------------------------------------

    def compile_root(self, text: str, source: str, base_dir: str | None, params: dict[str, Any] | None) -> c.Op | None:
        doc = self.cmp.parse(text, source, base_dir)
        spec = doc.spec
        if spec is None:
            return None
        if spec.is_preset:
            self.emit("error", (source, ("isPreset",)), "the file is a preset (`isPreset: true`): it is an overlay for "
                                                        "another operation and cannot be checked on its own")
            return None
        eff = self.cmp.effective(spec, source=source, base_dir=base_dir, components=None)
        if eff is None:
            return None
        if eff.run is None:
            if not any(f.severity == "error" for f in self.findings):  # else the cause is already reported
                self.emit("error", (source, ()), "the resolved Polyaxonfile has no run: add a `run` section (or "
                                                 "`ops:`), an inline `component` or a reference (`hubRef`, `pathRef`, "
                                                 "`urlRef`)")
            return None
        if spec.schedule is not None and eff.kind is not None:
            pass  # a schedule is allowed on the top-level operation (§8.1)
        all_params = dict(spec.params or {})
        literal_paths: dict[str, tuple[Any, ...]] = {}
        inputs = {i.name: i for i in eff.inputs}
        for name, value in (params or {}).items():
            io = inputs.get(name)
            if isinstance(value, str) and io is not None and io.type is not None and not is_template(value):
                try:
                    value = coerce(io, value, reference_compat=self.compat)
                except CoercionError:
                    pass  # reported by check_params with the raw text
            all_params[name] = m.Param(value=value)
            literal_paths[name] = (f"--param {name}",)
        cli = set(literal_paths)

        def emit(sev: str, path: tuple[Any, ...], msg: str) -> None:
            if path and isinstance(path[0], str) and path[0].startswith("--param "):
                self.findings.append(Finding(sev, source, path, msg, locate=False))  # type: ignore[arg-type]
            else:
                self.emit(sev, (source, path), msg)

        self._check_op_fields(spec, eff, emit)
        plugins = eff.spec.plugins
        if isinstance(plugins, m.Plugins) and plugins.sandbox not in (None, False) and eff.kind != "service":
            emit("error", ("plugins", "sandbox"), f"plugins.sandbox is only supported on kind: service (this is a "
                                                  f"`{eff.kind}`)")
        check_params(params=all_params, inputs=eff.inputs, outputs=eff.outputs, matrix=spec.matrix, joins=_joins(spec),
                     strict=eff.strict, ctx=None, emit=emit, compat=self.compat, literal_paths=literal_paths)
        for ref in self._param_template_refs(all_params):
            emit("error", ("params",) if ref[0] not in cli else (f"--param {ref[0]}",),
                 f"`{{{{ {ref[1].text} }}}}` is only available to ops inside a DAG")
        root_name = spec.name if isinstance(spec.name, str) and not is_template(spec.name) else None
        if root_name is None and isinstance(eff.spec.name, str) and not is_template(eff.spec.name):
            root_name = eff.spec.name
        if root_name is None:
            stem = re.sub(r"[^-a-zA-Z0-9_]+", "-", Path(source).stem).strip("-")
            root_name = stem or "pipeline"
        component = self._component(eff, _Inherit(), nested=False)
        if component is None:
            return None
        return self._op(spec, eff, component, name=root_name, params=all_params, upstream=[], event_edges={},
                        inherit=_Inherit(), root=True)

    # -- shared per-op pieces ----------------------------------------------------------------------

    def _check_op_fields(self, op: m.PolyaxonfileSpec, eff: Effective, emit: Any) -> None:
        if op.matrix is not None:
            check_matrix(op.matrix, emit)
        if isinstance(op.conditions, str) and not is_template(op.conditions) and op.conditions.strip().lower() not in _TRUTH:
            emit("warning", ("conditions",), f"`conditions: {op.conditions}` has no `{{{{ }}}}` template and is not a "
                                             "truth word (true/false, yes/no, ...): it will fail the op when evaluated")

    @staticmethod
    def _param_template_refs(params: dict[str, m.Param]) -> list[tuple[str, Any]]:
        out = []
        for name, p in params.items():
            value = p.value
            if p.ref is None and value is not None and not isinstance(value, (int, float)):
                for ref in template_refs(value):
                    out.append((name, ref))
        return out

    def _component(self, eff: Effective, inherit: _Inherit, *, nested: bool) -> c.Component | None:
        key = (id(eff), id(inherit), nested)
        hit = self._components.get(key)
        if hit is not None:
            return hit
        run = eff.run
        self.cmp.check_runtime(run)
        spec = eff.spec
        dag = None
        body: dict[str, Any] = {}
        if isinstance(run, m.DagRuntime):
            dag = self._dag(eff, run, inherit=inherit, nested=nested)
        elif run is not None:
            body = msgspec.to_builtins(run)
            body.pop("kind", None)
        name = spec.name if isinstance(spec.name, str) else None
        comp = c.Component(
            kind=eff.kind or "job", name=name, inputs=eff.inputs, outputs=eff.outputs, run=body, dag=dag,
            strict_params=eff.strict, namespace=spec.namespace, queue=spec.queue or inherit.queue,
            tags=list(spec.tags or []), source=eff.label,
        )
        self._components[key] = comp
        return comp

    def _op(self, op: m.PolyaxonfileSpec, eff: Effective, component: c.Component, *, name: str,
            params: dict[str, m.Param], upstream: list[str], event_edges: dict[str, list[str]], inherit: _Inherit,
            root: bool) -> c.Op:
        spec = eff.spec
        term = _deep(inherit.termination, _builtins(spec.termination))
        cache = _deep(inherit.cache, _builtins(spec.cache))
        approved: Any = spec.is_approved if spec.is_approved is not None else True
        return c.Op(
            name=name,
            component=component,
            params={k: c.ParamSpec(value=p.value, ref=p.ref, context_only=p.context_only, to_env=p.to_env,
                                   to_init=p.to_init, connection=p.connection) for k, p in params.items()},
            upstream=upstream,
            event_edges=event_edges,
            trigger=op.trigger or "all_succeeded",
            conditions=op.conditions,
            skip_on_upstream_skip=bool(op.skip_on_upstream_skip),
            is_approved=approved,
            matrix=compile_matrix(op.matrix) if op.matrix is not None else None,
            termination=_termination(term),
            cache=cache if isinstance(cache, dict) else ({"disable": cache} if cache is not None else None),
            schedule=_builtins(op.schedule) if root else None,
            events=_builtins(op.events) if isinstance(op.events, list) else [],
            hooks=_builtins(spec.hooks) if isinstance(spec.hooks, list) else [],
            joins=_builtins(op.joins) if isinstance(op.joins, list) else [],
        )

    # -- DAGs (§4) -------------------------------------------------------------------------------

    def _dag(self, eff: Effective, dag: m.DagRuntime, *, inherit: _Inherit, nested: bool) -> c.Dag:
        deferred: list[str] = []
        sev = "warning" if nested else "error"
        dag_where = self.where.get(id(dag), (eff.source, ()))
        shorthand = id(dag) in self.cmp.shorthand

        def rule(where: tuple[str, tuple[Any, ...]], msg: str) -> None:
            if nested:
                deferred.append(msg)
                msg += " (in a nested DAG: the reference only checks this when the nested DAG runs)"
            self.emit(sev, where, msg)

        ops_where = (dag_where[0], (*dag_where[1], "ops" if shorthand else "operations"))
        comps_list = dag.components or []
        components: dict[str, m.PolyaxonfileSpec] = {}
        for comp in comps_list:
            if not isinstance(comp.name, str) or not comp.name:
                rule(self.cmp.at(comp), "component requires a name (every entry of `components` needs a `name`)")
                continue
            if comp.name in components:
                rule(self.cmp.at(comp, "name"), f"DAG has multiple components with the same name `{comp.name}`")
                continue
            components[comp.name] = comp
        ops = dag.operations or []
        if not ops:
            rule(ops_where if dag.operations is not None else dag_where,
                 "DAG has no ops: `operations` must list at least one operation")
        # pass-down for the children: the DAG component's own values under the inherited ones
        child_inherit = _Inherit(
            termination=_deep(inherit.termination, _builtins(eff.spec.termination)),
            cache=_deep(inherit.cache, _builtins(eff.spec.cache)),
            queue=eff.spec.queue or inherit.queue,
        )
        named: dict[str, tuple[m.PolyaxonfileSpec, Effective | None]] = {}
        order: list[str] = []
        for op in ops:
            where = self.cmp.at(op)
            if not isinstance(op.name, str) or not op.name:
                rule(where, "op requires a name (every operation of a DAG needs a `name`)")
                continue
            if op.name in named:
                rule(self.cmp.at(op, "name"), f"DAG has multiple ops with the same name `{op.name}`")
                continue
            if op.schedule is not None:
                rule(self.cmp.at(op, "schedule"),
                     f"op `{op.name}` cannot define a schedule inside a DAG (schedule the whole pipeline instead)")
            if isinstance(op.events, str):
                rule(self.cmp.at(op, "events"), f"op `{op.name}` defines a malformed events: a template is not allowed "
                                                "for `events` inside a DAG")
            if isinstance(op.joins, str):
                rule(self.cmp.at(op, "joins"), f"op `{op.name}`: `joins` must be a list (a template is not supported)")
            if isinstance(op.dependencies, str):
                rule(self.cmp.at(op, "dependencies"), f"op `{op.name}`: `dependencies` must be a list of op names "
                                                      "inside a DAG (a template is not supported)")
            op_eff = self.cmp.effective(op, source=eff.source, base_dir=eff.base_dir, components=components, rule=rule)
            if op_eff is not None and op_eff.run is None:
                rule(where, f"op `{op.name}` has no definition field: give it a `dagRef`, `hubRef`, `pathRef`, "
                            "`urlRef`, an inline `component` or a `run`")
                op_eff = None
            named[op.name] = (op, op_eff)
            order.append(op.name)
        ctx = DagContext({n: _op_info(e) for n, (o, e) in named.items()}, {i.name: i for i in eff.inputs})
        edges, event_edges = self._edges(named, order, ctx, rule, sev)
        self._acyclic(order, edges, named, rule)
        for name in order:
            op, op_eff = named[name]
            if op_eff is None:
                continue
            where = self.cmp.at(op)

            def emit(s: str, path: tuple[Any, ...], msg: str, where: Any = where, name: str = name) -> None:
                target = (where[0], (*where[1], *path))
                if s == "error":
                    rule(target, msg)
                else:
                    self.emit(s, target, msg)

            self._check_op_fields(op, op_eff, lambda s, p, msg, where=where: self.emit(s, (where[0], (*where[1], *p)), msg))
            check_params(params=op.params or {}, inputs=op_eff.inputs, outputs=op_eff.outputs, matrix=op.matrix,
                         joins=_joins(op), strict=op_eff.strict or bool(op.strict_params), ctx=ctx, emit=emit,
                         compat=self.compat)
        compiled_ops: list[c.Op] = []
        for name in order:
            op, op_eff = named[name]
            if op_eff is None:
                continue
            child = self._component(op_eff, child_inherit, nested=True)
            if child is None:
                continue
            compiled_ops.append(self._op(op, op_eff, child, name=name, params=dict(op.params or {}),
                                         upstream=edges.get(name, []), event_edges=event_edges.get(name, {}),
                                         inherit=child_inherit, root=False))
        env = dag.environment
        return c.Dag(
            ops=compiled_ops,
            concurrency=dag.concurrency,  # type: ignore[arg-type]  # may be a template string
            early_stopping=compile_early_stopping(dag.early_stopping),
            environment=_builtins(env) if env is not None and not isinstance(env, str) else None,
            connections=dag.connections if isinstance(dag.connections, list) else None,
            volumes=dag.volumes,
            errors=deferred,
        )

    def _run_template_refs(self, eff: Effective) -> list[Any]:
        run = eff.run
        if run is None or isinstance(run, m.DagRuntime):
            return []
        hit = self._run_refs.get(id(run))
        if hit is None:
            hit = self._run_refs[id(run)] = template_refs(msgspec.to_builtins(run))
        return hit

    def _edges(self, named: dict[str, tuple[m.PolyaxonfileSpec, Effective | None]], order: list[str], ctx: DagContext,
               rule: Any, sev: str) -> tuple[dict[str, list[str]], dict[str, dict[str, list[str]]]]:
        """§3.6 (+[FLOWD] templates) and D13 orphans."""
        edges: dict[str, list[str]] = {}
        event_edges: dict[str, dict[str, list[str]]] = {}
        orphans: dict[str, list[tuple[str, Any, str]]] = {}
        for name in order:
            op, op_eff = named[name]
            up: dict[str, None] = {}

            def add(target: str, where: tuple[Any, ...], how: str, up: dict[str, None] = up, name: str = name,
                    op: m.PolyaxonfileSpec = op) -> None:
                if target not in named:
                    orphans.setdefault(target, []).append((name, self.cmp.at(op, *where), how))
                    return
                up[target] = None

            if isinstance(op.dependencies, list):
                for i, dep in enumerate(op.dependencies):
                    add(dep, ("dependencies", i), "in `dependencies`")
            for pname, p in (op.params or {}).items():
                ref = p.ref
                if ref is not None and ref.startswith("ops.") and ref.count(".") == 1:
                    add(ref[4:], ("params", pname, "ref"), f"by `ref` of param `{pname}`")
            if isinstance(op.events, list):
                ev_map: dict[str, list[str]] = {}
                for i, ev in enumerate(op.events):
                    if ev.ref.startswith("ops."):
                        target = ev.ref[4:]
                        add(target, ("events", i, "ref"), "by an event trigger")
                        statuses = [k[len("run_status_"):] for k in ev.kinds if k.startswith("run_status_")]
                        ev_map.setdefault(target, [])
                        for s in statuses:
                            if s not in _TERMINAL_EVENT and s not in ev_map[target]:
                                ev_map[target].append(s)
                    else:
                        self.emit("warning", self.cmp.at(op, "events", i, "ref"),
                                  f"event ref `{ev.ref}` does not start with `ops.`: it creates no edge and is ignored inside a DAG")
                if ev_map:
                    event_edges[name] = {k: v for k, v in ev_map.items() if k in named}
            # [FLOWD] {{ ops.X.* }} / {{ dag.inputs.Z }} in params, the run section and conditions
            refs: list[tuple[Any, Any, tuple[Any, ...], bool]] = []
            for pname, tref in self._param_template_refs(op.params or {}):
                refs.append((tref, op, ("params", pname), False))
            if op_eff is not None:
                for tref in self._run_template_refs(op_eff):
                    refs.append((tref, op_eff.run, (), False))
            if op.conditions is not None and "{" in op.conditions:
                for tref in template_refs(op.conditions):
                    refs.append((tref, op, ("conditions",), True))
            for tref, owner, sub, soft in refs:
                problem = self._check_template_ref(tref, name, ctx, soft)
                if problem:
                    where = self.cmp.at(owner, *sub)
                    if soft:
                        self.emit("warning", where, problem + " (conditions are only evaluated at run time)")
                    else:
                        rule(where, problem)
                    continue
                if tref.ns == "ops" and tref.op in named:
                    up.setdefault(tref.op, None)
            edges[name] = list(up)
        for target, users in orphans.items():
            user, where, how = users[0]
            hint = did_you_mean(target, named)
            more = f" (and {len(users) - 1} more reference(s))" if len(users) > 1 else ""
            rule(where, f"DAG has orphan ops: `{target}` is referenced {how} of op `{user}` but is not an op of this DAG{hint}{more}")
        return edges, event_edges

    @staticmethod
    def _check_template_ref(ref: Any, name: str, ctx: DagContext, soft: bool) -> str | None:
        text = f"`{{{{ {ref.text} }}}}`"
        if ref.dashed is not None:
            return (f"{text}: Jinja reads `.{ref.dashed}` as a subtraction; write `['{ref.dashed}']` instead "
                    f"(e.g. `{ref.ns}['{ref.op}']`)" if ref.op == ref.dashed else
                    f"{text}: Jinja reads `.{ref.dashed}` as a subtraction; write `['{ref.dashed}']` instead")
        if ref.ns == "dag":
            if ref.section == "inputs" and ref.key is not None and ref.key not in ctx.dag_inputs:
                return f"{text}: the DAG declares no input `{ref.key}`{did_you_mean(ref.key, ctx.dag_inputs)}"
            return None
        info = ctx.ops.get(ref.op)
        if info is None:
            return f"{text} names op `{ref.op}`, which is not an op of this DAG{did_you_mean(ref.op, ctx.ops)}"
        if ref.op == name and soft:
            return f"{text} names the op itself"
        if ref.section is None or info.inputs is None:
            return None
        if ref.section not in ("outputs", "inputs", "status"):
            return f"{text}: expected `ops.{ref.op}.outputs.<name>`, `.inputs.<name>` or `.status`"
        if ref.section in ("outputs", "inputs") and ref.key is not None:
            decl = info.outputs if ref.section == "outputs" else info.inputs
            assert decl is not None
            if ref.key not in decl:
                names = ", ".join(f"`{n}`" for n in decl) or "none"
                return (f"{text}: op `{ref.op}` declares no {ref.section[:-1]} `{ref.key}` ({ref.section}: {names})"
                        f"{did_you_mean(ref.key, decl)}")
        return None

    def _acyclic(self, order: list[str], edges: dict[str, list[str]], named: dict[str, Any], rule: Any) -> None:
        """D14 with Kahn's algorithm; a cycle is reported with its op names in order."""
        indeg = {n: len(edges.get(n, ())) for n in order}
        down: dict[str, list[str]] = {n: [] for n in order}
        for n in order:
            for u in edges.get(n, ()):
                down[u].append(n)
        ready = [n for n in order if indeg[n] == 0]
        seen = 0
        while ready:
            n = ready.pop()
            seen += 1
            for d in down[n]:
                indeg[d] -= 1
                if indeg[d] == 0:
                    ready.append(d)
        if seen == len(order):
            return
        remaining = {n for n in order if indeg[n] > 0}
        start = next(n for n in order if n in remaining)
        path: list[str] = []
        index: dict[str, int] = {}
        node = start
        while node not in index:
            index[node] = len(path)
            path.append(node)
            node = next(u for u in edges[node] if u in remaining)
        cycle = path[index[node]:]
        cycle.reverse()  # upstream first: a -> b means b runs after a
        first = min(range(len(cycle)), key=lambda i: order.index(cycle[i]))
        cycle = cycle[first:] + cycle[:first]  # start at the op declared first
        cycle.append(cycle[0])
        op = named[cycle[0]][0]
        rule(self.cmp.at(op, "dependencies") if op.dependencies else self.cmp.at(op),
             f"DAG is not acyclic: {' -> '.join(cycle)}")


_UNKNOWN = OpInfo(None, None)


def _op_info(eff: Effective | None) -> OpInfo:
    """What the DAG context knows of an op (one object per composed component)."""
    if eff is None:
        return _UNKNOWN
    info: OpInfo | None = eff.cache_slot.get("info")
    if info is None:
        info = eff.cache_slot["info"] = OpInfo({i.name: i for i in eff.inputs}, {o.name: o for o in eff.outputs})
    return info


def _joins(op: m.PolyaxonfileSpec) -> list[m.Join] | None:
    return op.joins if isinstance(op.joins, list) else None


def compile_text(text: str, *, source: str = "<string>", base_dir: str | os.PathLike[str] | None = ".",
                 params: dict[str, Any] | None = None, hub: str | None = None, reference_compat: bool = False,
                 url_timeout: float = 10.0) -> CompileResult:
    """Validate and compile one Polyaxonfile given as text. Never raises for bad input."""
    comp = _Compiler(hub=hub if hub is not None else default_hub(), reference_compat=reference_compat,
                     url_timeout=url_timeout)
    op = comp.compile_root(text, source, None if base_dir is None else str(base_dir), params)
    diags = [f.to_diagnostic(comp.sources) for f in comp.findings]
    diags.sort(key=lambda d: (d.path != source, d.path, d.line or 0, d.column or 0))
    errors = [d for d in diags if d.severity == "error"]
    warnings = [d for d in diags if d.severity == "warning"]
    return CompileResult(op=None if errors else op, errors=errors, warnings=warnings)


def compile_path(path: str | os.PathLike[str], *, params: dict[str, Any] | None = None, hub: str | None = None,
                 reference_compat: bool = False, url_timeout: float = 10.0) -> CompileResult:
    """Validate and compile the Polyaxonfile at ``path`` (its ``pathRef``s are relative to it)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        return CompileResult(op=None, errors=[Diagnostic(path=str(path), location="", message="no such file")])
    except IsADirectoryError:
        return CompileResult(op=None, errors=[Diagnostic(path=str(path), location="", message="is a directory, not a file")])
    except UnicodeDecodeError as exc:
        return CompileResult(op=None, errors=[Diagnostic(path=str(path), location="", message=f"not UTF-8 text: {exc.reason}")])
    except OSError as exc:
        return CompileResult(op=None, errors=[Diagnostic(path=str(path), location="", message=f"cannot read: {exc.strerror}")])
    return compile_text(text, source=str(path), base_dir=str(p.resolve().parent), params=params, hub=hub,
                        reference_compat=reference_compat, url_timeout=url_timeout)
