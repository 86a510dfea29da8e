"""The lifecycle of pipeline nodes (DAGs, matrices, schedules): starting one, its schedule ticks,
early stopping, stopping, and deciding its final status when its children are done
(POLYFLOW §5.12, §5.13, §6, §7, §8.1); and the drain that propagates terminal statuses up to
them and on to downstream ops."""

from __future__ import annotations

import zlib
from typing import Any

import msgspec

from flowd.engine import fields, hooks, tuners
from flowd.engine import matrix as matrix_mod
from flowd.engine import schedule as schedule_mod
from flowd.engine import status as S
from flowd.engine.index import Index, child_template
from flowd.engine.messages import PipelineDone, StopOp
from flowd.engine.nodes import approved_up_front, kind_of, new_node
from flowd.engine.ops import Ops
from flowd.engine.resolve import ResolveError, dag_outputs, fan_in_outputs
from flowd.engine.state import PIPELINE_KINDS, Node, RunState, attempt_key, child_path, done_key
from flowd.engine.step import Step
from flowd.engine.tuned import Tuned
from flowd.spec.expansion import Counter, matrix_runs
from flowd.spec.limits import over


class Pipelines:
    """The pipeline nodes of the runs in ``step``: their children are created with :mod:`nodes`
    and go through ``ops``; tuned matrices iterate through ``tuned``."""

    def __init__(self, step: Step, ops: Ops, tuned: Tuned) -> None:
        self.step = step
        self.ops = ops
        self.tuned = tuned

    def start_pipeline(self, run: RunState, node: Node) -> None:
        index = self.step.index[run.run_id]
        spec = index.specs[node.path]
        if node.kind != "schedule":
            concurrency = spec.matrix.concurrency if node.kind == "matrix" and spec.matrix else (
                spec.component.dag.concurrency if spec.component.dag is not None else None)
            try:
                index.limits[node.path] = fields.limit(run, index, node, concurrency, strict=True)
            except ResolveError as exc:
                self.step.finish(run, node, S.FAILED, reason="CompilationFailed", message=str(exc))
                return
        node.status = S.RUNNING
        node.started_at = self.step.now
        self.step.emit_status(run, node)
        if node.kind == "schedule":
            self.schedule_ticks(run, node)
            self.check_pipeline_end(run, node)
            return
        if node.kind == "dag":
            dag = spec.component.dag
            if dag is not None and dag.errors and node.parent is not None:
                # a nested DAG is validated fully only now, as its run is compiled (POLYFLOW §4.3)
                self.step.finish(run, node, S.FAILED, reason="CompilationFailed", message="; ".join(dag.errors))
                return
            ops = dag.ops if dag is not None else []
            specs = index.specs
            shapes = index.dag_shapes.get(id(dag))
            if shapes is None or shapes[0] is not dag:
                shapes = index.dag_shapes[id(dag)] = (
                    dag, [(op.name, kind_of(op), approved_up_front(op), len(op.upstream)) for op in ops])
            children = []
            for i, (name, kind, approved, n_up) in enumerate(shapes[1]):
                path = child_path(node.path, name)
                specs[path] = ops[i]  # what spec_of derives, without deriving it per op
                children.append(new_node(self.step, run, index, path, node.path, name, i, kind,
                                         approved=approved, n_up=n_up))
            for child in children:
                if child.n_up == 0:
                    self.ops.ready(run, child)
        else:
            assert spec.matrix is not None
            if spec.matrix.kind in tuners.ITERATIVE_KINDS:
                self.tuned.start_tuned_matrix(run, node)
                self.check_pipeline_end(run, node)
                return
            try:
                values = None
                if isinstance(spec.matrix.values, str):
                    values = fields.resolver(run, self.step.index[run.run_id], node).render(spec.matrix.values, node.params or {}, "matrix.values")
                seed = run.seed ^ zlib.crc32(node.path.encode())
                matrix = spec.matrix
                if isinstance(matrix.seed, str):
                    matrix = msgspec.structs.replace(matrix, seed=fields.number(run, self.step.index[run.run_id], node, matrix.seed, "matrix.seed"))
                too_big = self.over_max_ops(run, matrix, values, spec.component)
                if too_big is not None:
                    node.message = too_big
                    self.step.finish(run, node, S.FAILED, reason="LimitExceeded", message=too_big)
                    return
                suggestions = matrix_mod.suggestions(matrix, seed, values)
            except (ResolveError, matrix_mod.MatrixError, ValueError, TypeError, KeyError, IndexError) as exc:
                node.message = f"matrix: {exc}"
                self.step.finish(run, node, S.FAILED, reason="CompilationFailed", message=f"matrix: {exc}")
                return
            kind = spec.component.kind
            # a matrix at the top of its DAG names its children as it paths them: one string each
            same = node.path == spec.name
            # the spec every child shares, which ``index.spec`` gives each of them (no entry per child)
            child_template(index, node.path, spec)
            children = []
            for i, s in enumerate(suggestions):
                path = f"{node.path}[{i}]"
                children.append(new_node(self.step, run, index, path, node.path, path if same else f"{spec.name}[{i}]",
                                         i, kind, suggestion=s))
            for child in children:
                self.ops.ready(run, child)
        self.check_pipeline_end(run, node)

    def over_max_ops(self, run: RunState, matrix: Any, values: Any, component: Any) -> str | None:
        """Why starting this matrix would take the run over ``max_ops``, or None. Counted before
        a single suggestion exists: a templated ``values`` is known only now, and a compiled
        pipeline may come from elsewhere (docs/limits.md)."""
        runs = matrix_runs(matrix, values)
        if runs is None:
            return None
        limit = self.step.limits.max_ops
        if runs > limit:
            return str(over("this matrix expands to", runs, "runs", setting="max_ops", limit=limit))
        inner = Counter().component(component)
        total = len(run.nodes) + runs * inner
        if total <= limit:
            return None
        each = f" of {inner:,} ops each" if inner > 1 else ""
        return str(over(f"this matrix expands to {runs:,} runs{each}, which takes the run to", total, "ops",
                        setting="max_ops", limit=limit))

    def schedule_ticks(self, run: RunState, node: Node) -> None:
        """Create the children that are due and arm a timer for the next tick (POLYFLOW §8.1)."""
        index = self.step.index[run.run_id]
        spec = index.specs[node.path]
        schedule = spec.schedule or {}
        depends_on_past = schedule.get("dependsOnPast") is True or schedule.get("kind") == "datetime"
        while not node.exhausted and not node.stopping:
            count = len(node.children or ())
            if node.next_at is not None and node.next_at < self.step.now and schedule.get("catchUp") is False:
                node.next_at = None  # fired late: skip to the latest tick instead of replaying missed ones
            if node.next_at is None:
                try:
                    tick = schedule_mod.next_tick(schedule, created_at=node.created_at, last=node.last_at,
                                                  count=count, now=self.step.now)
                except schedule_mod.ScheduleError as exc:
                    node.exhausted = True
                    self.step.finish(run, node, S.FAILED, reason="InvalidSchedule", message=f"schedule: {exc}")
                    return
                if tick is None:
                    node.exhausted = True
                    return
                node.next_at = tick
                if tick > self.step.now:
                    self.step.set_timer(run, f"tick:{node.path}#{count}", tick)
                    return
            if node.next_at > self.step.now:
                return
            tick, node.next_at, node.last_at = node.next_at, None, node.next_at
            self.step.cancel_timer(run, f"tick:{node.path}#{count}")
            child_op = index.specs[node.path]
            child = new_node(self.step, run, index, child_path(node.path, f"tick-{count}"), node.path, f"tick-{count}",
                                   count, kind_of(child_op))
            child.schedule_at = tick
            self.ops.ready(run, child)
            if depends_on_past:
                return  # the next tick is computed when this child ends

    def check_early_stopping(self, run: RunState, index: Index, pipeline: Node, finished: Node) -> None:
        if pipeline.stopping or pipeline.status in S.DONE or pipeline.early_outcome:
            return
        rules = index.early_stopping.get(pipeline.path)
        if rules is None:
            spec = index.specs[pipeline.path]
            if pipeline.kind == "matrix":
                rules = spec.matrix.early_stopping if spec.matrix is not None else []
            else:
                rules = spec.component.dag.early_stopping if spec.component.dag is not None else []
            index.early_stopping[pipeline.path] = rules
        for rule in rules:
            fired = None
            if rule.kind == "failure_early_stopping" and rule.percent is not None:
                total = max(pipeline.desc_total, 1)
                if pipeline.desc_bad and pipeline.desc_bad * 100 >= rule.percent * total:
                    fired = S.FAILED
            elif rule.kind == "metric_early_stopping" and rule.metric and rule.value is not None and not rule.policy:
                value = (finished.outputs or {}).get(rule.metric) if finished.status == S.SUCCEEDED else None
                if isinstance(value, (int, float)) and not isinstance(value, bool) and (
                    (rule.optimization == "minimize" and value <= rule.value)
                    or (rule.optimization != "minimize" and value >= rule.value)
                ):
                    fired = S.SUCCEEDED
            if fired is not None:
                pipeline.early_outcome = fired
                pipeline.reason = f"EarlyStopping:{rule.kind}"
                pipeline.message = f"early stopping ({rule.kind}) fired"
                self.stop(run, pipeline, pipeline.reason, early=True)
                return

    def check_pipeline_end(self, run: RunState, pipeline: Node) -> None:
        if pipeline.status in S.DONE or pipeline.status == S.CREATED or pipeline.status == S.COMPILED:
            return
        children = pipeline.children or []
        if (pipeline.n_services_live and pipeline.kind == "dag" and not pipeline.stopping
                and self.fail_service_waiters(run, pipeline)):
            return  # the failures propagate through the drain, which checks the end again
        if pipeline.n_services_live and pipeline.n_children_done + pipeline.n_services_live == len(children):
            # only services are left: their pipeline is over, shut them down
            for path in children:
                child = run.nodes[path]
                if child.kind == "service" and child.status not in S.DONE and child.status != S.STOPPING:
                    self.stop(run, child, "PipelineEnded")
            return
        if pipeline.n_children_done < len(children):
            return
        if (pipeline.kind == "matrix" and not pipeline.stopping and not pipeline.early_outcome
                and pipeline.status == S.RUNNING and self.tuned.next_iteration(run, pipeline)):
            return
        if pipeline.kind == "schedule":
            if pipeline.stopping:
                self.step.finish(run, pipeline, S.STOPPED)
            elif pipeline.exhausted:
                # child failures do not end or fail a schedule (POLYFLOW §8.1)
                self.step.finish(run, pipeline, S.SUCCEEDED, message=f"{len(children)} scheduled run(s)")
            return
        if pipeline.early_outcome:
            status = pipeline.early_outcome
        elif pipeline.stopping:
            status = S.STOPPED
        elif pipeline.n_children_failed:
            status = S.FAILED
        elif children and pipeline.n_children_stopped == len(children):
            status = S.STOPPED
        else:
            status = S.SUCCEEDED
        message = pipeline.message if pipeline.early_outcome else None
        if status == S.FAILED and not message:
            message = f"{pipeline.n_children_failed} op(s) failed"
        reason = None
        outputs = None
        spec = self.step.index[run.run_id].specs[pipeline.path]
        if pipeline.kind == "matrix":
            # fan-in: downstream ops read the children's outputs as lists (children order)
            outputs = fan_in_outputs(pipeline, spec.component.outputs, run.nodes.get)
        elif status == S.SUCCEEDED and spec.component.outputs:
            try:
                outputs = dag_outputs(run.run_id, pipeline, spec, run.nodes.get, run.context)
            except ResolveError as exc:
                status, reason, message = S.FAILED, "InvalidOutputs", str(exc)
        self.step.finish(run, pipeline, status, message=message, reason=reason, outputs=outputs)

    def fail_service_waiters(self, run: RunState, pipeline: Node) -> bool:
        """A DAG where nothing but services can still move, and some op waits for a service to
        end, would wait forever: a service runs until every other op of its DAG is done. Fail
        those ops with a message naming the service and the fix (an event edge). An op held for
        approval, or any op still in progress, means the DAG can move: nothing is decided."""
        index = self.step.index[run.run_id]
        blocked: list[tuple[Node, list[str]]] = []
        for path in pipeline.children or ():
            child = run.nodes[path]
            if child.status in S.DONE or child.kind == "service":
                continue
            if child.status != S.CREATED or child.ready:
                return False
            spec = index.specs[path]
            for up in spec.event_edges:
                target = run.nodes.get(child_path(pipeline.path, up))
                if target is not None and target.status not in S.DONE:
                    return False  # may still start on that op's status
            waits = []
            for up in spec.upstream:
                target = run.nodes.get(child_path(pipeline.path, up))
                if target is not None and target.kind == "service" and target.status not in S.DONE:
                    waits.append(up)
            if waits:
                blocked.append((child, waits))
        for child, waits in blocked:
            names = ", ".join(repr(w) for w in waits)
            self.step.finish(run, child, S.FAILED, reason="WaitsForService", message=(
                f"op {child.name!r} waits for service {names} to end, but a service runs until every other op of "
                f"its DAG is done, so it would wait forever; to start once the service runs use "
                f"`events: [{{ref: ops.{waits[0]}, kinds: [run_status_running]}}]`"))
        return bool(blocked)

    def stop(self, run: RunState, node: Node, reason: str, *, early: bool = False) -> None:
        if node.status in S.DONE:
            return
        if node.kind in PIPELINE_KINDS:
            if node.status in S.SAFE_STOP:
                self.step.finish(run, node, S.STOPPED, reason=reason)
                return
            node.stopping = True
            if node.kind == "schedule":
                node.exhausted = True
                node.next_at = None
                self.step.cancel_timer(run, f"tick:{node.path}#{len(node.children or ())}")
            if not early:
                node.reason = reason
            node.status = S.STOPPING
            self.step.emit_status(run, node)
            for path in node.children or ():
                self.stop(run, run.nodes[path], reason)
            self.check_pipeline_end(run, node)
            return
        if node.status in S.SAFE_STOP or (node.status == S.RETRYING and f"retry:{node.path}#{node.attempt}" in run.timers):
            self.step.finish(run, node, S.STOPPED, reason=reason)
            return
        if node.status == S.STOPPING:
            return
        node.status = S.STOPPING
        node.reason = reason
        self.step.emit_status(run, node)
        self.step.out.append(StopOp(run.run_id, node.path, node.attempt, attempt_key(run, node), reason=reason))

    # ------------------------------------------------------------------ propagation

    def fire_hooks(self, run: RunState, node: Node) -> None:
        """POLYFLOW §8.3: a finished op's hooks become separate runs (StartHook commands; a
        schedule's hooks fire per tick, a matrix's once for the matrix: its children carry none;
        a hook run fires none)."""
        if node.kind == "schedule" or run.hook_of is not None:
            return
        index = self.step.index[run.run_id]
        spec = index.specs[node.path]
        if spec.hooks:
            self.step.out.extend(hooks.fire(run, node, spec, fields.resolver(run, index, node), self.step.now))

    def drain(self) -> None:
        """Propagate terminal statuses: downstream triggers, parent counters, pipeline ends."""
        finished = self.step.finished
        indexes = self.step.index
        head = 0
        while head < len(finished):
            run, node = finished[head]
            head += 1
            index = indexes[run.run_id]
            if run.hook_of is None and (
                    index.spec(node) if node.suggestion is not None else index.specs[node.path]).hooks:
                self.fire_hooks(run, node)
            if node.parent is None:
                self.end_run(run, node)
                continue
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
            rules_of = index.early_stopping
            while ancestor is not None:
                if bad:
                    ancestor.desc_bad += 1
                rules = rules_of.get(ancestor.path)
                if rules is None or rules:  # most pipelines have none: known after the first call
                    self.check_early_stopping(run, index, ancestor, node)
                ancestor = run.nodes[ancestor.parent] if ancestor.parent is not None else None
            if not parent.stopping:
                for down_path in index.downstream.get(node.path, ()):
                    self.ops.upstream_done(run, index, run.nodes[down_path], node)
            if node.kind not in PIPELINE_KINDS:
                # nothing reads a finished op's spec again but a resume, which derives it anew
                # as a restore does: a matrix child's spec is its own copy, ~0.5 KB
                index.specs.pop(node.path, None)
            if parent.waiting:
                self.ops.admit(run, parent)
            if parent.kind == "schedule" and parent.next_at is None and parent.status == S.RUNNING:
                self.schedule_ticks(run, parent)
            if parent.n_services_live or parent.n_children_done >= len(parent.children or ()):
                # without services, a pipeline with children still to finish cannot end
                self.check_pipeline_end(run, parent)
        finished.clear()

    def end_run(self, run: RunState, root: Node) -> None:
        for timer_id in list(run.timers):
            self.step.cancel_timer(run, timer_id)
        run.done = True
        self.step.out.append(PipelineDone(run.run_id, root.status, self.step.now, root.message, key=done_key(run)))
