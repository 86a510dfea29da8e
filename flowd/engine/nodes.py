"""Growing a run's tree: creating a node (with its counters up the ancestors and its status
event), deriving a pipeline node's edges and limit into the run's index, and the kind and
initial approval a node starts with."""

from __future__ import annotations

from typing import Any

from flowd.engine import fields
from flowd.engine.index import Index
from flowd.engine.state import PIPELINE_KINDS, Node, RunState, child_path
from flowd.engine.step import Step
from flowd.engine.templates import TemplateError, is_template, truth
from flowd.spec.compiled import Op


def index_node(run: RunState, index: Index, node: Node) -> None:
    """Derive a pipeline node's edges and admission limit from its spec."""
    spec = index.specs[node.path]
    if node.kind == "dag":
        dag = spec.component.dag
        index.limits[node.path] = fields.limit(run, index, node, dag.concurrency if dag is not None else None)
        if dag is not None:
            for op in dag.ops:
                me = child_path(node.path, op.name)
                for up in op.upstream:
                    index.downstream.setdefault(child_path(node.path, up), []).append(me)
                for up, statuses in op.event_edges.items():
                    index.event_down.setdefault(child_path(node.path, up), []).append((me, statuses))
    elif node.kind == "matrix":
        index.limits[node.path] = fields.limit(run, index, node,
                                               spec.matrix.concurrency if spec.matrix is not None else None)
    else:
        index.limits[node.path] = None


def new_node(
    step: Step, run: RunState, index: Index, path: str, parent: str | None, name: str, pos: int,
    kind: str, *, suggestion: dict[str, Any] | None = None, approved: bool = True, n_up: int = 0,
) -> Node:
    node = Node(
        path=path, parent=parent, name=name, index=pos, kind=kind, created_at=step.now,
        approved=approved, n_up=n_up, suggestion=suggestion,
    )
    run.nodes[path] = node
    if kind in PIPELINE_KINDS:
        index_node(run, index, node)
        node.children = []
        node.waiting = []
    if parent is not None:
        parent_node = anc = run.nodes[parent]
        parent_node.children.append(path)  # type: ignore[union-attr]
        if kind == "service":
            parent_node.n_services_live += 1
        while True:  # the parent, then each ancestor up to the root
            anc.desc_total += 1
            if anc.parent is None:
                break
            anc = run.nodes[anc.parent]
    step.emit_status(run, node)
    return node


def kind_of(op: Op, *, root: bool = False) -> str:
    if root and op.schedule is not None:
        return "schedule"
    return "matrix" if op.matrix is not None else op.component.kind


def approved_up_front(op: Op) -> bool:
    """Is the op approved before anything is rendered? Only a literal true. A templated
    ``isApproved`` starts unapproved and is decided when the op is compiled: whatever it renders
    to, the gate is never bypassed (only a truth word that means true lifts it)."""
    value = op.is_approved
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and not is_template(value):
        try:
            return truth(value, what="isApproved")
        except TemplateError:
            return False
    return False
