"""Validation and compilation of a Polyaxonfile into the compiled tree (POLYFLOW §3, §4).

``compile_text``/``compile_path`` read the document, compose every op (:mod:`.compose`),
apply the DAG rules D1–D16 of §4.3 and infer edges (:mod:`.dag`), validate params
(§3.3/§3.4, :mod:`.params`), and build :mod:`flowd.spec.compiled` objects. This module holds
the root op (submission params, D16) and the construction of compiled ops and components.

Verdicts follow Polyaxon 2.18 (the conformance oracle). The DAG rules inside a *nested* DAG
(an op whose component is itself a DAG) are deferred by the reference to run time: here they
are reported as warnings and recorded on ``compiled.Dag.errors`` so the engine fails that DAG
run when it starts it (§4.3 [FLOWD]).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, cast

import msgspec

from flowd.spec import compiled as c
from flowd.spec import model as m
from flowd.spec.compose import Composer, Effective, binds_inner_output, default_hub, default_presets
from flowd.spec.dag import DagRules, Inherit, builtins_of, deep_merge, joins_of, param_template_refs
from flowd.spec.diagnostics import Diagnostic, Finding, Sources
from flowd.spec.expansion import check_ops
from flowd.spec.limits import LimitError, Limits, json_size, over
from flowd.spec.matrix import compile_matrix
from flowd.spec.params import check_params
from flowd.spec.refs import RefError, locate_hub
from flowd.spec.types import CoercionError, coerce, is_template

__all__ = ["CompileResult", "compile_text", "compile_path"]


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


class _OverLimit(Exception):
    """Compiling further would do work a limit forbids: stop, report ``where``/``error``."""

    def __init__(self, where: tuple[str, tuple[Any, ...]], error: LimitError) -> None:
        super().__init__(str(error))
        self.where = where
        self.error = error


class _Compiler(DagRules):
    def __init__(self, *, hub: str | None, reference_compat: bool, url_timeout: float,
                 url_fetcher: Any = None, limits: Limits,
                 presets: str | None = None) -> None:
        self.findings: list[Finding] = []
        self.where: dict[int, Any] = {}
        self.sources = Sources()
        self.compat = reference_compat
        self.limits = limits
        self.cmp = Composer(hub=hub, findings=self.findings, where=self.where, sources=self.sources,
                            url_timeout=url_timeout, reference_compat=reference_compat, url_fetcher=url_fetcher,
                            limits=limits, presets=presets)
        self._components: dict[Any, c.Component] = {}
        self._run_refs: dict[int, list[Any]] = {}
        self._dags: dict[Any, c.Dag] = {}
        # limits while compiling (docs/limits.md): ops read so far (shared components are
        # compiled once per place they are used, so this bounds the compiler's own work) and
        # how many DAGs enclose the one being compiled
        self.ops_read = 1
        self.dag_depth = 0
        # compiling a hook's component: its own hooks are not compiled (a hook of a hook could
        # name itself and never end); they are reported as not run
        self.in_hook = False
        self.op_where: dict[int, tuple[str, tuple[Any, ...]]] = {}

    def count_op(self, where: tuple[str, tuple[Any, ...]]) -> None:
        self.ops_read += 1
        if self.ops_read > self.limits.max_ops:
            raise _OverLimit(where, over("the pipeline expands to", self.ops_read, "ops", setting="max_ops",
                                         limit=self.limits.max_ops, at_least=True))

    def emit(self, sev: str, where: tuple[str, tuple[Any, ...]], msg: str) -> None:
        self.findings.append(Finding(sev, where[0], where[1], msg))  # type: ignore[arg-type]

    def check_schedule(self, schedule: Any, source: str) -> None:
        """flowd's own checks of a schedule. Polyaxon accepts any cron text at submission and
        fails at the first tick; flowd reports it now, as a warning so the verdict stays
        Polyaxon's. The ``timezone`` extension is flowd's, so an unknown zone is an error."""
        from croniter import croniter

        from flowd.spec.cron import normalize

        cron = getattr(schedule, "cron", None)
        if isinstance(cron, str) and not is_template(cron) and not croniter.is_valid(normalize(cron)):
            self.emit("warning", (source, ("schedule", "cron")),
                      f"`{cron}` is not a valid cron expression (5 fields or @hourly/@daily/...): "
                      "the schedule will fail at its first tick")
        zone = getattr(schedule, "timezone", None)
        if zone is not None:
            import zoneinfo

            try:
                zoneinfo.ZoneInfo(zone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                self.emit("error", (source, ("schedule", "timezone")),
                          f"unknown timezone `{zone}` (use an IANA name such as `Europe/Paris` or `UTC`)")

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
        if spec.schedule is not None:
            self.check_schedule(spec.schedule, source)
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
        if params:
            size = json_size(params)
            if size > self.limits.max_params_bytes:
                self.findings.append(Finding("error", source, (), str(over(
                    "the submission params (--param) are", size, "bytes as JSON", setting="max_params_bytes",
                    limit=self.limits.max_params_bytes)), locate=False))
                return None

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
        if not self.broken((source, ("params",))):
            check_params(params=all_params, inputs=eff.inputs, outputs=eff.outputs, matrix=spec.matrix,
                         joins=joins_of(spec), strict=eff.strict, ctx=None, emit=emit, compat=self.compat,
                         literal_paths=literal_paths)
        for ref in param_template_refs(all_params):
            emit("error", ("params",) if ref[0] not in cli else (f"--param {ref[0]}",),
                 f"`{{{{ {ref[1].text} }}}}` is only available to ops inside a DAG")
        root_name = spec.name if isinstance(spec.name, str) and not is_template(spec.name) else None
        if root_name is None and isinstance(eff.spec.name, str) and not is_template(eff.spec.name):
            root_name = eff.spec.name
        if root_name is None:
            stem = re.sub(r"[^-a-zA-Z0-9_]+", "-", Path(source).stem).strip("-")
            root_name = stem or "pipeline"
        component = self._component(eff, Inherit(), nested=False)
        if component is None:
            return None
        root = self._op(spec, eff, component, name=root_name, params=all_params, upstream=[], event_edges={},
                        inherit=Inherit(), root=True)
        self.op_where[id(root)] = (source, ())
        for op, field, error in check_ops(root, self.limits.max_ops):
            src, path = self.op_where.get(id(op), (source, ()))
            self.emit("error", (src, (*path, field) if field else path), str(error))
        return root

    # -- shared per-op pieces ----------------------------------------------------------------------

    def _component(self, eff: Effective, inherit: Inherit, *, nested: bool) -> c.Component | None:
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
            if self.dag_depth >= self.limits.max_dag_depth:
                where = self.cmp.where.get(id(run), (eff.source, ()))
                self.emit("error", where, str(over("DAGs are nested", self.dag_depth + 1, "levels deep",
                                                   setting="max_dag_depth", limit=self.limits.max_dag_depth)))
                return None
            self.dag_depth += 1
            try:
                dag = self._dag(eff, run, inherit=inherit, nested=nested)
            finally:
                self.dag_depth -= 1
        elif run is not None:
            body = msgspec.to_builtins(run)
            body.pop("kind", None)
            for io in eff.outputs:
                if isinstance(io.value, str) and binds_inner_output(io.value):
                    self.emit("error", (eff.source, ("outputs",)),
                              f"output `{io.name}`: `{io.value}` binds an inner op's output, which only a DAG "
                              f"component (`run.kind: dag`) can do; this is a `{eff.kind}`")
        name = spec.name if isinstance(spec.name, str) else None
        comp = c.Component(
            kind=eff.kind or "job", name=name, inputs=eff.inputs, outputs=eff.outputs, run=body, dag=dag,
            strict_params=eff.strict, namespace=spec.namespace, queue=spec.queue or inherit.queue,
            tags=list(spec.tags or []), source=eff.label,
        )
        self._components[key] = comp
        return comp

    def _op(self, op: m.PolyaxonfileSpec, eff: Effective, component: c.Component, *, name: str,
            params: dict[str, m.Param], upstream: list[str], event_edges: dict[str, list[str]], inherit: Inherit,
            root: bool) -> c.Op:
        spec = eff.spec
        for field, value in (("termination", spec.termination), ("cache", spec.cache)):
            if isinstance(value, str):
                self.emit("warning", self.cmp.at(op, field), f"a template for the whole `{field}` section is not "
                                                             "supported by flowd yet: it is ignored (template its "
                                                             "fields instead)")
        term = deep_merge(inherit.termination, builtins_of(spec.termination))
        cache = deep_merge(inherit.cache, builtins_of(spec.cache))
        approved: Any = spec.is_approved if spec.is_approved is not None else True
        compiled = c.Op(
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
            matrix=self._matrix(op, eff),
            termination=_termination(term),
            cache=cache if isinstance(cache, dict) else None,
            schedule=builtins_of(op.schedule) if root else None,
            events=builtins_of(op.events) if isinstance(op.events, list) else [],
            hooks=self._hooks(op, spec, eff),
            joins=builtins_of(op.joins) if isinstance(op.joins, list) else [],
        )
        self.op_where[id(compiled)] = self.cmp.at(op)
        return compiled

    def _hooks(self, op: m.PolyaxonfileSpec, spec: m.PolyaxonfileSpec, eff: Effective) -> list[c.Hook]:
        """Each hook's ``hubRef`` compiled into an operation with the hook's params (POLYFLOW §8.3),
        like an iterative matrix's tuner. A hubRef flowd cannot resolve was reported by
        ``_check_hook_refs``; its hook keeps the message and fails when it fires."""
        hooks = spec.hooks if isinstance(spec.hooks, list) else []
        if not hooks:
            return []
        if self.in_hook:
            self.emit("warning", self.cmp.at(op, "hooks"), "hooks of a hook's component are not run (a hook run "
                                                          "fires no hooks of its own)")
            return []
        out = []
        for hook in hooks:
            params = cast("dict[str, m.Param]", dict(hook.params or {}))
            base = c.Hook(hub_ref=hook.hub_ref, trigger=hook.trigger, conditions=hook.conditions,
                          connection=hook.connection, disable_defaults=hook.disable_defaults)
            if is_template(hook.hub_ref):
                out.append(msgspec.structs.replace(base, error=f"hook hubRef {hook.hub_ref!r} is a template: "
                                                              "flowd resolves hook components at submission"))
                continue
            try:
                locate_hub(hook.hub_ref, self.cmp.hub)
            except RefError as exc:
                out.append(msgspec.structs.replace(base, error=f"hook: {exc}"))
                continue
            h_spec = m.PolyaxonfileSpec(hub_ref=hook.hub_ref, params=params or None,
                                        presets=hook.presets, queue=hook.queue, namespace=hook.namespace)
            self.cmp.where[id(h_spec)] = self.cmp.at(hook)
            before = len(self.findings)
            self.in_hook = True
            try:
                h_eff = self.cmp.effective(h_spec, source=eff.source, base_dir=eff.base_dir, components=None)
                component = (self._component(h_eff, Inherit(), nested=False)
                             if h_eff is not None and h_eff.run is not None else None)
                h_op = (self._op(h_spec, h_eff, component, name=f"{hook.hub_ref}", params=params, upstream=[],
                                 event_edges={}, inherit=Inherit(), root=True)
                        if h_eff is not None and component is not None else None)
            finally:
                self.in_hook = False
            errors = [f for f in self.findings[before:] if f.severity == "error"]
            if errors or h_op is None:
                out.append(msgspec.structs.replace(base, error="hook: " + "; ".join(f.message for f in errors)
                                                   if errors else f"hook: {hook.hub_ref!r} could not be compiled"))
                continue
            assert h_eff is not None  # h_op is None otherwise
            self._check_hook_params(hook, params, h_eff)
            out.append(msgspec.structs.replace(base, op=h_op))
        return out

    def _check_hook_params(self, hook: m.Hook, params: dict[str, m.Param], h_eff: Effective) -> None:
        """The hook's params typed against its component like an op's (§3.3); an input named
        like a default hook param (``status``, ``outputs``...) gets its value from the finished
        run, unless ``disableDefaults`` is literally true."""
        where = self.cmp.at(hook)
        defaults = () if hook.disable_defaults is True else c.HOOK_DEFAULT_PARAMS
        inputs = [msgspec.structs.replace(io, is_optional=True) if io.name in defaults else io for io in h_eff.inputs]

        def emit(sev: str, path: tuple[Any, ...], msg: str) -> None:
            self.emit(sev, (where[0], (*where[1], *path)), f"hook `{hook.hub_ref}`: {msg}")

        check_params(params=params, inputs=inputs, outputs=h_eff.outputs, matrix=None, joins=None,
                     strict=h_eff.strict, ctx=None, emit=emit, compat=self.compat)

    def _matrix(self, op: m.PolyaxonfileSpec, eff: Effective) -> c.Matrix | None:
        if op.matrix is None:
            return None
        matrix = compile_matrix(op.matrix)
        tuner = getattr(op.matrix, "tuner", None)
        if matrix.kind != "iterative" or not isinstance(tuner, m.Tuner):
            return matrix
        # the tuner is an operation over `tuner.hubRef`, composed like any other reference
        spec = m.PolyaxonfileSpec(hub_ref=tuner.hub_ref, params=cast("dict[str, m.Param] | None", tuner.params), presets=tuner.presets,
                                  queue=tuner.queue, namespace=tuner.namespace)
        self.cmp.where[id(spec)] = self.cmp.at(tuner)
        before = len(self.findings)
        t_eff = self.cmp.effective(spec, source=eff.source, base_dir=eff.base_dir, components=None)
        component = self._component(t_eff, Inherit(), nested=False) if t_eff is not None and t_eff.run is not None else None
        if any(f.severity == "error" for f in self.findings[before:]) or component is None:
            # Polyaxon resolves the tuner only when the matrix runs: a tuner flowd cannot resolve
            # is a warning now, and the matrix fails with this message when it starts
            for f in self.findings[before:]:
                if f.severity == "error":
                    f.severity = "warning"
                    f.message = f"the iterative matrix cannot run its tuner: {f.message}"
            return matrix
        assert t_eff is not None  # component is None otherwise
        op_name = op.name if isinstance(op.name, str) else "matrix"
        tuner_op = self._op(spec, t_eff, component, name=f"{op_name}-tuner", params=dict(tuner.params or {}),
                            upstream=[], event_edges={}, inherit=Inherit(), root=False)
        return msgspec.structs.replace(matrix, tuner=tuner_op)


def compile_text(text: str, *, source: str = "<string>", base_dir: str | os.PathLike[str] | None = ".",
                 params: dict[str, Any] | None = None, hub: str | None = None, reference_compat: bool = False,
                 url_timeout: float = 10.0, url_fetcher: Any = None,
                 limits: Limits | None = None, presets: str | None = None) -> CompileResult:
    """Validate and compile one Polyaxonfile given as text. Never raises for bad input (a
    ``url_fetcher`` may raise on purpose: the daemon's stops at the first document not fetched yet).
    ``url_fetcher(url) -> refs.Located`` reads urlRefs instead of :func:`refs.fetch_url`. ``limits`` (default:
    :class:`Limits` defaults) bound what the text may make flowd build; going over one is an error
    naming the setting (docs/limits.md). ``presets``: the folder of named presets (default
    ``$FLOWD_PRESETS``)."""
    comp = _Compiler(hub=hub if hub is not None else default_hub(), reference_compat=reference_compat,
                     url_timeout=url_timeout, url_fetcher=url_fetcher, limits=limits or Limits(),
                     presets=presets if presets is not None else default_presets())
    try:
        op = comp.compile_root(text, source, None if base_dir is None else str(base_dir), params)
    except _OverLimit as exc:
        comp.findings.append(Finding("error", exc.where[0], exc.where[1], str(exc.error)))
        op = None
    except RecursionError:  # absurdly deep nesting (over ~100 nested components): an error, not a crash
        return CompileResult(op=None, errors=[Diagnostic(
            path=source, location="", message="the document is nested too deeply to be checked")])
    diags = [f.to_diagnostic(comp.sources) for f in comp.findings]
    diags.sort(key=lambda d: (d.path != source, d.path, d.line or 0, d.column or 0))
    errors = [d for d in diags if d.severity == "error"]
    warnings = [d for d in diags if d.severity == "warning"]
    return CompileResult(op=None if errors else op, errors=errors, warnings=warnings)


def compile_path(path: str | os.PathLike[str], *, params: dict[str, Any] | None = None, hub: str | None = None,
                 reference_compat: bool = False, url_timeout: float = 10.0, limits: Limits | None = None,
                 presets: str | None = None) -> CompileResult:
    """Validate and compile the Polyaxonfile at ``path`` (its ``pathRef``s are relative to it)."""
    p = Path(path)
    limits = limits or Limits()
    try:
        size = p.stat().st_size
        if size > limits.max_spec_bytes and p.is_file():  # refused before it is read
            return CompileResult(op=None, errors=[Diagnostic(path=str(path), location="", message=str(over(
                "the file is", size, "bytes", setting="max_spec_bytes", limit=limits.max_spec_bytes)))])
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
                        reference_compat=reference_compat, url_timeout=url_timeout, limits=limits, presets=presets)
