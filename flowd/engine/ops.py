"""The lifecycle of one op node from its trigger to its attempt: ready (the trigger fired),
prepared (params resolved, conditions evaluated, approval gate), queued for a slot of its
pipeline, admitted, dispatched as a job attempt (``StartOp``), retried after a failure; and the
trigger decisions downstream of a finished op (POLYFLOW §5.4, §5.10).

A pipeline node (DAG, matrix, schedule) goes through the same steps until it is dispatched;
starting it is :class:`flowd.engine.pipelines.Pipelines`' work, handed in as ``start_pipeline``
(the one call that goes back up)."""

from __future__ import annotations

import hashlib
import random
import zlib
from collections.abc import Callable
from typing import Any

import msgspec

from flowd.engine import fields
from flowd.engine import status as S
from flowd.engine.index import Index
from flowd.engine.messages import StartOp
from flowd.engine.resolve import ResolveError
from flowd.engine.state import PIPELINE_KINDS, Node, RunState
from flowd.engine.step import Step
from flowd.engine.templates import TemplateError, is_template, render_text, truth
from flowd.engine.to_init import init_steps, with_init_steps
from flowd.engine.triggers import START, UPSTREAM_FAILED, decide
from flowd.spec.compiled import TRIGGER_POLICIES, Component, Op, Termination


def _no_pipelines(run: RunState, node: Node) -> None:
    raise AssertionError("Ops.start_pipeline is not wired")


class Ops:
    def __init__(self, step: Step) -> None:
        self.step = step
        # set by the engine once the pipelines exist: starting a dispatched pipeline node
        self.start_pipeline: Callable[[RunState, Node], None] = _no_pipelines

    def ready(self, run: RunState, node: Node) -> None:
        """The trigger fired: prepare the op now, or once it is approved."""
        if node.status != S.CREATED:
            return
        node.ready = True
        if node.approved or is_template(self.step.index[run.run_id].specs[node.path].is_approved):
            # a templated isApproved is decided by prepare, with the op's params
            self.prepare(run, node)
        elif node.reason != "PendingApproval":
            node.reason = "PendingApproval"
            node.message = "waiting for approval"
            self.step.emit_status(run, node)

    def prepare(self, run: RunState, node: Node) -> None:
        """Compile the op: resolve params, evaluate conditions, then queue it for admission."""
        if node.status != S.CREATED:
            return
        step = self.step
        index = step.index[run.run_id]
        # a matrix child's spec is its matrix's template (``Index.spec``); any other op's is entered
        spec = index.spec(node) if node.suggestion is not None else index.specs[node.path]
        try:
            literal = fields.literal_params(run, index, node, spec) if node.kind != "matrix" else None
        except ResolveError as exc:
            step.finish(run, node, S.FAILED, reason="CompilationFailed", message=str(exc))
            return
        if literal is not None:
            # nothing to resolve, no condition, no templated approval: no Resolver
            if literal is not node.suggestion and node.suggestion is not None and _same(literal, node.suggestion):
                literal = node.suggestion
            node.params = literal
            if node.joined is not None:  # a store costs more than a look (four of each per op)
                node.joined = None
            hold = False
        else:
            held = self._resolve(run, index, node, spec)
            if held is None:
                return
            hold = held
        node.status = S.COMPILED
        if hold and not node.approved:
            node.reason = "PendingApproval"
            node.message = "waiting for approval"
            step.emit_status(run, node)
            return
        if node.message is not None:
            node.message = None
        if node.reason is not None:
            node.reason = None
        step.emit_status(run, node)
        self.enqueue(run, node)

    def _resolve(self, run: RunState, index: Index, node: Node, spec: Op) -> bool | None:
        """Resolve the params with a Resolver, evaluate the conditions and a templated approval:
        whether the approval holds the op, or None when the op ended (skipped or failed)."""
        step = self.step
        resolver = fields.resolver(run, index, node)
        resolver.join_source = step.joins
        try:
            params = resolver.params(partial=node.kind == "matrix")
            if node.suggestion is not None and _same(params, node.suggestion):
                params = node.suggestion  # a matrix child's params are mostly its suggestion: keep one dict
            node.params = params
            node.joined = resolver.joined or None
            if spec.conditions is not None and not resolver.condition(params):
                step.finish(run, node, S.SKIPPED, reason="ConditionsCheckFailed",
                            message=f"conditions {spec.conditions!r} evaluated to false")
                return None
            approved = spec.is_approved
            if isinstance(approved, str) and is_template(approved):
                try:
                    hold = not truth(resolver.render(approved, params, "isApproved"), what="isApproved")
                except TemplateError as exc:
                    raise ResolveError(f"isApproved of op {node.path!r}: {exc}") from None
            else:
                hold = False
        except (ResolveError, TemplateError) as exc:
            step.finish(run, node, S.FAILED, reason="CompilationFailed", message=str(exc))
            return None
        return hold

    def approve(self, run: RunState, node: Node) -> None:
        node.approved = True
        if node.status == S.CREATED and node.ready:
            self.prepare(run, node)
        elif node.status == S.COMPILED and node.reason == "PendingApproval":
            node.reason = None
            self.enqueue(run, node)

    def enqueue(self, run: RunState, node: Node) -> None:
        if node.parent is None:
            self.dispatch(run, node)
            return
        parent = run.nodes[node.parent]
        waiting = parent.waiting
        assert waiting is not None
        if not waiting and not parent.stopping and parent.status not in S.DONE \
                and not self.step.index[run.run_id].limits.get(parent.path):
            # nothing queued before it and no limit: admitted at once (what admit would do)
            parent.active += 1
            node.holds_slot = True
            self.dispatch(run, node)
            return
        waiting.append(node.path)
        self.admit(run, parent)

    def admit(self, run: RunState, parent: Node) -> None:
        waiting = parent.waiting
        if not waiting or parent.stopping or parent.status in S.DONE:
            return
        limit = self.step.index[run.run_id].limits.get(parent.path)
        while parent.waiting_head < len(waiting) and (not limit or parent.active < limit):
            path = waiting[parent.waiting_head]
            parent.waiting_head += 1
            child = run.nodes[path]
            if child.status != S.COMPILED:
                continue
            parent.active += 1
            child.holds_slot = True
            self.dispatch(run, child)
        if parent.waiting_head == len(waiting) and waiting:
            waiting.clear()
            parent.waiting_head = 0

    def dispatch(self, run: RunState, node: Node) -> None:
        if node.kind in PIPELINE_KINDS:
            self.start_pipeline(run, node)
        else:
            self.dispatch_job(run, node)

    def dispatch_job(self, run: RunState, node: Node) -> None:
        step = self.step
        index = step.index[run.run_id]
        spec = index.spec(node) if node.suggestion is not None else index.specs[node.path]
        params = node.params or {}
        flags = fields.flags(run, index, node)
        try:
            body = spec.component.run
            resolver = None
            if fields.renders(run, index, node, spec, flags):
                resolver = fields.resolver(run, index, node)
                body = resolver.render(body, params, "run")
            # no toEnv anywhere in the pipeline: no env to build (and no Resolver to build it)
            env = (resolver or fields.resolver(run, index, node)).env(params) if flags.to_env else {}
            term = fields.termination(run, index, node, spec)
            if flags.to_init:
                # toInit params as init steps (a param that cannot be one fails the op here)
                body = with_init_steps(body, init_steps(spec, params))
        except ResolveError as exc:
            step.finish(run, node, S.FAILED, reason="CompilationFailed", message=str(exc))
            return
        node.attempt += 1
        node.emitted = node.repeats = 0  # a new attempt: a new key space
        node.status = S.QUEUED
        if node.message is not None:
            node.message = None
        if node.reason is not None:
            node.reason = None
        step.emit_status(run, node)
        step.out.append(start_op(run, node, spec, params, body, env, term))
        if term.timeout:
            step.set_timer(run, f"timeout:{node.path}#{node.attempt}", step.now + term.timeout)

    def attempt_failed(self, run: RunState, node: Node, message: str | None, reason: str, outputs: Any) -> None:
        step = self.step
        index = step.index[run.run_id]
        spec = index.spec(node)
        try:
            term = fields.termination(run, index, node, spec)
        except ResolveError as exc:
            step.finish(run, node, S.FAILED, message=str(exc), reason="CompilationFailed", outputs=outputs)
            return
        parent = run.nodes.get(node.parent) if node.parent is not None else None
        if node.attempt <= term.max_retries and not (parent is not None and parent.stopping):
            node.status = S.RETRYING
            node.message = message
            node.reason = reason
            step.emit_status(run, node)
            if term.backoff is not None:
                delay = backoff(run, node, term.backoff)
                step.set_timer(run, f"retry:{node.path}#{node.attempt}", step.now + delay)
            else:
                self.dispatch_job(run, node)
            return
        step.finish(run, node, S.FAILED, message=message, reason=reason, outputs=outputs)

    def upstream_done(self, run: RunState, index: Index, down: Node, up: Node) -> None:
        if down.status != S.CREATED:
            return
        spec = index.specs[down.path]
        down.n_done += 1
        if up.status == S.SUCCEEDED or (up.status == S.SKIPPED and not spec.skip_on_upstream_skip):
            down.n_ok += 1
        elif up.status in (S.FAILED, S.UPSTREAM_FAILED):
            down.n_bad += 1
        if down.ready:
            return  # already triggered (one_* policies, event edges), maybe waiting for approval
        if up.status == S.SKIPPED and spec.skip_on_upstream_skip:
            self.step.finish(run, down, S.SKIPPED, reason="UpstreamSkipped",
                             message=f"upstream op {up.name!r} was skipped")
            return
        policy: str | None = spec.trigger
        if policy not in TRIGGER_POLICIES:
            policy = self.render_trigger(run, down, spec.trigger)
            if policy is None:
                return
        decision = decide(policy, down.n_up, down.n_done, down.n_ok, down.n_bad)
        if decision == START:
            self.ready(run, down)
        elif decision == UPSTREAM_FAILED:
            self.step.finish(run, down, S.UPSTREAM_FAILED, reason="UpstreamFailed",
                             message=f"trigger {policy} cannot be satisfied")

    def render_trigger(self, run: RunState, node: Node, policy: str) -> str | None:
        step = self.step
        resolver = fields.resolver(run, step.index[run.run_id], node)
        try:
            rendered = render_text(policy, resolver.context(resolver.known_params())).strip() if is_template(policy) else policy
        except TemplateError as exc:
            step.finish(run, node, S.FAILED, reason="CompilationFailed", message=f"trigger of op {node.path!r}: {exc}")
            return None
        if rendered not in TRIGGER_POLICIES:
            step.finish(run, node, S.FAILED, reason="CompilationFailed",
                        message=f"trigger {rendered!r} is not one of {', '.join(TRIGGER_POLICIES)}")
            return None
        return rendered

    def fire_event_edges(self, run: RunState, node: Node) -> None:
        for down_path, statuses in self.step.index[run.run_id].event_down.get(node.path, ()):
            if node.status in statuses:
                down = run.nodes[down_path]
                if down.status == S.CREATED and not down.ready:
                    self.ready(run, down)


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """The same keys in the same order, bound to the very same values (not merely equal ones:
    ``1 == 1.0 == True``), so either dict encodes and reads exactly as the other."""
    return len(a) == len(b) and all(ka is kb or ka == kb for ka, kb in zip(a, b, strict=True)) and \
        all(a[k] is b[k] for k in a)


def backoff(run: RunState, node: Node, backoff: Any) -> float:
    delay: float = min(backoff.max, backoff.base * backoff.factor ** (node.attempt - 1))
    if backoff.jitter:
        rng = random.Random(run.seed ^ zlib.crc32(f"{node.path}#{node.attempt}".encode()))
        delay += delay * backoff.jitter * rng.random()
    return delay


def start_op(run: RunState, node: Node, spec: Op, params: dict[str, Any], body: Any, env: dict[str, str],
             term: Termination) -> StartOp:
    """The command that starts ``node``'s current attempt (at dispatch, and derived again after
    a restore: :mod:`flowd.engine.run_parts`)."""
    cache_key, cache_ttl = (None, None)
    if run.context.get("cache") != "off" and run.pipeline.schedule is None:  # each tick is meant to run
        cache_key, cache_ttl = cache_of(spec, node, params, body, env)
    component = spec.component
    # positional: run_id, path, attempt, key, kind, params, run, env, termination, namespace,
    # outputs, cache_key, cache_ttl
    return StartOp(
        run.run_id, node.path, node.attempt, f"{run.run_id}/{node.path}#{node.attempt}", node.kind, params, body, env,
        term, component.namespace, _component_entry(component, body)[5] if component.outputs else [],
        cache_key, cache_ttl,
    )


def cache_of(spec: Op, node: Node, params: dict[str, Any], body: dict[str, Any],
             env: dict[str, str]) -> tuple[str | None, float | None]:
    """The cache key and ttl of a job attempt (POLYFLOW §5.10), or (None, None). On by default
    inside pipelines; a single-op file caches only with an explicit ``cache``; services never.
    The key covers the component's content (its rendered runtime, declared IO, kind) and the
    resolved inputs, restricted to ``cache.io`` when given: the SHA-256 of the JSON array
    ``["flowd-cache-1", kind, inputs, outputs, body, env, sorted params]``."""
    cache = spec.cache
    if node.kind == "service" or (node.parent is None and not cache):
        return None, None
    if cache:
        if cache.get("disable") is True:
            return None, None
        io = cache.get("io")
        keyed = sorted(params.items()) if not isinstance(io, list) else \
            sorted((k, v) for k, v in params.items() if k in io)
        ttl = cache.get("ttl")
    else:  # no cache section (most ops): every param, no ttl
        keyed = sorted(params.items()) if params else []
        ttl = None
    entry = _component_entry(spec.component, body)
    if entry[2] is None:
        _hash_head(entry)
    if env:
        digest = entry[2].copy()
        # the array's tail: its first five items are hashed already, so "[env,params]" without its "["
        digest.update(msgspec.json.encode([env, keyed])[1:])
        key = digest.hexdigest()
    elif keyed:
        digest = entry[4].copy()  # "{}," (no env) hashed already: the params and the closing "]"
        digest.update(msgspec.json.encode(keyed))
        digest.update(b"]")
        key = digest.hexdigest()
    else:
        key = entry[3]  # no env, no params: the key is the component's own (a nested DAG's ops)
    return key, float(ttl) if isinstance(ttl, (int, float)) else None


# id(component) -> [component, body, SHA-256 state over the cache key's first five items, the
# key with no env and no params, the state with an empty env hashed too, the names of the
# declared outputs]. A matrix's children and a nested DAG's instances share one component and,
# unrendered, one body: what is the same for all of them is computed once (the hash states on
# the first cache key asked for). Bounded: a 100k-op fan-out has a component per op.
_components: dict[int, list[Any]] = {}


def _component_entry(component: Component, body: Any) -> list[Any]:
    entry = _components.get(id(component))
    if entry is None or entry[0] is not component or entry[1] is not body:
        if len(_components) >= 4096:
            _components.clear()
        # one list of names per component, which every StartOp of it carries (commands are
        # read, never changed)
        entry = [component, body, None, None, None, [io.name for io in component.outputs]]
        _components[id(component)] = entry
    return entry


def _hash_head(entry: list[Any]) -> None:
    component, body = entry[0], entry[1]
    head = msgspec.json.encode(["flowd-cache-1", component.kind, component.inputs, component.outputs, body])
    state = hashlib.sha256(head[:-1] + b",")
    no_env = state.copy()
    no_env.update(b"{},")
    whole = no_env.copy()
    whole.update(b"[]]")
    entry[2:5] = state, whole.hexdigest(), no_env
