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
from collections.abc import Callable, Container, Iterable, Iterator, Sequence

import msgspec

from flowd.engine import fields, recovery, run_parts, template_bounds
from flowd.engine import status as S
from flowd.engine.index import Index, new_index
from flowd.engine.joins import JoinSource
from flowd.engine.messages import (
    Approve,
    Command,
    Event,
    OpStatus,
    Resume,
    StartOp,
    Stop,
    StopOp,
    Submit,
    TimerFired,
)
from flowd.engine.nodes import approved_up_front, index_node, kind_of, new_node
from flowd.engine.ops import Ops
from flowd.engine.pipeline_codec import decode_snapshot
from flowd.engine.pipelines import Pipelines
from flowd.engine.resolve import ResolveError, op_uuid, outputs_of
from flowd.engine.state import PIPELINE_KINDS, SNAPSHOT_VERSION, RunState, Snapshot, attempt_key, child_path
from flowd.engine.step import Step
from flowd.engine.tuned import Tuned
from flowd.engine.view import OpView, RunView
from flowd.spec.compiled import Op
from flowd.spec.expansion import Counter
from flowd.spec.limits import Limits, json_size, over


class Engine:
    """The machine: handles events on the runs it holds. Its parts are composed here and see
    only what they need (docs/engine.md, "Shape"): ``Step`` (limits, derived indexes, the outbox
    of one event), ``Ops`` (one op's lifecycle), ``Tuned`` (tuned matrices and metric policies),
    ``Pipelines`` (pipeline nodes and the drain), and the functions of :mod:`recovery`."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.runs: dict[str, RunState] = {}
        self._step = step = Step(self.limits)
        self._index = step.index
        self._ops = Ops(step)
        self._tuned = Tuned(step, self._ops)
        self._pipelines = Pipelines(step, self._ops, self._tuned)
        # the two calls that go back up, handed down as plain callables
        self._ops.start_pipeline = self._pipelines.start_pipeline
        self._tuned.stop = self._pipelines.stop
        # what joins select from: every op of every run this engine holds (POLYFLOW §8.4)
        step.joins = JoinSource(lambda: self.runs.values(),
                                lambda run, node: list(self._index[run.run_id].specs[node.path].component.tags),
                                self.limits, op_uuid)

    # ------------------------------------------------------------------------------ public

    def handle(self, event: Event, sink: Callable[[Command], None] | None = None) -> list[Command]:
        """Apply ``event``; return the commands it produced, in order. With ``sink``, each command
        is handed to it as soon as it is produced instead (same commands, same order) and the
        list returned is empty: a caller that consumes them at once never holds a whole burst.
        If the engine fails on the event (the run is quarantined) the commands it already sank
        stand, and the quarantine stops every op they started."""
        self._step.begin(event.time, sink)
        bound = template_bounds.bind(self.limits.max_template_bytes) \
            if template_bounds.bound() != self.limits.max_template_bytes else None
        try:
            if type(event) is OpStatus:  # most events: checked first
                run = self.runs.get(event.run_id)
                if run is not None and not run.done:
                    self._op_status(run, event)
            elif isinstance(event, Submit):
                self._submit(event)
            elif isinstance(event, Resume):
                run = self.runs.get(event.run_id)
                if run is not None:
                    recovery.resume(self._pipelines, run)
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
            self._pipelines.drain()
        except Exception as exc:  # a bug in the engine: contain it to the run it happened in
            run = self.runs.get(event.run_id)
            if run is None:
                raise
            recovery.quarantine(self._step, run, event, exc)
        finally:
            if bound is not None:  # None: the bound in force was this engine's already
                template_bounds.unbind(bound)
        out, self._step.out = self._step.out, []
        self._step.sink = None
        return out if isinstance(out, list) else []

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
            # equal parts of a pipeline (a nested DAG's body) decoded once, shared again
            snap = decode_snapshot(data)
            if snap.version != SNAPSHOT_VERSION:
                raise ValueError(f"snapshot version {snap.version} is not supported (expected {SNAPSHOT_VERSION})")
            engine = cls(limits)
            for run in snap.runs:
                engine.runs[run.run_id] = run
                index = engine._new_index(run)
                for node in run.nodes.values():
                    if node.kind in PIPELINE_KINDS:
                        index_node(run, index, node)
            return engine
        finally:
            if paused:
                gc.enable()

    # --------------------------------------------------- one run's state, in parts (daemon snapshots)

    def snapshot_run(self, run_id: str, *, nodes_per_part: int = 4096,
                     without_pipeline: bool = False) -> Iterator[bytes]:
        """The state of one run as a sequence of msgpack parts: the run without its nodes, then
        its nodes in insertion order, ``nodes_per_part`` at a time. A caller may do other work
        between parts (the daemon yields to its event loop) as long as the engine does not
        change meanwhile. ``restore_run`` takes the parts back. ``without_pipeline``: the
        compiled pipeline (often the same for many runs) is left out, for the caller to store
        once and hand back to ``restore_run``."""
        return run_parts.snapshot_run(self.runs[run_id], nodes_per_part, without_pipeline=without_pipeline)

    def restore_run(self, parts: Sequence[bytes | memoryview], *, pipeline: Op | None = None) -> None:
        """Add a run from the parts ``snapshot_run`` gave (replacing a run of the same id), with
        ``pipeline`` if it was left out (runs may share one: the engine never changes a compiled
        pipeline). The caller pauses the cyclic GC around many of these (see ``restore``)."""
        run = run_parts.restore_run(parts, pipeline)
        self.runs[run.run_id] = run
        index = self._new_index(run)
        for node in run.nodes.values():
            if node.kind in PIPELINE_KINDS:
                index_node(run, index, node)

    def in_flight_keys(self, run_id: str) -> list[str]:
        """Keys of the run's attempts that are started and not over by the engine's state and
        whose StartOp ``in_flight`` can derive again (none rendered from templates). Cheap."""
        return run_parts.in_flight_keys(self.runs[run_id], self._index[run_id])

    def in_flight(self, run_id: str, *, skip: Container[str] = ()) -> list[StartOp]:
        """The StartOp of every attempt of ``in_flight_keys`` (except ``skip``), derived again from
        the state: the command the engine emitted at dispatch (same key, body, params, env and
        termination). An adapter re-issues them after a restore instead of storing them."""
        return run_parts.in_flight(self.runs[run_id], self._index[run_id], skip)

    def _new_index(self, run: RunState) -> Index:
        index = self._index[run.run_id] = new_index(run)
        return index

    def forget(self, run_id: str) -> None:
        """Drop a finished run from memory (its events and snapshot history stay elsewhere)."""
        self.runs.pop(run_id, None)
        self._index.pop(run_id, None)

    def view(self, run_id: str) -> RunView:
        run = self.runs[run_id]
        root = run.nodes[""]
        return RunView(
            run_id=run_id,
            pipeline=run.pipeline.name,
            status=root.status,
            started_at=root.started_at,
            finished_at=root.finished_at,
            message=root.message,
            ops=dict(self.op_views(run_id)),
            hooks=[msgspec.to_builtins(h) for h in run.hooks],
            hook_of=msgspec.to_builtins(run.hook_of) if run.hook_of is not None else None,
        )

    def op_views(self, run_id: str) -> Iterator[tuple[str, OpView]]:
        """The ``ops`` of ``view(run_id)`` one at a time, in the same order: a caller that
        looks at a million ops one by one never holds all their views."""
        for path, node in self.runs[run_id].nodes.items():
            if not path:
                if node.kind in PIPELINE_KINDS:
                    continue
                path = node.name
            yield path, OpView(
                status=node.status,
                attempts=node.attempt,
                outputs=node.outputs,
                started_at=node.started_at,
                finished_at=node.finished_at,
                message=node.message,
                kind=node.kind,
                params=node.params,
                reason=node.reason,
                joined=[{"run_id": r, "op": p, "uuid": op_uuid(r, p)}
                        for r, _, p in (item.partition("/") for item in node.joined)] if node.joined else None,
                metrics=_last_metrics(node.curves),
            )

    def waiting_for(self, run_id: str) -> dict[str, str]:
        """What each unfinished op of a run waits for, in words (for a stalled run's message)."""
        run = self.runs[run_id]
        index = self._index[run_id]
        out: dict[str, str] = {}
        for path, node in run.nodes.items():
            if node.status in S.DONE:
                continue
            if not node.approved and (node.ready or node.reason == "PendingApproval"):
                # a matrix or nested DAG held for approval too: nothing under it runs until then
                out[path] = f"approval (flowd approve / --approve {path})"
            elif node.kind in PIPELINE_KINDS:
                continue
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
        root = new_node(self._step, run, index, "", None, op.name, 0, kind_of(op, root=True),
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
            self._step.finish(run, root, S.FAILED, reason="LimitExceeded", message=str(error))
            return
        self._ops.ready(run, root)

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
            self._tuned.metrics(run, node, event.metrics)
            if node.status in S.DONE or node.status == S.STOPPING:
                return  # a policy ruled this run out
        if node.status == S.STOPPING:
            if status not in S.DONE:
                return
            if node.reason == "PipelineEnded":
                status = S.SUCCEEDED
            elif status != S.SUCCEEDED:
                status = S.STOPPED
            self._step.finish(run, node, status, message=event.message, outputs=event.outputs)
            return
        if status in S.EXECUTOR_LIVE:
            if status == node.status:
                return
            node.status = status
            if status in (S.SCHEDULED, S.STARTING, S.RUNNING, S.PROCESSING) and node.started_at is None:
                node.started_at = event.time
            node.message = event.message
            node.reason = event.reason
            self._step.emit_status(run, node)
            self._ops.fire_event_edges(run, node)
            return
        if status == S.SUCCEEDED:
            if run.timers:  # most runs arm none: skip formatting an id to look up
                self._step.cancel_timer(run, f"timeout:{node.path}#{node.attempt}")
            try:
                index = self._index[run.run_id]
                outputs = outputs_of(index.spec(node) if node.suggestion is not None else index.specs[node.path],
                                     event.outputs)
            except ResolveError as exc:
                self._step.finish(run, node, S.FAILED, message=str(exc), reason="InvalidOutputs", outputs=event.outputs)
                return
            if node.started_at is None:  # a cache hit: no process ran; it started and ended now
                node.started_at = event.time
            self._step.finish(run, node, S.SUCCEEDED, message=event.message, outputs=outputs, reason=event.reason)
        elif status == S.FAILED:
            if run.timers:  # most runs arm none: skip formatting an id to look up
                self._step.cancel_timer(run, f"timeout:{node.path}#{node.attempt}")
            self._ops.attempt_failed(run, node, event.message or _exit_message(event), event.reason or "Failed", event.outputs)
        elif status in S.DONE:
            if run.timers:  # most runs arm none: skip formatting an id to look up
                self._step.cancel_timer(run, f"timeout:{node.path}#{node.attempt}")
            self._step.finish(run, node, status, message=event.message, reason=event.reason, outputs=event.outputs)

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
                self._pipelines.schedule_ticks(run, node)
            return
        if str(node.attempt) != number:
            return
        spec = self._index[run.run_id].specs[path]
        if kind == "timeout" and node.status != S.STOPPING:
            self._step.out.append(StopOp(run.run_id, path, node.attempt, attempt_key(run, node), reason="Timeout"))
            timeout = fields.termination(run, self._index[run.run_id], node, spec).timeout
            self._step.finish(run, node, S.FAILED, message=f"timed out after {timeout:g}s", reason="Timeout")
        elif kind == "retry" and node.status == S.RETRYING:
            self._ops.dispatch_job(run, node)

    def _stop_request(self, run: RunState, event: Stop) -> None:
        node = run.nodes.get(event.path)
        if node is not None:
            self._pipelines.stop(run, node, event.reason or "StopRequested")

    def _approve(self, run: RunState, event: Approve) -> None:
        node = run.nodes.get(event.path)
        if node is None or node.approved:
            return
        self._ops.approve(run, node)



def _exit_message(event: OpStatus) -> str | None:
    if event.exit_code is not None:
        return f"exited with code {event.exit_code}"
    return None


def _last_metrics(curves: dict[str, list[list[float]]] | None) -> dict[str, float] | None:
    """The last value of each intermediate metric curve (a view's ``metrics``)."""
    last = {name: points[-1][-1] for name, points in (curves or {}).items() if points}
    return last or None
