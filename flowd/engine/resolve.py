"""Run-time resolution of an op's params and runtime (POLYFLOW §3.7), for the engine.

Given the op spec, the finished upstream nodes and the enclosing pipeline's inputs, produce the
literal params (refs followed, templates rendered, IO types coerced) and the rendered runtime
body. Pure: it reads engine state and returns values or raises :class:`ResolveError`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import msgspec

from flowd.engine import templates
from flowd.engine.state import Node
from flowd.spec.compiled import IOSpec, Op

try:  # the spec layer owns IO typing; it is optional only while the two are developed apart
    from flowd.spec.types import coerce as _coerce
except ImportError:  # pragma: no cover
    def _coerce(io: IOSpec, value: Any) -> Any:
        return value


class ResolveError(ValueError):
    """An op cannot be compiled at run time: the message names the param and the cause."""


# globals of another run that a ref (``globals.<key>``) or template may read
def run_globals(run_id: str, node: Node) -> dict[str, Any]:
    duration = None
    if node.finished_at is not None:
        duration = node.finished_at - (node.started_at if node.started_at is not None else node.created_at)
    return {
        "uuid": f"{run_id}/{node.path}" if node.path else run_id,
        "run_id": run_id,
        "name": node.name,
        "status": node.status,
        "iteration": (node.iteration if node.iteration is not None else node.index) if node.suggestion is not None else None,
        "bracket_iteration": node.bracket if node.suggestion is not None else None,
        "original_uuid": f"{run_id}/{node.origin}" if node.origin else None,
        "schedule_at": node.schedule_at,
        "created_at": node.created_at,
        "started_at": node.started_at,
        "finished_at": node.finished_at,
        "duration": duration,
    }


def _has_templates(op: Op) -> bool:
    blob = msgspec.json.encode([op.params, op.component.run, op.conditions, op.trigger, op.is_approved])
    return b"{{" in blob or b"{%" in blob


# id(op) -> (op, has templates); ops live as long as their run, the op is kept to pin the id
_template_flags: dict[int, tuple[Op, bool]] = {}


def has_templates(op: Op) -> bool:
    entry = _template_flags.get(id(op))
    if entry is None or entry[0] is not op:
        if len(_template_flags) > 200_000:
            _template_flags.clear()
        entry = (op, _has_templates(op))
        _template_flags[id(op)] = entry
    return entry[1]


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


class Resolver:
    """Resolves one op of one run. ``sibling(name)`` returns the node of an op of the same DAG;
    ``dag`` is the enclosing pipeline node (its params are the DAG's inputs)."""

    def __init__(self, run_id: str, node: Node, op: Op, dag: Node | None, sibling: Callable[[str], Node | None]):
        self.run_id = run_id
        self.node = node
        self.op = op
        self.dag = dag
        self.sibling = sibling
        self._ops_ctx: dict[str, Any] | None = None

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
            sections = {
                "outputs": target.outputs,
                "inputs": target.params,
                "globals": run_globals(self.run_id, target),
            }
        elif ref == "dag":
            if self.dag is None:
                raise ResolveError(f"param {name!r}: `ref: dag` is only valid inside a DAG")
            what = "the DAG"
            sections = {"inputs": self.dag.params, "globals": run_globals(self.run_id, self.dag)}
        elif ref.startswith("runs."):
            raise ResolveError(
                f"param {name!r}: references to other runs ({ref}) are resolved by the daemon "
                "(flowd serve), not by this runtime"
            )
        else:
            raise ResolveError(f"param {name!r}: unsupported ref {ref!r}")
        if section not in sections:
            raise ResolveError(f"param {name!r}: {ref} has no {section!r} information")
        values = sections[section]
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
                    ctx[up] = {
                        "outputs": target.outputs or {},
                        "inputs": target.params or {},
                        "status": target.status,
                        "globals": run_globals(self.run_id, target),
                    }
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
            "globals": run_globals(self.run_id, self.node),
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
        resolved: dict[str, Any] = {}
        templated: list[str] = []
        for name, param in op.params.items():
            if param.ref:
                resolved[name] = self._follow(name, param.ref, param.value)
            elif templates.is_template(param.value):
                templated.append(name)
            else:
                resolved[name] = param.value
        if templated:
            for name in templated:
                try:
                    resolved[name] = templates.render_value(op.params[name].value, self.context(resolved))
                except templates.TemplateError as exc:
                    raise ResolveError(f"param {name!r}: {exc}") from None
        if partial:
            return resolved
        for io in op.component.inputs:
            value = resolved.get(io.name)
            if value is None:
                if io.is_optional or io.delay_validation or io.value is not None:
                    resolved[io.name] = io.value
                else:
                    raise ResolveError(f"input {io.name!r} is required and no value was resolved")
            if io.type is not None and resolved[io.name] is not None:
                resolved[io.name] = self._coerce(io, resolved[io.name], "input")
        for io in op.component.outputs:
            if io.name in resolved and resolved[io.name] is not None and io.type is not None:
                resolved[io.name] = self._coerce(io, resolved[io.name], "output")
        return resolved

    @staticmethod
    def _coerce(io: IOSpec, value: Any, what: str) -> Any:
        try:
            return _coerce(io, value)
        except ValueError as exc:
            raise ResolveError(f"{what} {io.name!r}: {exc}") from None

    def outputs(self, reported: dict[str, Any] | None) -> dict[str, Any]:
        """Reported outputs merged with declared defaults, declared types coerced."""
        out = dict(reported or {})
        for io in self.op.component.outputs:
            if io.name not in out and io.value is not None:
                out[io.name] = io.value
            if io.type is not None and out.get(io.name) is not None:
                out[io.name] = self._coerce(io, out[io.name], "output")
        return out

    # --- conditions, trigger, runtime -------------------------------------------------------

    def condition(self, params: dict[str, Any]) -> bool:
        try:
            return templates.evaluate_condition(self.op.conditions or "true", self.context(params))
        except templates.TemplateError as exc:
            raise ResolveError(f"conditions: {exc}") from None

    def render(self, value: Any, params: dict[str, Any], what: str) -> Any:
        try:
            return templates.render_deep(value, self.context(params))
        except templates.TemplateError as exc:
            raise ResolveError(f"{what}: {exc}") from None

    def env(self, params: dict[str, Any]) -> dict[str, str]:
        env: dict[str, str] = {}
        ios = {io.name: io for io in self.op.component.inputs}
        ios.update({io.name: io for io in self.op.component.outputs})
        for name, value in params.items():
            param = self.op.params.get(name)
            io = ios.get(name)
            target = (param.to_env if param is not None else None) or (io.to_env if io is not None else None)
            if target:
                env[target] = as_str(value, io)
        return env
