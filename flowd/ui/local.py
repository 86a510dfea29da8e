"""The UI's backend over a local state dir: the runs of ``flowd run`` (and of daemons with the
local executor, whose attempt logs use the same layout)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from flowd.dagview import build_graph, layout
from flowd.runtime.history import list_runs, load_run, parse_since, summary_json
from flowd.runtime.logs import attempt_logs, pod_location, tail_lines
from flowd.runtime.store import SnapshotStore, key_of

__all__ = ["LocalBackend", "attempt_text"]

LOG_LINES = 2000


def attempt_text(run_dir: Path, *, op: str, attempt: int | None, stream: str) -> str:
    """The last ``LOG_LINES`` lines of an op's attempt (the latest unless ``attempt``), per
    stream, from a run dir's attempt dirs ("" when there are none)."""
    found = [a for a in attempt_logs(run_dir, op=op, attempt=attempt) if a.path == op]
    if not found:
        return ""
    item = found[-1]
    streams = ("stdout", "stderr") if stream == "all" else (stream,)
    parts = []
    for name in streams:
        lines = tail_lines(item.file(name), LOG_LINES, max_bytes=1 << 20)
        if lines:
            parts.append(f"--- {name} (attempt {item.attempt}) ---\n" + "\n".join(lines))
    return "\n".join(parts)


class LocalBackend:
    kind = "local"

    def __init__(self, state_dir: Path) -> None:
        self.store = SnapshotStore(state_dir)

    @property
    def where(self) -> str:
        return str(self.store.root)

    def runs(self, *, status: str | None, pipeline: str | None, since: str | None) -> list[dict[str, Any]]:
        cutoff = parse_since(since) if since else None
        return [summary_json(s) for s in list_runs(self.store, status=status, pipeline=pipeline, since=cutoff)]

    def run(self, run_ref: str, *, collapsed: frozenset[str]) -> dict[str, Any] | None:
        run_id = self.store.resolve(run_ref)
        loaded = load_run(self.store, run_id) if run_id else None
        if loaded is None or run_id is None:
            return None
        _, engine, view = loaded
        graph = build_graph(engine.runs[run_id].pipeline, view)
        attempts: dict[str, list[int]] = {}
        if pod_location(self.store.run_dir(run_id)) is not None:  # ops ran as pods: each attempt had one
            attempts = {path: list(range(1, op.attempts + 1)) for path, op in view.ops.items() if op.attempts}
        for item in attempt_logs(self.store.run_dir(run_id)):
            attempts.setdefault(item.path, []).append(item.attempt)
        summary = next((s for s in self.runs(status=None, pipeline=None, since=None) if s["run_id"] == run_id), None)
        return {
            "run": summary or {"run_id": run_id, "pipeline": view.pipeline, "status": view.status},
            "graph": graph.to_json(),
            "layout": layout(graph, collapsed=collapsed),
            "log_attempts": attempts,
        }

    def logs(self, run_ref: str, *, op: str, attempt: int | None, stream: str) -> str | None:
        run_id = self.store.resolve(run_ref)
        if run_id is None:
            return None
        pods = pod_location(self.store.run_dir(run_id))
        if pods is not None:  # a `flowd run --executor k8s` run: its logs are its pods'
            from flowd.ui.pods import pod_log_text

            return pod_log_text(pods, run_id=run_id, op=op, attempt=attempt)
        return attempt_text(self.store.run_dir(run_id), op=op, attempt=attempt, stream=stream)

    # ------------------------------------------------------------------------------ actions

    def stop(self, run_ref: str) -> tuple[int, str]:
        run_id = self.store.resolve(run_ref)
        if run_id is None or not self.store.is_active(run_id):
            return 409, "the run is not being run by a flowd process"
        lock = self.store.root / "runs" / f"{key_of(run_id)}.lock"
        try:
            pid = int(lock.read_text().strip())
            os.kill(pid, signal.SIGTERM)  # flowd stops the pipeline as on Ctrl-C
        except (OSError, ValueError) as exc:
            return 500, f"cannot signal the flowd process: {exc}"
        return 202, f"stop requested for {run_id}"

    def resume(self, run_ref: str) -> tuple[int, str]:
        run_id = self.store.resolve(run_ref)
        if run_id is None:
            return 404, "no such run"
        if self.store.is_active(run_id):
            return 409, "the run is going on"
        log = self.store.run_dir(run_id) / "resume.log"
        with log.open("ab") as out:
            subprocess.Popen([sys.executable, "-m", "flowd", "resume", run_id, "--state-dir", str(self.store.root)],
                             stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
        return 202, f"resume started for {run_id} (output in {log})"

    def approve(self, run_ref: str, op: str) -> tuple[int, str]:
        return 501, "a local run takes approvals in advance: flowd run FILE --approve OP"
