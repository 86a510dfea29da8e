"""Prometheus metrics of the Kubernetes executor. Labels are bounded (status, resource, kind,
reason class), never a run id, op path or pod name.

By default they live in prometheus_client's global registry (created once per process);
``KubernetesExecutor(registry=...)`` puts them into the daemon's own registry instead.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

__all__ = ["K8sMetrics"]

_WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class K8sMetrics:
    _default: K8sMetrics | None = None

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.create_wait = Histogram(
            "flowd_pod_create_wait_seconds",
            "Time an op's pod (or job) waited for the create limiter (fair queue + token bucket)",
            buckets=_WAIT_BUCKETS, registry=r)
        self.created = Counter("flowd_k8s_created", "Objects created (pods, Kubeflow jobs)", ["kind"], registry=r)
        self.adopted = Counter("flowd_k8s_adopted", "Existing objects adopted (AlreadyExists, or seen after a restart)",
                               registry=r)
        self.create_errors = Counter("flowd_k8s_create_errors", "Creates that failed for good", registry=r)
        self.deleted = Counter("flowd_k8s_deleted", "Objects deleted (stop, TTL)", registry=r)
        self.reports = Counter("flowd_k8s_reports", "Op status reports sent", ["status"], registry=r)
        self.watch_failures = Counter("flowd_k8s_watch_failures", "Watch streams that broke and were reopened",
                                      ["resource"], registry=r)
        self.metric_points = Counter("flowd_k8s_metric_points", "Intermediate metric points read from pods' logs",
                                     registry=r)
        self.followers_refused = Counter("flowd_k8s_log_followers_refused",
                                         "Pods whose log was not followed for metrics (max_log_followers reached)",
                                         registry=r)
        self.relists = Counter("flowd_k8s_relists", "Complete lists (start, reconnect, 410 Gone)", ["resource"],
                               registry=r)

        # label children, looked up once: ``Counter.labels`` takes a lock and builds a tuple on
        # every call, which at a report per pod status was a visible share of the executor's CPU
        self._created: dict[str, Any] = {}
        self._reports: dict[str, Any] = {}

    def count_created(self, kind: str) -> None:
        child = self._created.get(kind)
        if child is None:
            child = self._created[kind] = self.created.labels(kind)
        child.inc()

    def count_report(self, status: str) -> None:
        child = self._reports.get(status)
        if child is None:
            child = self._reports[status] = self.reports.labels(status)
        child.inc()

    @classmethod
    def for_registry(cls, registry: CollectorRegistry | None) -> K8sMetrics:
        if registry is not None:
            return cls(registry)
        if cls._default is None:
            cls._default = cls(REGISTRY)
        return cls._default
