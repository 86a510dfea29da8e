"""Intermediate metrics of pods, read from their logs (the Kubernetes side of ``$FLOWD_METRICS``).

A pod must not hold Kafka credentials, so it reports metric points the way it reports
everything else, through the kubelet: it prints each point as a log line with a fixed prefix,
``FLOWD_METRIC {"step": 3, "loss": 0.41}`` (the prefix is in ``$FLOWD_METRICS_PREFIX``). The
executor that owns the pod follows its main container's log through the pod log API
(flowd.k8s.podlogs.PodLog: reconnects resume by timestamp without repeating a line), keeps
the prefixed lines whose rest is a JSON object, and sends them as ``running`` reports with
``metrics`` — the record the local executor sends for ``$FLOWD_METRICS`` lines — so the engine,
the event log and the early-stopping policies are the same on both.

Which pods are followed (``metrics_from_logs``): ``matrix`` (default) the children of a matrix,
the only ops an early-stopping policy acts on; ``all``; ``off``. At most ``max_log_followers``
at once (one streamed request each): a pod over the bound is not followed, and
``flowd_k8s_log_followers_refused_total`` counts it. When a followed pod ends, its terminal
report waits until its log is read to the end (``drain`` seconds of stream, then one plain
read; at most ``drain_timeout``), so the last points arrive before ``succeeded``. After a
restart the log is read again from the start; the engine drops points whose ``step`` is not
greater than the last it has, so nothing is counted twice (points without ``step`` are).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc
import structlog

from flowd.k8s import naming as N
from flowd.k8s.client import Kube
from flowd.k8s.podlogs import PodLog

__all__ = ["MetricFollowers", "PREFIX", "parse_metric_line"]

log = structlog.get_logger("flowd.k8s")

PREFIX = N.METRICS_PREFIX
FLUSH_SECONDS = 0.25  # as often as the local executor reads $FLOWD_METRICS
MAX_BATCH = 256  # points per report (the engine keeps at most its own per-report bound)
MAX_LINE = 1 << 16


def parse_metric_line(line: str, prefix: str = PREFIX) -> dict[str, Any] | None:
    """The point a log line reports, or None (not a metric line, or not a JSON object)."""
    if not line.startswith(prefix) or len(line) > MAX_LINE:
        return None
    try:
        point = json.loads(line[len(prefix):])
    except ValueError:
        return None
    return point if isinstance(point, dict) else None


class MetricFollowers:
    """The log followers of one executor. ``send(key, points)`` reports points of an attempt;
    the executor asks :meth:`wants` / :meth:`start` when a pod runs and :meth:`finish` when it
    ended (then ``on_drained`` is called once its log is read to the end)."""

    def __init__(self, *, send: Callable[[str, list[dict[str, Any]]], None], mode: str = "matrix",
                 limit: int = 256, prefix: str = PREFIX, drain: float = 1.0, drain_timeout: float = 10.0,
                 poll: float = 0.2, on_refused: Callable[[], None] | None = None) -> None:
        if mode not in ("matrix", "all", "off"):
            raise ValueError(f"metrics_from_logs must be matrix, all or off, not {mode!r}")
        self.send = send
        self.mode = mode
        self.limit = limit
        self.prefix = prefix
        self.drain = drain
        self.drain_timeout = drain_timeout
        self.poll = poll
        self.on_refused = on_refused
        self._ended: dict[str, anyio.Event] = {}
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._then: dict[str, Callable[[], None]] = {}
        self.refused: set[str] = set()

    def __len__(self) -> int:
        return len(self._ended)

    def following(self, key: str) -> bool:
        return key in self._ended

    def wants(self, *, key: str, path: str, resource: str) -> bool:
        if self.mode == "off" or resource != "pods" or key in self._ended or key in self.refused:
            return False
        if self.mode == "matrix" and "[" not in path:
            return False
        if len(self._ended) >= self.limit:
            self.refused.add(key)
            if self.on_refused is not None:
                self.on_refused()
            log.warning("log_follower_refused", key=key, limit=self.limit, setting="max_log_followers")
            return False
        return True

    def start(self, tg: anyio.abc.TaskGroup, kube: Kube, *, key: str, namespace: str, name: str, container: str) -> None:
        self._ended[key] = anyio.Event()
        self._scopes[key] = anyio.CancelScope()
        tg.start_soon(self._run, kube, key, namespace, name, container, name=f"k8s-metrics-{key}")

    def finish(self, key: str, on_drained: Callable[[], None]) -> bool:
        """The pod ended: read its log to the end, then call ``on_drained`` (True), or False
        when it is not followed (call nothing)."""
        ended = self._ended.get(key)
        if ended is None:
            return False
        if key not in self._then:
            self._then[key] = on_drained
            ended.set()
            self._scopes[key].deadline = anyio.current_time() + self.drain_timeout
        return True

    def cancel(self, key: str) -> None:
        """Stop following without draining (the attempt is gone or stopped)."""
        self._then.pop(key, None)
        scope = self._scopes.get(key)
        if scope is not None:
            scope.cancel()

    async def _run(self, kube: Kube, key: str, namespace: str, name: str, container: str) -> None:
        ended = self._ended[key]
        batch: list[dict[str, Any]] = []

        def flush() -> None:
            if batch:
                self.send(key, list(batch))
                batch.clear()

        def emit(line: str) -> None:
            point = parse_metric_line(line, self.prefix)
            if point is not None:
                batch.append(point)
                if len(batch) >= MAX_BATCH:
                    flush()

        async def done() -> bool:
            return ended.is_set()

        async def flusher() -> None:
            while True:
                await anyio.sleep(FLUSH_SECONDS)
                flush()

        podlog = PodLog(kube, namespace=namespace, name=name, container=container)
        try:
            with self._scopes[key]:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(flusher)
                    await podlog.follow(emit, done, poll=self.poll, drain=self.drain)
                    tg.cancel_scope.cancel()
        except Exception as exc:  # noqa: BLE001 - a log that cannot be read must not stop the executor
            log.warning("metric_log_failed", key=key, pod=f"{namespace}/{name}", error=repr(exc))
        finally:
            then = self._then.pop(key, None)
            if then is not None:
                flush()
            self._ended.pop(key, None)
            self._scopes.pop(key, None)
            if then is not None:
                then()
