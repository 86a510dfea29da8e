"""Runs that end and start again: ``Resume`` of a finished, unsuccessful run, and the
quarantine of a run an engine error may have left inconsistent. Functions over one run, called
by :class:`flowd.engine.core.Engine`."""

from __future__ import annotations

from flowd.engine import status as S
from flowd.engine.messages import Event, PipelineDone, StopOp
from flowd.engine.pipelines import Pipelines
from flowd.engine.state import PIPELINE_KINDS, Node, RunState, attempt_key, child_path, done_key
from flowd.engine.step import Step
from flowd.engine.triggers import START, decide
from flowd.spec.compiled import TRIGGER_POLICIES


def resume(pipelines: Pipelines, run: RunState) -> None:
    """Reset what did not succeed and run it again (see ``Resume``)."""
    step = pipelines.step
    root = run.nodes[""]
    if not run.done or root.status == S.SUCCEEDED or root.kind == "schedule":
        return
    run.epoch += 1
    index = step.index[run.run_id]
    keep = (S.SUCCEEDED, S.SKIPPED)
    reset: list[Node] = []
    # a pipeline that succeeded keeps all of its children as they are, even the ones an
    # early-stopping rule or policy stopped (nothing would ever start them again)
    kept: set[str] = set()
    for node in run.nodes.values():
        node.emitted = node.repeats = 0  # a new epoch: a new key space (keys end in @epoch)
        node.holds_slot = False
        if node.kind in PIPELINE_KINDS:
            node.active = 0
            node.waiting = []
            node.waiting_head = 0
            node.stopping = False
            node.early_outcome = None
        if node.status in keep or (node.parent is not None and node.parent in kept):
            if node.kind in PIPELINE_KINDS:
                kept.add(node.path)
            continue
        node.finished_at = None
        node.message = "resumed"
        node.reason = None
        node.ready = False
        if node.kind in PIPELINE_KINDS and node.started_at is not None:
            node.status = S.RUNNING  # started before: its children are resumed one by one
        else:
            node.status = S.CREATED
            node.params = None
            node.outputs = None
            reset.append(node)
        step.emit_status(run, node)
    # recount everything derived from statuses
    for node in run.nodes.values():
        if node.kind in PIPELINE_KINDS:
            node.n_children_done = node.n_children_failed = node.n_children_stopped = 0
            node.n_services_live = node.desc_total = node.desc_bad = 0
    for node in run.nodes.values():
        if node.parent is None:
            continue
        parent = run.nodes[node.parent]
        if node.status in S.DONE:
            parent.n_children_done += 1
        elif node.kind == "service":
            parent.n_services_live += 1
        if node.status == S.RUNNING and node.kind in PIPELINE_KINDS:
            node.holds_slot = True
            parent.active += 1
        ancestor: Node | None = parent
        while ancestor is not None:
            ancestor.desc_total += 1
            ancestor = run.nodes[ancestor.parent] if ancestor.parent is not None else None
        node.n_done = node.n_ok = node.n_bad = 0
        spec = index.specs[node.path]
        for up in spec.upstream:
            upstream = run.nodes.get(child_path(parent.path, up))
            if upstream is not None and upstream.status in S.DONE:
                node.n_done += 1
                if upstream.status == S.SUCCEEDED or (upstream.status == S.SKIPPED and not spec.skip_on_upstream_skip):
                    node.n_ok += 1
    run.done = False
    # trigger what can run now, parents before children
    for node in reset:
        if node.status != S.CREATED:
            continue
        owner = run.nodes.get(node.parent) if node.parent is not None else None
        if owner is not None and owner.status != S.RUNNING:
            continue  # its pipeline starts it when it starts
        if node.n_up == 0:
            pipelines.ops.ready(run, node)
            continue
        policy = index.specs[node.path].trigger
        if policy in TRIGGER_POLICIES and decide(policy, node.n_up, node.n_done, node.n_ok, node.n_bad) == START:
            pipelines.ops.ready(run, node)
    if root.status == S.RUNNING:
        pipelines.check_pipeline_end(run, root)

def quarantine(step: Step, run: RunState, event: Event, exc: Exception) -> None:
    """End a run whose state an engine error may have left inconsistent: stop what it has
    running, fail it with the error, and touch no other run. Deterministic like everything
    else, so a replay reaches the same verdict."""
    step.discard_out()
    step.finished = []
    for node in run.nodes.values():
        if node.kind not in PIPELINE_KINDS and node.attempt and node.status in S.ACTIVE:
            step.out.append(StopOp(run.run_id, node.path, node.attempt, attempt_key(run, node), reason="InternalError"))
    for timer_id in list(run.timers):
        step.cancel_timer(run, timer_id)
    root = run.nodes[""]
    root.status = S.FAILED
    root.finished_at = step.now
    root.reason = "InternalError"
    root.message = f"flowd engine error while handling {type(event).__name__}: {type(exc).__name__}: {exc}"
    run.done = True
    step.emit_status(run, root)
    step.out.append(PipelineDone(run.run_id, root.status, step.now, root.message, key=done_key(run)))
