"""The graph of a daemon's run from its status-view record (``RunSummary`` on the ``status``
topic: ``kinds``, ``edges`` and ``ops``), for ``flowd ui --daemon`` and ``flowd graph RUN
--daemon``: every op the daemon drew from the compiled pipeline, with the statuses it holds.
A summary without ``kinds`` (an older daemon's, or a run over the summary's op bound) is drawn
from the op paths alone."""

from __future__ import annotations

import re
from typing import Any

from flowd.dagview.model import Graph, GraphNode

__all__ = ["graph_of_summary"]

_INDEX = re.compile(r"\[\d+\]$")


def _parent(path: str) -> str:
    if _INDEX.search(path):
        return _INDEX.sub("", path)
    return path.rsplit("/", 1)[0] if "/" in path else ""


def graph_of_summary(summary: Any) -> Graph:
    nodes: dict[str, GraphNode] = {}
    kinds = summary.kinds or {p: "job" for p in sorted(summary.ops, key=lambda p: (p.count("/"), p)) if p}
    for path, kind in kinds.items():
        op = summary.ops.get(path)
        nodes[path] = GraphNode(path=path, name=path.rsplit("/", 1)[-1], kind=kind, parent=_parent(path),
                                status=op.status if op else None, attempts=op.attempt if op else 0,
                                message=op.message if op else None, outputs=op.outputs if op else None,
                                params=op.params if op else None, metrics=op.metrics if op else None,
                                started_at=op.started_at if op else None, finished_at=op.finished_at if op else None)
    for path, node in nodes.items():
        if node.parent in nodes:
            up = nodes[node.parent]
            up.children.append(path)
            if not summary.kinds:  # no kinds from the daemon: a parent's kind is told by its children
                up.kind = "matrix" if _INDEX.search(path) else "dag"
    edges = [(e[0], e[1]) for e in summary.edges if e[0] in nodes and e[1] in nodes]
    return Graph(pipeline=summary.pipeline, status=summary.status, nodes=nodes, edges=edges)
