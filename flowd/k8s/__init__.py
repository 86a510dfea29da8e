"""The Kubernetes executor: ops as pods (and Kubeflow jobs) on a real cluster.

- :mod:`flowd.k8s.executor`: :class:`KubernetesExecutor` (start/stop, watches, reconcile)
- :mod:`flowd.k8s.pod` / :mod:`flowd.k8s.kubeflow`: StartOp -> manifests (pure)
- :mod:`flowd.k8s.status`: pod / job JSON -> op status (pure)
- :mod:`flowd.k8s.naming`: deterministic names, labels, annotations (pure)
- :mod:`flowd.k8s.limiter`: QPS/burst token bucket + per-pipeline fair queue
- :mod:`flowd.k8s.watch`: list-then-watch loops; :mod:`flowd.k8s.client`: thin JSON client
- :mod:`flowd.k8s.harness`: drive the pure Engine with this executor, without Kafka

See docs/kubernetes.md.
"""

from flowd.k8s.config import Connection, ConnectionResource, Settings
from flowd.k8s.executor import KINDS, MISSING_REASON, KubernetesExecutor
from flowd.k8s.pod import ConversionError, build_pod, build_service

__all__ = [
    "KubernetesExecutor", "Settings", "Connection", "ConnectionResource", "ConversionError",
    "build_pod", "build_service", "KINDS", "MISSING_REASON",
]
