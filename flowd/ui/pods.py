"""An op's log read from its pod through the pod log API, for the UI's log pane: runs of
``flowd run --executor k8s`` (the run dir's ``pods.json`` says where) and daemons' runs on
Kubernetes (``flowd ui --daemon --kubeconfig``)."""

from __future__ import annotations

import io
from typing import Any

import anyio

__all__ = ["pod_log_text"]


def pod_log_text(where: dict[str, Any], *, run_id: str, op: str, attempt: int | None) -> str:
    """``where``: ``{kubeconfig, context, namespace}``. The pane's text, or why there is none."""
    from flowd.k8s.podlogs import PodLogError, print_run_logs

    out = io.StringIO()
    try:
        anyio.run(lambda: print_run_logs(kubeconfig=where.get("kubeconfig"), context=where.get("context"),
                                         namespace=where.get("namespace") or "default", run_id=run_id,
                                         op=op or None, attempt=attempt, follow=False, out=out))
    except PodLogError as exc:
        return f"(no pod log: {exc})"
    return out.getvalue()
