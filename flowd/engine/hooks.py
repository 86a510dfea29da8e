"""Hooks (POLYFLOW §8.3): what a finished op's hooks ask for, decided by pure functions.

When an op of a run (or the run itself) reaches a terminal status, each of its hooks is
considered: the trigger must match (unset and ``done`` match every terminal status), then
``conditions`` render with the op's full context (params, outputs, globals and the default
hook params below) through the strict truth-word parser. A hook that passes becomes a
:class:`~flowd.engine.messages.StartHook` command carrying the hook's operation, with the
default context params describing the finished run unless ``disableDefaults`` is true.

A hook run is a separate run: the engine asks for it and never waits for it; nothing here
touches the source's status, counters or concurrency. Its run id is derived (a UUID v5 of
source run, op path, attempt, epoch and hook index), so a replay, a restore or a redelivery
asks for the very same run, and the adapter's once-per-run-id submission makes it run once.

No I/O, no clock: the time comes from the event being handled.
"""

from __future__ import annotations

from typing import Any

import msgspec

from flowd.engine import status as S
from flowd.engine.messages import HookOf, StartHook
from flowd.engine.resolve import Resolver, iso, op_uuid, uuid5
from flowd.engine.state import HookRecord, Node, RunState
from flowd.engine.templates import TemplateError, evaluate_condition, is_template, render_text, truth
from flowd.spec.compiled import HOOK_DEFAULT_PARAMS, Hook, Op, ParamSpec

__all__ = ["DEFAULT_PARAMS", "default_params", "fire", "hook_run_id"]

# the context-only params Polyaxon gives a hook run, describing the run that ended
DEFAULT_PARAMS = HOOK_DEFAULT_PARAMS


def hook_run_id(run_id: str, path: str, attempt: int, epoch: int, index: int) -> str:
    """The run id of a hook run: the same for the same finished attempt, on every replica."""
    return uuid5(f"flowd:hook:{run_id}/{path}#{attempt}@{epoch}:{index}")


def default_params(run: RunState, node: Node, spec: Op) -> dict[str, Any]:
    """``name``, ``uuid``, ``kind``, ``status``, ``runtime``, ``wait_time``, ``duration``,
    ``inputs``, ``outputs`` and ``condition`` of the finished run at ``node``."""
    started = node.started_at
    finished = node.finished_at
    inputs = {io.name: (node.params or {}).get(io.name) for io in spec.component.inputs}
    return {
        "name": node.name,
        "uuid": op_uuid(run.run_id, node.path),
        "kind": node.kind,
        "status": node.status,
        "runtime": spec.component.kind,
        "wait_time": None if started is None else max(0.0, started - node.created_at),
        "duration": None if finished is None else max(0.0, finished - (started if started is not None else node.created_at)),
        "inputs": inputs,
        "outputs": dict(node.outputs or {}),
        # the run's last status condition (Polyaxon's V1StatusCondition, times as ISO-8601)
        "condition": {"type": node.status, "status": True, "reason": node.reason, "message": node.message,
                      "last_update_time": iso(finished), "last_transition_time": iso(finished)},
    }


def _matches(trigger: str | None, status: str) -> bool:
    return trigger is None or trigger == "done" or trigger == status


def _context(resolver: Resolver, node: Node, defaults: dict[str, Any]) -> dict[str, Any]:
    ctx = resolver.context(dict(node.params or {}))
    for name, value in defaults.items():
        ctx.setdefault(name, value)
    return ctx


def fire(run: RunState, node: Node, spec: Op, resolver: Resolver, now: float) -> list[StartHook]:
    """The hooks of ``node``, which just reached a terminal status, decided in declaration order
    (and recorded on ``run.hooks`` for the views)."""
    out: list[StartHook] = []
    ctx: dict[str, Any] | None = None
    defaults = default_params(run, node, spec)
    for index, hook in enumerate(spec.hooks):
        if not _matches(hook.trigger, node.status):
            continue
        source = HookOf(run_id=run.run_id, path=node.path, attempt=node.attempt, index=index, hub_ref=hook.hub_ref,
                        status=node.status, epoch=run.epoch)
        hook_id = hook_run_id(run.run_id, node.path, node.attempt, run.epoch, index)
        status, message, pipeline = S.CREATED, hook.error, None
        if hook.op is None:
            status = S.FAILED
        else:
            try:
                if ctx is None:
                    ctx = _context(resolver, node, defaults)
                if hook.conditions is not None and not evaluate_condition(hook.conditions, ctx):
                    status, message = S.SKIPPED, f"conditions {hook.conditions!r} evaluated to false"
                else:
                    pipeline = _hook_op(hook, hook.op, defaults, ctx)
            except TemplateError as exc:
                status, message = S.FAILED, f"hook {index} ({hook.hub_ref}) of {node.path or 'the pipeline'}: {exc}"
        run.hooks.append(HookRecord(path=node.path, attempt=node.attempt, index=index, hub_ref=hook.hub_ref,
                                    trigger_status=node.status, run_id=hook_id, status=status, message=message))
        out.append(StartHook(source=source, hook_run_id=hook_id, status=status, time=now,
                             key=f"{run.run_id}/{node.path}#{node.attempt}:hook-{index}"
                                 f"{'@' + str(run.epoch) if run.epoch else ''}",
                             pipeline=pipeline, seed=run.seed, context=dict(run.context), message=message))
    return out


def _hook_op(hook: Hook, op: Op, defaults: dict[str, Any], ctx: dict[str, Any]) -> Op:
    """The hook's operation with the default params (unless ``disableDefaults``) under the
    hook's own params, and ``connection`` added to the run's connections."""
    disable = hook.disable_defaults
    if isinstance(disable, str):
        disable = truth(render_text(disable, ctx) if is_template(disable) else disable, what="disableDefaults")
    params = dict(op.params)
    if not disable:
        declared = {io.name for io in op.component.inputs} | {io.name for io in op.component.outputs}
        for name, value in defaults.items():
            if name not in params:
                params[name] = ParamSpec(value=value, context_only=None if name in declared else True)
    component = op.component
    if hook.connection:
        run = dict(component.run)
        connections = list(run.get("connections") or [])
        if hook.connection not in connections:
            connections.append(hook.connection)
        run["connections"] = connections
        component = msgspec.structs.replace(component, run=run)
    return msgspec.structs.replace(op, params=params, component=component)
