"""Settings of the Kubernetes executor (the daemon's ``executor:`` config section).

Everything has a default so ``KubernetesExecutor(send=...)`` works against the current
kubeconfig context. The daemon passes its ConfigMap values as keyword arguments; unknown keys
are an error (a typo in a ConfigMap must not be silently ignored).
"""

from __future__ import annotations

from typing import Any

import msgspec

from flowd.connections import Connection, ConnectionResource

__all__ = ["Settings", "Connection", "ConnectionResource"]


class Settings(msgspec.Struct, omit_defaults=True, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # namespace of ops that name none (op -> component -> this)
    namespace: str = "default"
    # path of a kubeconfig; None: $KUBECONFIG / ~/.kube/config, or in-cluster when running in a pod
    kubeconfig: str | None = None
    context: str | None = None
    # namespaces watched from the start (others are added when an op first uses them)
    watch_namespaces: list[str] = []
    # creates/s and burst of the pod-create limiter (see flowd.k8s.limiter)
    qps: float = 200.0
    burst: int = 400
    # concurrent create requests in flight
    create_workers: int = 64
    # this daemon's owner label value, or None to derive it from the run id (partition_count)
    partition: str | None = None
    partition_count: int = 0
    # put flowd's finalizer on every pod: its terminal status is reported before it can vanish
    finalizer: bool = True
    # seconds to keep finished pods when an op sets no termination.ttl (None: keep them)
    default_ttl: float | None = None
    # flowd run: at exit, wait at most this long for TTL deletions that fall due (and for the
    # apiserver); pods due later are kept, without flowd's finalizer (flowd.k8s.drain)
    exit_wait: float = 60.0
    # ErrImagePull/ImagePullBackOff (and config errors) for this long -> failed
    image_pull_timeout: float = 300.0
    # period of the reconcile pass (pods gone, pull timeouts, TTL deletions)
    reconcile_interval: float = 10.0
    # server-side watch timeout; the watch is reopened (from its resourceVersion) after it
    watch_timeout: int = 300
    # reconnect backoff of a broken watch: base * 2**n capped at max, full jitter
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    # the connection catalog (name -> connection)
    connections: dict[str, Connection] = {}
    # labels added to every object flowd creates
    extra_labels: dict[str, str] = {}
    # the image of the built-in init steps (git, file, dockerfile, artifacts): flowd's own, which
    # carries git and `python -m flowd.initsteps`
    init_image: str = "ghcr.io/flowd-project/flowd:0.1.0"
    # the artifact store of pods (docs/artifacts.md "On Kubernetes"): s3://bucket[/prefix], the
    # S3 endpoint (empty: AWS) and region; credentials come from the catalog connection
    # `artifacts_connection` (its secret as env, e.g. AWS_ACCESS_KEY_ID), never from a setting.
    # Empty store: pods get no $FLOWD_ARTIFACTS and artifacts refs are not downloaded
    artifacts_store: str = ""
    artifacts_endpoint: str = ""
    artifacts_region: str = ""
    artifacts_connection: str | None = None
    # the largest outputs object one attempt may report (the sidecar checks it before storing);
    # outputs over the 4 KiB termination message travel through the artifact store
    max_outputs_bytes: int = 1 << 20
    # the main container's name when the component does not name it
    main_container: str = "main"
    # default image pull policy of containers that set none (None: cluster default)
    image_pull_policy: str | None = None
    # intermediate metrics from pods' logs (flowd.k8s.metriclogs): which pods' logs are followed
    # for `FLOWD_METRIC {...}` lines — matrix (children of a matrix), all, off — at most how many
    # at once, and how long a finished pod's terminal report may wait for the end of its log
    metrics_from_logs: str = "matrix"
    max_log_followers: int = 256
    metrics_drain_timeout: float = 10.0
    # -- pod policy (flowd.k8s.policy; docs/kubernetes.md "Pod policy") --
    # namespaces a submission may run ops in; empty: only `namespace`; ["*"]: any
    allowed_namespaces: list[str] = []
    # check ops against the policy below (off: only the apiserver's Pod Security Admission is left)
    pod_policy: bool = True
    allow_privileged: bool = False
    allow_host_path: bool = False
    # hostNetwork, hostPID, hostIPC
    allow_host_namespaces: bool = False
    # capabilities ops may add (e.g. ["NET_BIND_SERVICE"]); ["*"]: any
    allowed_capabilities: list[str] = []
    allow_root: bool = False
    # fill in the Pod Security Standard `restricted` where an op sets nothing (runAsNonRoot,
    # seccompProfile RuntimeDefault, allowPrivilegeEscalation false, drop ALL capabilities)
    restricted_defaults: bool = True

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Settings:
        return msgspec.convert(config, type=cls, strict=False)
