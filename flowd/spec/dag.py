"""The DAG rules (POLYFLOW §4.3 D1–D16), edge inference (§3.6) and the compiled ``Dag``.

:class:`DagRules` is the half of the compiler that handles one ``run: {kind: dag}`` body: names
and components (D3–D7), composing every op (D8–D12, through :mod:`.compose`), edges from
``dependencies``, ``ref: ops.X``, ``events`` and flowd's ``{{ ops.X }}`` templates (D13),
cycles (D14, reported with the cycle's op names in order) and params against the DAG context
(D15). Inside a nested DAG the reference applies these rules only when that run is compiled, so
they are warnings here and recorded on ``Dag.errors`` (§4.3 [FLOWD]).

The other half, :class:`flowd.spec.compiler._Compiler`, provides the root op, the compiled
``Component``/``Op`` objects and reporting; no I/O happens here.
"""

from __future__ import annotations

from typing import Any

import msgspec

from flowd.spec import compiled as c
from flowd.spec import model as m
from flowd.spec.compose import Composer, Effective, binds_inner_output
from flowd.spec.diagnostics import did_you_mean
from flowd.spec.matrix import check_matrix, compile_early_stopping
from flowd.spec.params import DagContext, OpInfo, check_params, template_refs
from flowd.spec.refs import RefError, locate_hub
from flowd.spec.template_check import check_op_templates
from flowd.spec.types import is_template
from flowd.spec.unsupported import check_ignored

__all__ = ["DagRules", "Inherit", "deep_merge", "builtins_of", "param_template_refs", "joins_of"]

_TERMINAL_EVENT = {"failed", "stopped", "succeeded", "skipped", "upstream_failed", "done"}
_TRUTH = {"y", "yes", "t", "true", "on", "1", "n", "no", "f", "false", "off", "0"}


class Inherit:
    """What a DAG passes down to its children as defaults (§1.6): termination, cache, queue."""

    __slots__ = ("termination", "cache", "queue", "plugins")

    def __init__(self, termination: dict[str, Any] | None = None, cache: dict[str, Any] | None = None,
                 queue: str | None = None, plugins: dict[str, Any] | None = None) -> None:
        self.termination = termination
        self.cache = cache
        self.queue = queue
        self.plugins = plugins


def deep_merge(base: Any, over: Any) -> Any:
    """``over`` wins, nested maps merged (DAG defaults under child values)."""
    if base is None:
        return over
    if over is None:
        return base
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = deep_merge(out.get(k), v)
        return out
    return over


def builtins_of(value: Any) -> Any:
    if value is None:
        return None
    return msgspec.to_builtins(value)


def param_template_refs(params: dict[str, m.Param]) -> list[tuple[str, Any]]:
    """(param name, template reference) for every ``{{ ops.* }}``/``{{ dag.* }}`` in param values."""
    out = []
    for name, p in params.items():
        value = p.value
        if p.ref is None and value is not None and not isinstance(value, (int, float)):
            for ref in template_refs(value):
                out.append((name, ref))
    return out


class DagRules:
    """Mixin: the DAG half of the compiler (needs ``cmp``, ``compat``, ``emit``, ``_component``, ``_op``)."""

    cmp: Composer
    compat: bool
    _run_refs: dict[int, list[Any]]
    _dags: dict[Any, c.Dag]
    dag_depth: int  # how many DAGs enclose the one being compiled (max_dag_depth)

    def emit(self, sev: str, where: tuple[str, tuple[Any, ...]], msg: str) -> None:
        raise NotImplementedError

    def broken(self, where: tuple[str, tuple[Any, ...]]) -> bool:
        """Was an error already reported at or below ``where``? Then the value there was dropped
        while reading, and a rule that would fire only because of that stays silent."""
        return where in self.cmp.error_prefixes()

    def _component(self, eff: Effective, inherit: Inherit, *, nested: bool) -> c.Component | None:
        raise NotImplementedError

    def count_op(self, where: tuple[str, tuple[Any, ...]]) -> None:
        raise NotImplementedError

    def _op(self, op: m.PolyaxonfileSpec, eff: Effective, component: c.Component, *, name: str,
            params: dict[str, m.Param], upstream: list[str], event_edges: dict[str, list[str]], inherit: Inherit,
            root: bool) -> c.Op:
        raise NotImplementedError

    def _check_op_fields(self, op: m.PolyaxonfileSpec, eff: Effective, emit: Any) -> None:
        check_op_templates(op, eff.inputs, eff.outputs, eff.run, emit)
        check_ignored(op, eff.spec, emit)
        self._check_hook_refs(op, eff, emit)
        if op.matrix is not None and not self.broken(self.cmp.at(op, "matrix")):
            check_matrix(op.matrix, emit)
        if isinstance(op.conditions, str) and not is_template(op.conditions) and op.conditions.strip().lower() not in _TRUTH:
            emit("warning", ("conditions",), f"`conditions: {op.conditions}` has no `{{{{ }}}}` template and is not a "
                                             "truth word (true/false, yes/no, ...): it will fail the op when evaluated")

    def _check_hook_refs(self, op: m.PolyaxonfileSpec, eff: Effective, emit: Any) -> None:
        """Each hook's ``hubRef`` must name a component of the hub, like an op's ``hubRef``."""
        hooks = op.hooks if isinstance(op.hooks, list) else eff.spec.hooks if isinstance(eff.spec.hooks, list) else []
        for i, hook in enumerate(hooks):
            ref = getattr(hook, "hub_ref", None)
            if not isinstance(ref, str) or is_template(ref):
                continue
            try:
                locate_hub(ref, self.cmp.hub)
            except RefError as exc:
                # without a hub there is nothing to resolve against: Polyaxon's verdict (valid) stays,
                # with a warning; with a hub, a name it does not hold is an error
                emit("error" if self.cmp.hub else "warning", ("hooks", i, "hubRef"), f"hook: {exc}")

    # -- DAGs (§4) -------------------------------------------------------------------------------

    def _dag(self, eff: Effective, dag: m.DagRuntime, *, inherit: Inherit, nested: bool) -> c.Dag:
        # A DAG body is compiled once per distinct context: ops that use one component but patch
        # a field its body does not read (``description``, ``tags``, params...) share it. Else ten
        # ops per level over six levels would compile 10^6 ops from a 4 KB file (docs/limits.md).
        key = (id(dag), id(eff.inputs), eff.source, eff.base_dir, nested, self.dag_depth, msgspec.json.encode((
            deep_merge(inherit.termination, builtins_of(eff.spec.termination)),
            deep_merge(inherit.cache, builtins_of(eff.spec.cache)), eff.spec.queue or inherit.queue)))
        cached = self._dags.get(key)
        if cached is None:
            cached = self._dags[key] = self._compile_dag(eff, dag, inherit=inherit, nested=nested)
        return cached

    def _compile_dag(self, eff: Effective, dag: m.DagRuntime, *, inherit: Inherit, nested: bool) -> c.Dag:
        deferred: list[str] = []
        sev = "warning" if nested else "error"
        dag_where = self.cmp.where.get(id(dag), (eff.source, ()))
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
        child_inherit = Inherit(
            termination=deep_merge(inherit.termination, builtins_of(eff.spec.termination)),
            cache=deep_merge(inherit.cache, builtins_of(eff.spec.cache)),
            queue=eff.spec.queue or inherit.queue,
        )
        named: dict[str, tuple[m.PolyaxonfileSpec, Effective | None]] = {}
        order: list[str] = []
        for op in ops:
            where = self.cmp.at(op)
            self.count_op(where)
            if not isinstance(op.name, str) or not op.name:
                if not self.broken((where[0], (*where[1], "name"))):
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
        ctx = DagContext({n: _op_info(e, fan_in=o.matrix is not None) for n, (o, e) in named.items()},
                         {i.name: i for i in eff.inputs})
        edges, event_edges = self._edges(named, order, ctx, rule, sev)
        self._output_bindings(eff, ctx)
        self._acyclic(order, edges, named, rule)
        self._service_dependencies(order, edges, event_edges, named)
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
            if self.broken((where[0], (*where[1], "params"))):
                continue  # a param was dropped while reading: checking the rest would mislead
            check_params(params=op.params or {}, inputs=op_eff.inputs, outputs=op_eff.outputs, matrix=op.matrix,
                         joins=joins_of(op), strict=op_eff.strict or bool(op.strict_params), ctx=ctx, emit=emit,
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
        for field, value in (("environment", env), ("connections", dag.connections),
                             ("earlyStopping", dag.early_stopping)):
            if isinstance(value, str):
                self.emit("warning", (dag_where[0], (*dag_where[1], field)),
                          f"a template for the whole `{field}` of a DAG is not supported by flowd yet: it is ignored "
                          "(write the list/mapping and template its values)")
        return c.Dag(
            ops=compiled_ops,
            concurrency=dag.concurrency,  # type: ignore[arg-type]  # may be a template string
            early_stopping=compile_early_stopping(dag.early_stopping),
            environment=builtins_of(env) if env is not None and not isinstance(env, str) else None,
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
                                  f"event ref `{ev.ref}` does not start with `ops.`: "
                                  "it creates no edge and is ignored inside a DAG")
                if ev_map:
                    event_edges[name] = {k: v for k, v in ev_map.items() if k in named}
            # [FLOWD] {{ ops.X.* }} / {{ dag.inputs.Z }} in params, the run section and conditions
            refs: list[tuple[Any, Any, tuple[Any, ...], bool]] = []
            for pname, tref in param_template_refs(op.params or {}):
                refs.append((tref, op, ("params", pname), False))
            if op_eff is not None:
                for tref in self._run_template_refs(op_eff):
                    refs.append((tref, op_eff.run, (), False))
            if op.matrix is not None and not isinstance(op.matrix, str):
                # a mapping matrix over `{{ ops.lister.outputs.shards }}` needs lister's outputs first
                for tref in template_refs(builtins_of(op.matrix)):
                    refs.append((tref, op, ("matrix",), False))
            if isinstance(op.trigger, str) and "{" in op.trigger:
                for tref in template_refs(op.trigger):
                    refs.append((tref, op, ("trigger",), True))
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
            rule(where, f"DAG has orphan ops: `{target}` is referenced {how} of op `{user}` "
                        f"but is not an op of this DAG{hint}{more}")
        return edges, event_edges

    def _output_bindings(self, eff: Effective, ctx: DagContext) -> None:
        """[FLOWD] a DAG component's output bound to an inner op (``value: "{{ ops.X.outputs.Y }}"``):
        X must be an op of this DAG declaring Y, like any cross-op template."""
        declared = {io.name: io for io in (eff.spec.outputs or []) if isinstance(io, m.IO)}
        eff.outputs = [self._implicit_binding(eff, io, ctx, declared) for io in eff.outputs]
        for io in eff.outputs:
            if not (isinstance(io.value, str) and binds_inner_output(io.value)):
                continue
            where = self.cmp.at(declared[io.name], "value") if io.name in declared else (eff.source, ("outputs",))
            for tref in template_refs(io.value):
                problem = self._check_template_ref(tref, "", ctx, False)
                if problem:  # an error at any depth: the binding is flowd's, no reference verdict to keep
                    self.emit("error", where, f"output `{io.name}` of the DAG: {problem}")

    def _implicit_binding(self, eff: Effective, io: c.IOSpec, ctx: DagContext, declared: dict[str, Any]) -> c.IOSpec:
        """[FLOWD] a DAG output with no value takes the output of the same name of the one inner
        op that declares it (``l3`` outputs ``n`` -> the DAG's ``n``), so a value passes out of
        nested DAGs without a binding at each level. None or several such ops: a warning, since
        the output would never be produced."""
        if io.value is not None:
            return io
        makers = [name for name, info in ctx.ops.items() if info.outputs is not None and io.name in info.outputs]
        if len(makers) == 1:
            return msgspec.structs.replace(io, value=f"{{{{ ops.{makers[0]}.outputs.{io.name} }}}}")
        if not io.is_optional:
            where = self.cmp.at(declared[io.name]) if io.name in declared else (eff.source, ("outputs",))
            why = (f"ops {', '.join(f'`{n}`' for n in makers)} all declare it" if makers
                   else "no op of the DAG declares an output of that name")
            self.emit("warning", where, f"output `{io.name}` of the DAG has no value and {why}, so it is never "
                                        f"produced: bind it with `value: \"{{{{ ops.OP.outputs.{io.name} }}}}\"`")
        return io

    def _service_dependencies(self, order: list[str], edges: dict[str, list[str]],
                              event_edges: dict[str, dict[str, list[str]]], named: dict[str, Any]) -> None:
        """A service runs until every other op of its DAG is done, so an op that waits for it to
        end waits forever (flowd's engine then fails it with the same advice)."""
        for name in order:
            for up in edges.get(name, ()):
                up_eff = named[up][1]
                if up_eff is None or up_eff.kind != "service" or event_edges.get(name, {}).get(up):
                    continue
                op = named[name][0]
                where = self.cmp.at(op, "dependencies") if op.dependencies else self.cmp.at(op)
                self.emit("warning", where,
                          f"op `{name}` depends on `{up}`, which is a service: a service runs until every other op "
                          f"of its DAG is done, so `{name}` would wait for it forever. To start once the service "
                          f"runs, use `events: [{{ref: ops.{up}, kinds: [run_status_running]}}]` instead")

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
        if ref.section == "children" and info.fan_in:
            return None  # [FLOWD] a matrix op's children: [{index, status, params, outputs}]
        if ref.section not in ("outputs", "inputs", "status"):
            more = ", `.children`" if info.fan_in else ""
            return f"{text}: expected `ops.{ref.op}.outputs.<name>`, `.inputs.<name>`{more} or `.status`"
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


def _op_info(eff: Effective | None, *, fan_in: bool = False) -> OpInfo:
    """What the DAG context knows of an op (one object per composed component)."""
    if eff is None:
        return _UNKNOWN
    info: OpInfo | None = eff.cache_slot.get("info")
    if info is None:
        info = eff.cache_slot["info"] = OpInfo({i.name: i for i in eff.inputs}, {o.name: o for o in eff.outputs})
    if fan_in:
        return OpInfo(info.inputs, info.outputs, fan_in=True)
    return info


def joins_of(op: m.PolyaxonfileSpec) -> list[m.Join] | None:
    return op.joins if isinstance(op.joins, list) else None
