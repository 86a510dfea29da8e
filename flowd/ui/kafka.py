"""The UI's backend over the daemons' Kafka topics (``flowd ui --daemon``), so the UI can run
beside the daemons: runs and statuses from the compacted ``status`` topic (one record per run),
commands published to ``runs``. The graph is the one the daemon drew from the run's compiled
pipeline into the summary (``kinds``, ``edges``: every op, created yet or not, and its
dependencies); a summary without it (written by an older daemon, or a run over
``OPS_IN_SUMMARY`` ops) is drawn from the op paths alone. Op logs: through the pod log API when
the UI is given a kube config (``k8s``), from the daemon's state dir when given one (the local
executor's attempt dirs), else the page says where they are."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from flowd.dagview import layout
from flowd.dagview.summary import graph_of_summary
from flowd.runtime.history import parse_since, pipeline_matches

__all__ = ["KafkaBackend"]


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat()


class KafkaBackend:
    kind = "kafka"
    approves_live = True  # ApproveCommand reaches a running run

    def __init__(self, config: Any, *, state_dir: Path | None = None, k8s: dict[str, Any] | None = None) -> None:
        """``state_dir``: the state dir of daemons with the local executor (their op logs);
        ``k8s``: ``{kubeconfig, context, namespace}`` to read op logs from the run's pods."""
        self.config = config
        self.state_dir = state_dir
        self.k8s = k8s

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
                if (not status or s.status in status.split(",")) and (not pipeline or pipeline_matches(pipeline, s.pipeline))
                and (cutoff is None or (s.started_at or s.time) >= cutoff)]

    def run(self, run_id: str, *, collapsed: frozenset[str]) -> dict[str, Any] | None:
        summary = self._summaries(run_id).get(run_id)
        if summary is None:
            return None
        graph = graph_of_summary(summary)
        return {"run": self._json(summary), "graph": graph.to_json(), "layout": layout(graph, collapsed=collapsed),
                "log_attempts": self._log_attempts(run_id, summary)}

    def _log_attempts(self, run_id: str, summary: Any) -> dict[str, list[int]]:
        if self.state_dir is not None and self.k8s is None:
            from flowd.runtime.logs import attempt_logs

            found: dict[str, list[int]] = {}
            for item in attempt_logs(self.state_dir / "runs" / run_id):
                found.setdefault(item.path, []).append(item.attempt)
            return found
        return {path: list(range(1, op.attempt + 1)) for path, op in summary.ops.items() if op.attempt}

    def logs(self, run_id: str, *, op: str, attempt: int | None, stream: str) -> str | None:
        if self.k8s is not None:
            from flowd.ui.pods import pod_log_text

            return pod_log_text(self.k8s, run_id=run_id, op=op, attempt=attempt)
        if self.state_dir is not None:
            from flowd.ui.local import attempt_text

            return attempt_text(self.state_dir / "runs" / run_id, op=op, attempt=attempt, stream=stream)
        return (f"This UI reads Kafka only, and a daemon's op logs are not on Kafka. Read them with\n"
                f"  flowd logs {run_id} {op} --k8s --namespace NS     (daemons with the k8s executor)\n"
                f"or start flowd ui --daemon with --kubeconfig FILE --namespace NS (pods) or --state-dir DIR "
                f"(the state dir of daemons with the local executor) to see them here.")

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
