"""The engine: a pure state machine over pipeline runs.

``Engine.handle(event) -> commands``. No clock, no I/O, no randomness: times and seeds arrive in
events, so the same events always produce the same state and commands. That is what makes
snapshots, replay and the property tests possible.

The work an event causes is incremental. Each op keeps counters of its finished upstream ops
(``n_done``/``n_ok``/``n_bad``), so a terminal op touches only its direct downstream ops and its
parent pipeline; nothing rescans the graph. Cascades (a failure propagating ``upstream_failed``
down a long chain) run from a work list, not by recursion.

Decisions (see docs/engine.md): trigger policies follow POLYFLOW §5.4's [FLOWD] table; a
pipeline's final status follows §5.13; early stopping per §7 [FLOWD]; a timed-out attempt fails
with reason ``Timeout`` and is not retried; services are stopped when everything else in their
DAG is done and then count as ``succeeded``.
"""

from __future__ import annotations

import gc
import hashlib
import random
import zlib
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from flowd.engine import status as S
from flowd.engine import template_bounds
from flowd.engine.hooks import fire as fire_hooks
from flowd.engine.messages import (
    Approve,
    CancelTimer,
    Command,
    Event,
    OpStatus,
    PipelineDone,
    Resume,
    SetTimer,
    StartOp,
    StatusChanged,
    Stop,
    StopOp,
    Submit,
    TimerFired,
)
from flowd.engine.pipelines import PipelinesMixin, approved_up_front
from flowd.engine.recovery import RecoveryMixin
from flowd.engine.resolve import ResolveError, Resolver, has_templates
from flowd.engine.state import (
    PIPELINE_KINDS,
    SNAPSHOT_VERSION,
    Node,
    RunState,
    Snapshot,
    attempt_key,
    child_path,
    done_key,
    event_key,
)
from flowd.engine.templates import TemplateError, is_template, render_text, truth
from flowd.engine.triggers import START, UPSTREAM_FAILED, decide
from flowd.engine.tuned import TunedMixin
from flowd.engine.view import OpView, RunView
from flowd.spec.compiled import TRIGGER_POLICIES, Op, ParamSpec, Termination
from flowd.spec.expansion import Counter
from flowd.spec.limits import Limits, json_size, over


class _Specs(dict[str, Op]):
    """path -> Op spec of that node, computed on first use (restore stays cheap)."""

    def __init__(self, compute: Callable[[str], Op]) -> None:
        super().__init__()
        self._compute = compute

    def __missing__(self, path: str) -> Op:
        spec = self[path] = self._compute(path)
        return spec


class _Index:
    """What is derived from a run's state and specs and never stored: rebuilt on restore."""

    __slots__ = ("specs", "downstream", "event_down", "limits")

    def __init__(self, compute: Callable[[str], Op]) -> None:
        self.specs = _Specs(compute)
        self.downstream: dict[str, list[str]] = {}
        self.event_down: dict[str, list[tuple[str, list[str]]]] = {}
        self.limits: dict[str, int | None] = {}


class Engine(PipelinesMixin, TunedMixin, RecoveryMixin):
    def __init__(self, limits: Limits | None = None) -> None:
        # what a run may make the engine build (ops, rendered templates, reported outputs):
        # plain config from the adapter, never read from the environment (docs/limits.md)
        self.limits = limits or Limits()
        self.runs: dict[str, RunState] = {}
        self._index: dict[str, _Index] = {}
        # per handle() call
        self._out: list[Command] = []
        self._finished: list[tuple[RunState, Node]] = []
        self._now = 0.0

    # ------------------------------------------------------------------------------ public

    def handle(self, event: Event) -> list[Command]:
        self._out = []
        self._finished = []
        self._now = event.time
        bound = template_bounds.bind(self.limits.max_template_bytes)
        try:
            if isinstance(event, Submit):
                self._submit(event)
            elif isinstance(event, Resume):
                run = self.runs.get(event.run_id)
                if run is not None:
                    self._resume(run)
            else:
                run = self.runs.get(event.run_id)
                if run is not None and not run.done:
                    if isinstance(event, OpStatus):
                        self._op_status(run, event)
                    elif isinstance(event, TimerFired):
                        self._timer(run, event)
                    elif isinstance(event, Stop):
                        self._stop_request(run, event)
                    elif isinstance(event, Approve):
                        self._approve(run, event)
            self._drain()
        except Exception as exc:  # a bug in the engine: contain it to the run it happened in
            run = self.runs.get(event.run_id)
            if run is None:
                raise
            self._quarantine(run, event, exc)
        finally:
            template_bounds.unbind(bound)
        out, self._out = self._out, []
        return out

    def pending_timers(self) -> list[tuple[str, str, float]]:
        """(run id, timer id, due time) of every armed timer, for an adapter to re-arm after a
        restore. A timer that fires late is still handled (with the late time)."""
        return [(run.run_id, timer_id, at) for run in self.runs.values() if not run.done
                for timer_id, at in run.timers.items()]

    def handle_many(self, events: Iterable[Event]) -> list[Command]:
        out: list[Command] = []
        for event in events:
            out.extend(self.handle(event))
        return out

    def snapshot(self) -> bytes:
        return msgspec.msgpack.encode(Snapshot(version=SNAPSHOT_VERSION, runs=list(self.runs.values())))

    @classmethod
    def restore(cls, data: bytes, *, limits: Limits | None = None) -> Engine:
        # decoding and re-indexing allocate millions of small containers; a collection pass every
        # few thousand allocations would scan the whole growing heap again and again (3x slower)
        # and there are no cycles to find
        paused = gc.isenabled()
        gc.disable()
        try:
            snap = msgspec.msgpack.decode(data, type=Snapshot)
            if snap.version != SNAPSHOT_VERSION:
                raise ValueError(f"snapshot version {snap.version} is not supported (expected {SNAPSHOT_VERSION})")
            engine = cls(limits)
            for run in snap.runs:
                engine.runs[run.run_id] = run
                index = engine._new_index(run)
                for node in run.nodes.values():
                    if node.kind in PIPELINE_KINDS:
                        engine._index_node(run, index, node)
            return engine
        finally:
            if paused:
                gc.enable()

    def _new_index(self, run: RunState) -> _Index:
        index = _Index(lambda path: self._spec_of(run, index, run.nodes[path]))
        self._index[run.run_id] = index
        return index

    def forget(self, run_id: str) -> None:
        """Drop a finished run from memory (its events and snapshot history stay elsewhere)."""
        self.runs.pop(run_id, None)
        self._index.pop(run_id, None)

    def view(self, run_id: str) -> RunView:
        run = self.runs[run_id]
        root = run.nodes[""]
        ops: dict[str, OpView] = {}
        for path, node in run.nodes.items():
            if not path:
                if node.kind in PIPELINE_KINDS:
                    continue
                path = node.name
            ops[path] = OpView(
                status=node.status,
                attempts=node.attempt,
                outputs=node.outputs,
                started_at=node.started_at,
                finished_at=node.finished_at,
                message=node.message,
                kind=node.kind,
                params=node.params,
                reason=node.reason,
            )
        return RunView(
            run_id=run_id,
            pipeline=run.pipeline.name,
            status=root.status,
            started_at=root.started_at,
            finished_at=root.finished_at,
            message=root.message,
            ops=ops,
            hooks=[msgspec.to_builtins(h) for h in run.hooks],
            hook_of=msgspec.to_builtins(run.hook_of) if run.hook_of is not None else None,
        )

    def waiting_for(self, run_id: str) -> dict[str, str]:
        """What each unfinished op of a run waits for, in words (for a stalled run's message)."""
        run = self.runs[run_id]
        index = self._index[run_id]
        out: dict[str, str] = {}
        for path, node in run.nodes.items():
            if node.status in S.DONE or node.kind in PIPELINE_KINDS:
                continue
            if not node.approved and (node.ready or node.reason == "PendingApproval"):
                out[path] = f"approval (flowd approve / --approve {path})"
            elif node.status == S.CREATED:
                base = node.parent or ""
                ups = [up for up in index.specs[path].upstream
                       if (u := run.nodes.get(child_path(base, up))) is not None and u.status not in S.DONE]
                out[path] = f"upstream op(s) {', '.join(ups)}" if ups else f"its trigger ({index.specs[path].trigger})"
            elif node.status == S.COMPILED:
                out[path] = "a concurrency slot"
            else:
                out[path] = f"its {node.kind} to end (status {node.status})"
        return out

    # --------------------------------------------------------------------------- building

    def _spec_of(self, run: RunState, index: _Index, node: Node) -> Op:
        if node.parent is None:
            return run.pipeline
        parent = run.nodes[node.parent]
        parent_spec = index.specs[node.parent]
        if parent.kind == "matrix":
            if node.suggestion is None:  # the tuner job of an iterative matrix
                return self._tuner_job_spec(run, parent, parent_spec, node)
            return self._matrix_child_spec(parent_spec, parent.params or {}, node.suggestion or {})
        if parent.kind == "schedule":
            return msgspec.structs.replace(parent_spec, schedule=None)
        dag = parent_spec.component.dag
        assert dag is not None
        return dag.ops[node.index]

    @staticmethod
    def _matrix_child_spec(op: Op, base: dict[str, Any], suggestion: dict[str, Any]) -> Op:
        values = dict(base)
        values.update(suggestion)
        params = {}
        for name, value in values.items():
            original = op.params.get(name)
            params[name] = ParamSpec(
                value=value,
                context_only=original.context_only if original else None,
                to_env=original.to_env if original else None,
                connection=original.connection if original else None,
            )
        return msgspec.structs.replace(
            op, params=params, matrix=None, upstream=[], event_edges={}, conditions=None, hooks=[],
            trigger="all_succeeded", skip_on_upstream_skip=False, is_approved=True,
        )

    def _index_node(self, run: RunState, index: _Index, node: Node) -> None:
        """Derive a pipeline node's edges and admission limit from its spec."""
        spec = index.specs[node.path]
        if node.kind == "dag":
            dag = spec.component.dag
            index.limits[node.path] = self._limit(run, node, dag.concurrency if dag is not None else None)
            if dag is not None:
                for op in dag.ops:
                    me = child_path(node.path, op.name)
                    for up in op.upstream:
                        index.downstream.setdefault(child_path(node.path, up), []).append(me)
                    for up, statuses in op.event_edges.items():
                        index.event_down.setdefault(child_path(node.path, up), []).append((me, statuses))
        elif node.kind == "matrix":
            index.limits[node.path] = self._limit(run, node, spec.matrix.concurrency if spec.matrix is not None else None)
        else:
            index.limits[node.path] = None

    def _new_node(
        self, run: RunState, index: _Index, path: str, parent: str | None, name: str, pos: int,
        kind: str, *, suggestion: dict[str, Any] | None = None, approved: bool = True, n_up: int = 0,
    ) -> Node:
        node = Node(
            path=path, parent=parent, name=name, index=pos, kind=kind, created_at=self._now,
            approved=approved, n_up=n_up, suggestion=suggestion,
        )
        run.nodes[path] = node
        if kind in PIPELINE_KINDS:
            self._index_node(run, index, node)
            node.children = []
            node.waiting = []
        ancestor = parent
        while ancestor is not None:
            anc = run.nodes[ancestor]
            anc.desc_total += 1
            ancestor = anc.parent
        if parent is not None:
            parent_node = run.nodes[parent]
            parent_node.children.append(path)  # type: ignore[union-attr]
            if kind == "service":
                parent_node.n_services_live += 1
        self._emit_status(run, node)
        return node

    @staticmethod
    def _kind_of(op: Op, *, root: bool = False) -> str:
        if root and op.schedule is not None:
            return "schedule"
        return "matrix" if op.matrix is not None else op.component.kind

    # ------------------------------------------------------------------- templated fields

    def _number(self, run: RunState, node: Node, value: Any, what: str, *, integer: bool = True) -> Any:
        """A numeric field that may be a template (``concurrency: "{{ n }}"``), rendered with the
        node's resolved params ([FLOWD] POLYFLOW §11.1). Raises ResolveError."""
        if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            return value
        rendered = value
        if isinstance(value, str) and is_template(value):
            rendered = self._resolver(run, node).render(value, node.params or {}, what)
        try:
            number = float(rendered) if not isinstance(rendered, bool) else None
        except (TypeError, ValueError):
            number = None
        if number is None or (integer and number != int(number)):
            raise ResolveError(f"{what}: {value!r} is not {'an integer' if integer else 'a number'} (got {rendered!r})")
        return int(number) if integer else number

    def _termination(self, run: RunState, node: Node, spec: Op) -> Termination:
        term = spec.termination
        if not any(isinstance(v, str) for v in (term.max_retries, term.timeout, term.ttl)):
            return term
        return msgspec.structs.replace(
            term,
            max_retries=self._number(run, node, term.max_retries, "termination.maxRetries") or 0,
            timeout=self._number(run, node, term.timeout, "termination.timeout", integer=False),
            ttl=self._number(run, node, term.ttl, "termination.ttl", integer=False),
        )

    # ---------------------------------------------------------------------------- events

    def _submit(self, event: Submit) -> None:
        if event.run_id in self.runs:
            return  # a redelivered submission
        context = dict(event.context)
        context.setdefault("project_name", event.pipeline.name)
        run = RunState(run_id=event.run_id, pipeline=event.pipeline, seed=event.seed, created_at=event.time, nodes={},
                       context=context, hook_of=event.hook_of)
        self.runs[event.run_id] = run
        index = self._new_index(run)
        op = event.pipeline
        root = self._new_node(run, index, "", None, op.name, 0, self._kind_of(op, root=True),
                              approved=approved_up_front(op))
        # a pipeline compiled elsewhere (a `pipeline` on the bus) was not checked against this
        # engine's limit: count it (matrices of known size included) before anything starts
        count = Counter()
        total = count.op(op)
        depth = count.depth(op.component)
        if total > self.limits.max_ops or depth > self.limits.max_dag_depth:
            error = over("the pipeline expands to", total, "ops", setting="max_ops", limit=self.limits.max_ops) \
                if total > self.limits.max_ops else over("DAGs are nested", depth, "levels deep",
                                                         setting="max_dag_depth", limit=self.limits.max_dag_depth)
            self._finish(run, root, S.FAILED, reason="LimitExceeded", message=str(error))
            return
        self._ready(run, root)

    def _op_status(self, run: RunState, event: OpStatus) -> None:
        node = run.nodes.get(event.path)
        if node is None or node.kind in PIPELINE_KINDS or node.status in S.DONE:
            return
        if event.attempt != node.attempt:
            return  # a report about an attempt that was replaced (retried or timed out)
        if event.outputs:
            size = json_size(event.outputs)
            if size > self.limits.max_outputs_bytes:
                # kept out of the state (and every snapshot): the attempt fails as the local
                # executor fails one whose outputs file is not valid
                event = msgspec.structs.replace(
                    event, status=S.FAILED if event.status == S.SUCCEEDED else event.status, outputs=None,
                    reason="InvalidOutputs", message=str(over("the outputs are", size, "bytes as JSON",
                                                              setting="max_outputs_bytes",
                                                              limit=self.limits.max_outputs_bytes)))
        status = event.status
        if event.metrics and node.status not in (S.STOPPING, S.CREATED, S.COMPILED):
            self._metrics(run, node, event.metrics)
            if node.status in S.DONE or node.status == S.STOPPING:
                return  # a policy ruled this run out
        if node.status == S.STOPPING:
            if status not in S.DONE:
                return
            if node.reason == "PipelineEnded":
                status = S.SUCCEEDED
            elif status != S.SUCCEEDED:
                status = S.STOPPED
            self._finish(run, node, status, message=event.message, outputs=event.outputs)
            return
        if status in S.EXECUTOR_LIVE:
            if status == node.status:
                return
            node.status = status
            if status in (S.SCHEDULED, S.STARTING, S.RUNNING, S.PROCESSING) and node.started_at is None:
                node.started_at = event.time
            node.message = event.message
            node.reason = event.reason
            self._emit_status(run, node)
            self._fire_event_edges(run, node)
            return
        if status == S.SUCCEEDED:
            self._cancel_timer(run, f"timeout:{node.path}#{node.attempt}")
            resolver = self._resolver(run, node)
            try:
                outputs = resolver.outputs(event.outputs)
            except ResolveError as exc:
                self._finish(run, node, S.FAILED, message=str(exc), reason="InvalidOutputs", outputs=event.outputs)
                return
            if node.started_at is None:  # a cache hit: no process ran; it started and ended now
                node.started_at = event.time
            self._finish(run, node, S.SUCCEEDED, message=event.message, outputs=outputs, reason=event.reason)
        elif status == S.FAILED:
            self._cancel_timer(run, f"timeout:{node.path}#{node.attempt}")
            self._attempt_failed(run, node, event.message or _exit_message(event), event.reason or "Failed", event.outputs)
        elif status in S.DONE:
            self._cancel_timer(run, f"timeout:{node.path}#{node.attempt}")
            self._finish(run, node, status, message=event.message, reason=event.reason, outputs=event.outputs)

    def _attempt_failed(self, run: RunState, node: Node, message: str | None, reason: str, outputs: Any) -> None:
        spec = self._index[run.run_id].specs[node.path]
        try:
            term = self._termination(run, node, spec)
        except ResolveError as exc:
            self._finish(run, node, S.FAILED, message=str(exc), reason="CompilationFailed", outputs=outputs)
            return
        parent = run.nodes.get(node.parent) if node.parent is not None else None
        if node.attempt <= term.max_retries and not (parent is not None and parent.stopping):
            node.status = S.RETRYING
            node.message = message
            node.reason = reason
            self._emit_status(run, node)
            if term.backoff is not None:
                delay = self._backoff(run, node, term.backoff)
                self._set_timer(run, f"retry:{node.path}#{node.attempt}", self._now + delay)
            else:
                self._dispatch_job(run, node)
            return
        self._finish(run, node, S.FAILED, message=message, reason=reason, outputs=outputs)

    @staticmethod
    def _backoff(run: RunState, node: Node, backoff: Any) -> float:
        delay: float = min(backoff.max, backoff.base * backoff.factor ** (node.attempt - 1))
        if backoff.jitter:
            rng = random.Random(run.seed ^ zlib.crc32(f"{node.path}#{node.attempt}".encode()))
            delay += delay * backoff.jitter * rng.random()
        return delay

    def _timer(self, run: RunState, event: TimerFired) -> None:
        if run.timers.pop(event.timer_id, None) is None:
            return  # cancelled, or a redelivered firing
        kind, _, rest = event.timer_id.partition(":")
        path, _, number = rest.rpartition("#")
        node = run.nodes.get(path)
        if node is None or node.status in S.DONE:
            return
        if kind == "tick":
            if node.kind == "schedule" and node.next_at is not None and str(len(node.children or ())) == number:
                self._schedule_ticks(run, node)
            return
        if str(node.attempt) != number:
            return
        spec = self._index[run.run_id].specs[path]
        if kind == "timeout" and node.status != S.STOPPING:
            self._out.append(StopOp(run.run_id, path, node.attempt, attempt_key(run, node), reason="Timeout"))
            timeout = self._termination(run, node, spec).timeout
            self._finish(run, node, S.FAILED, message=f"timed out after {timeout:g}s", reason="Timeout")
        elif kind == "retry" and node.status == S.RETRYING:
            self._dispatch_job(run, node)

    def _stop_request(self, run: RunState, event: Stop) -> None:
        node = run.nodes.get(event.path)
        if node is not None:
            self._stop(run, node, event.reason or "StopRequested")

    def _approve(self, run: RunState, event: Approve) -> None:
        node = run.nodes.get(event.path)
        if node is None or node.approved:
            return
        node.approved = True
        if node.status == S.CREATED and node.ready:
            self._prepare(run, node)
        elif node.status == S.COMPILED and node.reason == "PendingApproval":
            node.reason = None
            self._enqueue(run, node)

    # ------------------------------------------------------------------------- lifecycle

    def _resolver(self, run: RunState, node: Node) -> Resolver:
        index = self._index[run.run_id]
        parent = run.nodes.get(node.parent) if node.parent is not None else None
        dag_node = parent
        if parent is not None and parent.kind == "matrix":
            # a matrix child reads `ref: dag` from the DAG around the matrix
            dag_node = run.nodes.get(parent.parent) if parent.parent is not None else None
        base = parent.path if parent is not None else ""

        def sibling(name: str) -> Node | None:
            return run.nodes.get(child_path(base, name))

        return Resolver(run.run_id, node, index.specs[node.path], dag_node, sibling, run.nodes.get, run.context)

    def _ready(self, run: RunState, node: Node) -> None:
        """The trigger fired: prepare the op now, or once it is approved."""
        if node.status != S.CREATED:
            return
        node.ready = True
        if node.approved or is_template(self._index[run.run_id].specs[node.path].is_approved):
            # a templated isApproved is decided by _prepare, with the op's params
            self._prepare(run, node)
        elif node.reason != "PendingApproval":
            node.reason = "PendingApproval"
            node.message = "waiting for approval"
            self._emit_status(run, node)

    def _prepare(self, run: RunState, node: Node) -> None:
        """Compile the op: resolve params, evaluate conditions, then queue it for admission."""
        if node.status != S.CREATED:
            return
        spec = self._index[run.run_id].specs[node.path]
        resolver = self._resolver(run, node)
        try:
            params = resolver.params(partial=node.kind == "matrix")
            node.params = params
            if spec.conditions is not None and not resolver.condition(params):
                self._finish(run, node, S.SKIPPED, reason="ConditionsCheckFailed",
                             message=f"conditions {spec.conditions!r} evaluated to false")
                return
            approved = spec.is_approved
            if isinstance(approved, str) and is_template(approved):
                try:
                    hold = not truth(resolver.render(approved, params, "isApproved"), what="isApproved")
                except TemplateError as exc:
                    raise ResolveError(f"isApproved of op {node.path!r}: {exc}") from None
            else:
                hold = False
        except (ResolveError, TemplateError) as exc:
            self._finish(run, node, S.FAILED, reason="CompilationFailed", message=str(exc))
            return
        node.status = S.COMPILED
        node.message = None
        if hold and not node.approved:
            node.reason = "PendingApproval"
            node.message = "waiting for approval"
            self._emit_status(run, node)
            return
        node.reason = None
        self._emit_status(run, node)
        self._enqueue(run, node)

    def _enqueue(self, run: RunState, node: Node) -> None:
        if node.parent is None:
            self._dispatch(run, node)
            return
        parent = run.nodes[node.parent]
        parent.waiting.append(node.path)  # type: ignore[union-attr]
        self._admit(run, parent)

    def _admit(self, run: RunState, parent: Node) -> None:
        if parent.stopping or parent.status in S.DONE:
            return
        waiting = parent.waiting
        assert waiting is not None
        limit = self._index[run.run_id].limits.get(parent.path)
        while parent.waiting_head < len(waiting) and (not limit or parent.active < limit):
            path = waiting[parent.waiting_head]
            parent.waiting_head += 1
            child = run.nodes[path]
            if child.status != S.COMPILED:
                continue
            parent.active += 1
            child.holds_slot = True
            self._dispatch(run, child)
        if parent.waiting_head == len(waiting) and waiting:
            waiting.clear()
            parent.waiting_head = 0

    def _dispatch(self, run: RunState, node: Node) -> None:
        if node.kind in PIPELINE_KINDS:
            self._start_pipeline(run, node)
        else:
            self._dispatch_job(run, node)

    def _dispatch_job(self, run: RunState, node: Node) -> None:
        spec = self._index[run.run_id].specs[node.path]
        params = node.params or {}
        resolver = self._resolver(run, node)
        try:
            body = spec.component.run
            if has_templates(spec):
                body = resolver.render(body, params, "run")
            env = resolver.env(params)
            term = self._termination(run, node, spec)
        except ResolveError as exc:
            self._finish(run, node, S.FAILED, reason="CompilationFailed", message=str(exc))
            return
        node.attempt += 1
        node.emitted = node.repeats = 0  # a new attempt: a new key space
        node.status = S.QUEUED
        node.message = None
        node.reason = None
        self._emit_status(run, node)
        cache_key, cache_ttl = (None, None)
        if run.context.get("cache") != "off" and run.pipeline.schedule is None:  # each tick is meant to run
            cache_key, cache_ttl = cache_of(spec, node, params, body, env)
        self._out.append(
            StartOp(
                run_id=run.run_id, path=node.path, attempt=node.attempt, key=attempt_key(run, node),
                kind=node.kind, params=params, run=body, env=env, termination=term,
                namespace=spec.component.namespace, outputs=[io.name for io in spec.component.outputs],
                cache_key=cache_key, cache_ttl=cache_ttl,
            )
        )
        if term.timeout:
            self._set_timer(run, f"timeout:{node.path}#{node.attempt}", self._now + term.timeout)

    # ------------------------------------------------------------------------ finishing

    def _finish(self, run: RunState, node: Node, status: str, *, message: str | None = None,
                reason: str | None = None, outputs: Any = None) -> None:
        if node.status in S.DONE:
            return
        node.status = status
        node.finished_at = self._now
        if message is not None:
            node.message = message
        if reason is not None:
            node.reason = reason
        if outputs is not None:
            node.outputs = outputs
        if node.kind not in PIPELINE_KINDS and node.attempt:
            self._cancel_timer(run, f"timeout:{node.path}#{node.attempt}")
            self._cancel_timer(run, f"retry:{node.path}#{node.attempt}")
        self._emit_status(run, node)
        self._finished.append((run, node))

    def _drain(self) -> None:
        """Propagate terminal statuses: downstream triggers, parent counters, pipeline ends."""
        finished = self._finished
        head = 0
        while head < len(finished):
            run, node = finished[head]
            head += 1
            self._fire_hooks(run, node)
            if node.parent is None:
                self._end_run(run, node)
                continue
            index = self._index[run.run_id]
            parent = run.nodes[node.parent]
            if node.holds_slot:
                node.holds_slot = False
                parent.active -= 1
            parent.n_children_done += 1
            if node.status == S.FAILED:
                parent.n_children_failed += 1
            elif node.status == S.STOPPED:
                parent.n_children_stopped += 1
            if node.kind == "service":
                parent.n_services_live -= 1
            bad = node.status in (S.FAILED, S.UPSTREAM_FAILED)
            ancestor: Node | None = parent
            while ancestor is not None:
                if bad:
                    ancestor.desc_bad += 1
                self._check_early_stopping(run, index, ancestor, node)
                ancestor = run.nodes[ancestor.parent] if ancestor.parent is not None else None
            if not parent.stopping:
                for down_path in index.downstream.get(node.path, ()):
                    self._upstream_done(run, index, run.nodes[down_path], node)
            self._admit(run, parent)
            if parent.kind == "schedule" and parent.next_at is None and parent.status == S.RUNNING:
                self._schedule_ticks(run, parent)
            self._check_pipeline_end(run, parent)
        finished.clear()

    def _fire_hooks(self, run: RunState, node: Node) -> None:
        """POLYFLOW §8.3: a finished op's hooks become separate runs (a schedule's hooks fire
        per tick, a matrix's once for the matrix: its children carry none)."""
        if node.kind == "schedule" or run.hook_of is not None:
            return
        spec = self._index[run.run_id].specs[node.path]
        if spec.hooks:
            self._out.extend(fire_hooks(run, node, spec, self._resolver(run, node), self._now))

    def _upstream_done(self, run: RunState, index: _Index, down: Node, up: Node) -> None:
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
            self._finish(run, down, S.SKIPPED, reason="UpstreamSkipped", message=f"upstream op {up.name!r} was skipped")
            return
        policy: str | None = spec.trigger
        if policy not in TRIGGER_POLICIES:
            policy = self._render_trigger(run, down, spec.trigger)
            if policy is None:
                return
        decision = decide(policy, down.n_up, down.n_done, down.n_ok, down.n_bad)
        if decision == START:
            self._ready(run, down)
        elif decision == UPSTREAM_FAILED:
            self._finish(run, down, S.UPSTREAM_FAILED, reason="UpstreamFailed",
                         message=f"trigger {policy} cannot be satisfied")

    def _render_trigger(self, run: RunState, node: Node, policy: str) -> str | None:
        resolver = self._resolver(run, node)
        try:
            rendered = render_text(policy, resolver.context(resolver.known_params())).strip() if is_template(policy) else policy
        except TemplateError as exc:
            self._finish(run, node, S.FAILED, reason="CompilationFailed", message=f"trigger of op {node.path!r}: {exc}")
            return None
        if rendered not in TRIGGER_POLICIES:
            self._finish(run, node, S.FAILED, reason="CompilationFailed",
                         message=f"trigger {rendered!r} is not one of {', '.join(TRIGGER_POLICIES)}")
            return None
        return rendered

    def _fire_event_edges(self, run: RunState, node: Node) -> None:
        for down_path, statuses in self._index[run.run_id].event_down.get(node.path, ()):
            if node.status in statuses:
                down = run.nodes[down_path]
                if down.status == S.CREATED and not down.ready:
                    self._ready(run, down)

    def _end_run(self, run: RunState, root: Node) -> None:
        for timer_id in list(run.timers):
            self._cancel_timer(run, timer_id)
        run.done = True
        self._out.append(PipelineDone(run.run_id, root.status, self._now, root.message, key=done_key(run)))

    # ---------------------------------------------------------------------------- output

    def _emit_status(self, run: RunState, node: Node) -> None:
        self._out.append(
            StatusChanged(
                run_id=run.run_id, path=node.path, status=node.status, time=self._now, attempt=node.attempt,
                key=event_key(run, node), message=node.message,
                reason=node.reason, outputs=node.outputs if node.status == S.SUCCEEDED else None,
            )
        )

    def _set_timer(self, run: RunState, timer_id: str, at: float) -> None:
        run.timers[timer_id] = at
        self._out.append(SetTimer(run.run_id, timer_id, at))

    def _cancel_timer(self, run: RunState, timer_id: str) -> None:
        if run.timers.pop(timer_id, None) is not None:
            self._out.append(CancelTimer(run.run_id, timer_id))


def cache_of(spec: Op, node: Node, params: dict[str, Any], body: dict[str, Any],
             env: dict[str, str]) -> tuple[str | None, float | None]:
    """The cache key and ttl of a job attempt (POLYFLOW §5.10), or (None, None). On by default
    inside pipelines; a single-op file caches only with an explicit ``cache``; services never.
    The key covers the component's content (its rendered runtime, declared IO, kind) and the
    resolved inputs, restricted to ``cache.io`` when given."""
    cache = spec.cache or {}
    if node.kind == "service" or cache.get("disable") is True or (node.parent is None and not spec.cache):
        return None, None
    io = cache.get("io")
    keyed = {k: v for k, v in params.items() if not isinstance(io, list) or k in io}
    component = spec.component
    blob = msgspec.json.encode([
        "flowd-cache-1", component.kind, component.inputs, component.outputs, body, env, sorted(keyed.items()),
    ])
    ttl = cache.get("ttl")
    return hashlib.sha256(blob).hexdigest(), float(ttl) if isinstance(ttl, (int, float)) else None


def _exit_message(event: OpStatus) -> str | None:
    if event.exit_code is not None:
        return f"exited with code {event.exit_code}"
    return None
