"""The UI's backend over the daemons' Kafka topics (``flowd ui --daemon``), so the UI can run
beside the daemons: runs and statuses from the compacted ``status`` topic (one record per run),
commands published to ``runs``. The graph is drawn from the op paths the summary holds (nested
DAGs and matrices by path); the view carries no dependency edges, so ops of one DAG stand in one
column. Logs of daemon runs are read with ``flowd logs RUN OP --k8s``, not here."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

import anyio

from flowd.dagview import layout
from flowd.dagview.model import Graph, GraphNode
from flowd.runtime.history import _matches, parse_since

__all__ = ["KafkaBackend"]

_INDEX = re.compile(r"\[\d+\]$")


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat()


def _parent(path: str) -> str:
    if _INDEX.search(path):
        return _INDEX.sub("", path)
    return path.rsplit("/", 1)[0] if "/" in path else ""


class KafkaBackend:
    kind = "kafka"

    def __init__(self, config: Any) -> None:
        self.config = config

    @property
    def where(self) -> str:
        return f"{self.config.brokers} ({self.config.prefix}*)"

    def _summaries(self, run_id: str | None = None) -> dict[str, Any]:
        from flowd.daemon.client import run_summaries

        return anyio.run(lambda: run_summaries(self.config, run_id=run_id))

    @staticmethod
    def _json(s: Any) -> dict[str, Any]:
        return {"run_id": s.run_id, "pipeline": s.pipeline, "status": s.status, "file": "", "params": {},
                "created_at": _iso(s.started_at), "started_at": _iso(s.started_at), "finished_at": _iso(s.finished_at),
                "message": s.message, "active": s.finished_at is None, "counts": s.counts}

    def runs(self, *, status: str | None, pipeline: str | None, since: str | None) -> list[dict[str, Any]]:
        cutoff = parse_since(since) if since else None
        out = sorted(self._summaries().values(), key=lambda s: s.started_at or s.time, reverse=True)
        return [self._json(s) for s in out
                if (not status or s.status in status.split(",")) and (not pipeline or _matches(pipeline, s.pipeline))
                and (cutoff is None or (s.started_at or s.time) >= cutoff)]

    def run(self, run_id: str, *, collapsed: frozenset[str]) -> dict[str, Any] | None:
        summary = self._summaries(run_id).get(run_id)
        if summary is None:
            return None
        nodes: dict[str, GraphNode] = {}
        for path in sorted(summary.ops, key=lambda p: (p.count("/"), p)):
            op = summary.ops[path]
            parent = _parent(path)
            kind = "job"
            nodes[path] = GraphNode(path=path, name=path.rsplit("/", 1)[-1], kind=kind, parent=parent, status=op.status,
                                    attempts=op.attempt, message=op.message, outputs=op.outputs)
        for path, node in nodes.items():
            if node.parent in nodes:
                up = nodes[node.parent]
                up.children.append(path)
                up.kind = "matrix" if _INDEX.search(path) else "dag"
        graph = Graph(pipeline=summary.pipeline, status=summary.status, nodes=nodes, edges=[])
        return {"run": self._json(summary), "graph": graph.to_json(), "layout": layout(graph, collapsed=collapsed),
                "log_attempts": {}}

    def logs(self, run_id: str, *, op: str, attempt: int | None, stream: str) -> str | None:
        return f"logs of daemon runs: flowd logs {run_id} {op} --k8s"

    def _publish(self, message: Any) -> None:
        from flowd.daemon.client import publish

        anyio.run(lambda: publish(self.config, self.config.topics.runs, message.run_id, message))

    def stop(self, run_id: str) -> tuple[int, str]:
        from flowd.daemon import wire

        self._publish(wire.StopCommand(run_id=run_id, time=time.time(), reason="stopped from flowd ui"))
        return 202, f"stop requested for {run_id}"

    def resume(self, run_id: str) -> tuple[int, str]:
        from flowd.daemon import wire

        self._publish(wire.ResumeCommand(run_id=run_id, time=time.time()))
        return 202, f"resume requested for {run_id}"

    def approve(self, run_id: str, op: str) -> tuple[int, str]:
        from flowd.daemon import wire

        self._publish(wire.ApproveCommand(run_id=run_id, path=op, time=time.time()))
        return 202, f"approval of {op} sent for {run_id}"
