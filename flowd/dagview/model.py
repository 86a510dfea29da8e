"""The graph of a pipeline: one node per op (nested DAGs as groups of nodes, matrix children as
children of their matrix node), one edge per dependency inside a DAG, and, given a run's view,
each node's status, attempts, params, outputs and message."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from flowd.engine import RunView
from flowd.spec.compiled import Op

__all__ = ["Graph", "GraphNode", "build_graph"]


@dataclass
class GraphNode:
    path: str
    name: str
    # job | service | dag | matrix | tfjob ...
    kind: str
    # path of the enclosing DAG or matrix node ("" for top-level ops)
    parent: str
    status: str | None = None
    attempts: int = 0
    message: str | None = None
    params: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = None
    # last value of each intermediate metric reported
    metrics: dict[str, float] | None = None
    started_at: float | None = None
    finished_at: float | None = None
    # nested DAG / matrix: paths of the nodes directly inside it
    children: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("path", "name", "kind", "parent", "status", "attempts", "message",
                                              "params", "outputs", "metrics", "started_at", "finished_at", "children")}


@dataclass
class Graph:
    pipeline: str
    status: str | None
    nodes: dict[str, GraphNode]
    # (upstream path, downstream path), both in the same DAG
    edges: list[tuple[str, str]]

    def to_json(self) -> dict[str, Any]:
        return {"pipeline": self.pipeline, "status": self.status,
                "nodes": [n.to_json() for n in self.nodes.values()], "edges": [list(e) for e in self.edges]}


def _child(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def build_graph(pipeline: Op, view: RunView | None = None) -> Graph:
    """The graph of ``pipeline`` (a compiled root op); with ``view``, matrix children that exist
    in the run and every node's state."""
    nodes: dict[str, GraphNode] = {}
    edges: list[tuple[str, str]] = []
    ops = view.ops if view is not None else {}

    def add_op(op: Op, path: str, parent: str) -> None:
        kind = "matrix" if op.matrix is not None else op.component.kind
        node = GraphNode(path=path, name=op.name, kind=kind, parent=parent)
        nodes[path] = node
        if parent in nodes:
            nodes[parent].children.append(path)
        if op.matrix is not None:
            index = re.compile(re.escape(path) + r"\[(\d+)\]$")
            for child_path in sorted((p for p in ops if index.match(p)), key=lambda p: int(index.match(p)[1])):  # type: ignore[index]
                add_body(op, child_path, path, name=child_path.rsplit("/", 1)[-1])
        elif op.component.dag is not None:
            add_dag(op, path)

    def add_body(op: Op, path: str, parent: str, *, name: str) -> None:
        kind = op.component.kind
        nodes[path] = GraphNode(path=path, name=name, kind=kind, parent=parent)
        nodes[parent].children.append(path)
        if op.component.dag is not None:
            add_dag(op, path)

    def add_dag(op: Op, path: str) -> None:
        assert op.component.dag is not None
        names = {o.name for o in op.component.dag.ops}
        for inner in op.component.dag.ops:
            add_op(inner, _child(path, inner.name), path)
        for inner in op.component.dag.ops:
            for up in inner.upstream:
                if up in names:
                    edges.append((_child(path, up), _child(path, inner.name)))

    if pipeline.component.dag is not None and pipeline.matrix is None:
        add_dag(pipeline, "")
    else:  # a single-op file (or a matrix at the root): one node under the pipeline's name
        add_op(pipeline, pipeline.name, "")
    for path, node in nodes.items():
        op_view = ops.get(path)
        if op_view is not None:
            node.status, node.attempts, node.message = op_view.status, op_view.attempts, op_view.message
            node.params, node.outputs, node.metrics = op_view.params, op_view.outputs, op_view.metrics
            node.started_at, node.finished_at = op_view.started_at, op_view.finished_at
    return Graph(pipeline=pipeline.name, status=view.status if view is not None else None, nodes=nodes, edges=edges)
