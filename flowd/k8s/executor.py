"""The Kubernetes executor: one pod (or Kubeflow job) per attempt, followed by watches.

Shape (one task tree, entered with ``async with KubernetesExecutor(send=...) as ex``)::

    start(StartOp) -> convert (pure) -> fair create queue -> N create workers -> POST
    one watcher per (namespace, resource), all in this loop -> observe (pure) -> dedupe -> send
    a housekeeping ticker: pods gone missing, image-pull timeouts, TTL deletions

The executor only translates (flowd.executor): it never retries, times out or decides what runs
next. It is idempotent by ``StartOp.key``: the pod name is derived from it, so a replayed start
meets ``409 AlreadyExists`` and adopts the pod; a pod seen by a watch that no ``StartOp`` of
this process asked for (created before a restart) is adopted from its annotations.

Reports: each (key, status) is sent at most once per process; a terminal report is the last one
for its key. Statuses come from flowd.k8s.status.observe. Stops: a stopped attempt's pod is
deleted and ``stopped`` is reported when it is gone (or it ended anyway).

**The finalizer** ``flowd.io/report`` is put on every pod at create: a pod can then not vanish
(TTL, a user's delete, namespace deletion) before flowd has seen it being deleted, reported its
terminal status and removed the finalizer. The cost: while no flowd runs, deleted pods wait in
Terminating (``kubectl patch pod P --type=json -p '[{"op":"remove","path":"/metadata/finalizers"}]'``
releases one by hand).

**Pod missing**: a pod flowd believes exists that a relist or a GET says is gone without a
terminal status (its finalizer was removed by force) is reported ``failed`` with reason
``pod missing``; the engine retries it like any failure, per ``termination.maxRetries``.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc
import msgspec
import structlog
from prometheus_client import CollectorRegistry

from flowd.engine import OpStatus, StartOp, StopOp
from flowd.engine import status as S
from flowd.faults import crash_point
from flowd.k8s import naming as N
from flowd.k8s.attempts import Attempt, FinishedKeys
from flowd.k8s.client import ApiError, Kube, load_client
from flowd.k8s.config import Settings
from flowd.k8s.kubeflow import KUBEFLOW_KINDS, build_job
from flowd.k8s.limiter import CreateLimiter
from flowd.k8s.metriclogs import MetricFollowers
from flowd.k8s.metrics import K8sMetrics
from flowd.k8s.objects import collection_path, delete, object_path, remove_finalizer
from flowd.k8s.pod import ConversionError, build_service, namespace_of
from flowd.k8s.podlogs import main_container
from flowd.k8s.status import (
    GONE,
    Observation,
    finished_at,
    identity,
    kubeflow_observe,
    observe,
)
from flowd.k8s.templates import PodTemplates
from flowd.k8s.watch import Backoff, watch_forever

__all__ = ["KubernetesExecutor", "POD_KINDS", "KINDS", "MISSING_REASON"]

log = structlog.get_logger("flowd.k8s")

# queued manifests are kept encoded: a fan-out's thousand pods as dicts were ~60 objects each
# for the cyclic collector to walk, whose full collections stalled the loop for 0.1-0.5 s
_encode = msgspec.json.Encoder().encode

POD_KINDS = frozenset({"job", "service"})
KINDS = POD_KINDS | frozenset(KUBEFLOW_KINDS)
MISSING_REASON = "pod missing"
READY_TIMEOUT = 30.0

Send = Callable[[OpStatus], None]


class KubernetesExecutor:
    """Runs ``job``/``service`` ops as pods and ``tfjob``/``pytorchjob``/``mpijob`` ops as
    Kubeflow jobs. ``config`` holds :class:`flowd.k8s.config.Settings` fields. ``api`` is an
    existing kubernetes_asyncio ApiClient (else one is made from the kubeconfig / in-cluster).
    ``on_created(key, monotonic_time)`` is called after each successful create (benchmarks).
    ``registry``: where the metrics go (default: prometheus_client's global registry)."""

    def __init__(self, *, send: Send, clock: Callable[[], float] = time.time, api: Any = None,
                 on_created: Callable[[str, float], None] | None = None,
                 registry: CollectorRegistry | None = None, **config: Any) -> None:
        self.send_report = send
        self.clock = clock
        self.settings = Settings.from_config(config)
        self._api = api
        self._owns_api = api is None
        self.on_created = on_created
        self.kube: Kube | None = None
        self._attempts: dict[str, Attempt] = {}
        self._live: set[str] = set()  # keys of the attempts not reported terminal (``active``)
        self._finished = FinishedKeys()  # terminal status sent: a replayed start is ignored
        self._watches: dict[tuple[str, str], anyio.Event] = {}
        self._ttl: list[tuple[float, str]] = []  # (monotonic due, key)
        self._verify: set[str] = set()  # keys to check with a GET (maybe missing)
        self.partitions: set[str] | None = None  # None: report every flowd pod
        self.metrics = K8sMetrics.for_registry(registry)
        # a fan-out's identical bodies are converted once (flowd.k8s.templates)
        self.templates = PodTemplates(self.settings)
        self.limiter: CreateLimiter[Attempt] = CreateLimiter(qps=self.settings.qps, burst=self.settings.burst,
                                                              wait=self.metrics.create_wait)
        # intermediate metrics read from pods' logs (flowd.k8s.metriclogs)
        self.followers = MetricFollowers(send=self._send_points, mode=self.settings.metrics_from_logs,
                                         limit=self.settings.max_log_followers,
                                         drain_timeout=self.settings.metrics_drain_timeout,
                                         on_refused=self.metrics.followers_refused.inc)
        self._tg: anyio.abc.TaskGroup | None = None
        self.stats = {"created": 0, "adopted": 0, "create_errors": 0, "reports": 0, "deleted": 0}

    # --------------------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> KubernetesExecutor:
        if self._api is None:
            self._api = await load_client(kubeconfig=self.settings.kubeconfig, context=self.settings.context)
        self.kube = Kube(self._api)
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        for i in range(self.settings.create_workers):
            self._tg.start_soon(self._run_creator, name=f"k8s-create-{i}")
        self._tg.start_soon(self._run_housekeeping, name="k8s-housekeeping")
        for ns in self.settings.watch_namespaces:
            self._ensure_watch(ns, "pods")
        with anyio.move_on_after(READY_TIMEOUT):
            await self.wait_ready()
        if not all(e.is_set() for e in self._watches.values()):
            # not fatal: the watchers keep retrying and report when they get through
            log.warning("watches_not_ready", timeout=READY_TIMEOUT,
                        pending=[f"{ns}/{r}" for (ns, r), e in self._watches.items() if not e.is_set()])
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        try:
            return await self._tg.__aexit__(*exc_info)
        finally:
            with anyio.CancelScope(shield=True):
                if self.kube is not None:
                    await self.kube.close()
                if self._owns_api and self._api is not None:
                    await self._api.close()

    async def wait_ready(self) -> None:
        """Until every watcher started so far has listed once."""
        for ready in list(self._watches.values()):
            await ready.wait()

    def set_partitions(self, partitions: set[str] | None) -> None:
        """Report only pods whose owner-partition label is in ``partitions`` (the daemon's
        assignment after a rebalance); None reports all."""
        self.partitions = partitions

    @property
    def active(self) -> int:
        """Attempts not reported terminal yet. Kept as a set: the driver asks every time its
        loop goes idle, and counting thousands of attempts each time showed in the profile."""
        return len(self._live)

    # ---------------------------------------------------------------------------- commands

    async def start(self, cmd: StartOp) -> None:
        if cmd.key in self._attempts or cmd.key in self._finished:
            return
        namespace = namespace_of(cmd, self.settings)
        name = N.pod_name(cmd.run_id, cmd.path, cmd.attempt)
        resource = KUBEFLOW_KINDS[cmd.kind].plural if cmd.kind in KUBEFLOW_KINDS else "pods"
        att = Attempt(key=cmd.key, run_id=cmd.run_id, path=cmd.path, attempt=cmd.attempt, kind=cmd.kind,
                       namespace=namespace, name=name, resource=resource)
        self._attempts[cmd.key] = att
        self._live.add(cmd.key)
        try:
            if cmd.kind in POD_KINDS:
                pod = self.templates.build(cmd)
                if cmd.kind == "service":
                    att.service = build_service(cmd, self.settings, pod)
                att.manifest = _encode(pod)
            elif cmd.kind in KUBEFLOW_KINDS:
                att.manifest = _encode(build_job(cmd, self.settings))
            else:
                raise ConversionError(f"the Kubernetes executor cannot run kind {cmd.kind!r} "
                                      f"(only {', '.join(sorted(KINDS))})")
        except ConversionError as exc:
            self._report(att, Observation(S.FAILED, reason="CannotStart", message=str(exc)))
            self._forget(att)
            return
        except Exception as exc:  # noqa: BLE001 - a malformed body must fail its op, not the daemon
            log.error("conversion_crashed", key=cmd.key, error=repr(exc))
            self._report(att, Observation(S.FAILED, reason="CannotStart",
                                          message=f"the runtime body cannot become a pod: {exc!r}"))
            self._forget(att)
            return
        ttl = cmd.termination.ttl if cmd.termination.ttl is not None else self.settings.default_ttl
        att.ttl = ttl
        self._ensure_watch(namespace, resource)
        self.limiter.put(cmd.run_id, cmd.key, att)

    async def stop(self, cmd: StopOp) -> None:
        att = self._attempts.get(cmd.key)
        if att is None:
            if cmd.key not in self._finished:
                await self._stop_unknown(cmd)
            return
        if att.state == "done" or att.stop_reason is not None:
            return
        att.stop_reason = cmd.reason or "Stopped"
        if att.state == "queued":
            self.limiter.withdraw(att.run_id, att.key)
            self._report(att, Observation(S.STOPPED, reason=att.stop_reason, message="stopped before its pod was created"))
            self._forget(att)
        elif att.state == "created":
            self._spawn(self._delete, att)
        # "creating": the create worker deletes it once the create returns

    # ----------------------------------------- flowd.runtime.driver compatibility (flowd run)

    async def adopt(self, cmd: StartOp, *, stopping: bool) -> None:
        """``--resume``: the attempt's pod may exist (adopted by name) or not (created now)."""
        await self.start(cmd)
        if stopping:
            await self.stop(StopOp(run_id=cmd.run_id, path=cmd.path, attempt=cmd.attempt, key=cmd.key,
                                   reason="Stopped"))

    async def stop_all(self, *, reason: str, shutdown: bool = False) -> None:
        """Stop every live attempt (``shutdown``: leave the pods running — a resumed or
        restarted flowd adopts them — and only stop following them)."""
        if shutdown:
            return
        for att in [a for a in self._attempts.values() if a.state != "done"]:
            await self.stop(StopOp(run_id=att.run_id, path=att.path, attempt=att.attempt, key=att.key, reason=reason))

    def kill_all(self) -> None:
        """Delete every live attempt's pod without a grace period."""
        for att in [a for a in self._attempts.values() if a.state != "done"]:
            att.stop_reason = att.stop_reason or "Killed"
            self._spawn(self._delete, att, 0)

    async def _stop_unknown(self, cmd: StopOp) -> None:
        """A stop for an attempt this process never started (started before a restart and not
        seen by a watch yet): delete its pod wherever flowd watches, then report stopped."""
        name = N.pod_name(cmd.run_id, cmd.path, cmd.attempt)
        assert self.kube is not None
        for namespace, resource in list(self._watches):
            try:
                await self.kube.request("DELETE", object_path(resource, namespace, name))
            except ApiError as exc:
                if not exc.not_found:
                    log.warning("stop_unknown_failed", key=cmd.key, error=str(exc))
        self._finished.add(cmd.key)
        self.send_report(OpStatus(run_id=cmd.run_id, path=cmd.path, attempt=cmd.attempt, status=S.STOPPED,
                                  time=self.clock(), reason=cmd.reason or "Stopped", message=f"pod stopped ({cmd.reason or 'Stopped'})"))

    # ----------------------------------------------------------------------------- reports

    def _report(self, att: Attempt, obs: Observation) -> None:
        """Send one status for this attempt, once; terminal reports close the attempt."""
        if att.state == "done" or obs.status in att.reported:
            return
        att.reported.add(obs.status)
        if obs.status in S.DONE:
            att.state = "done"
            self._live.discard(att.key)
            att.stuck = None
            self._finished.add(att.key)
        self.stats["reports"] += 1
        self.metrics.count_report(obs.status)
        self.send_report(OpStatus(
            run_id=att.run_id, path=att.path, attempt=att.attempt, status=obs.status, time=self.clock(),
            message=obs.message, reason=obs.reason, exit_code=obs.exit_code, outputs=obs.outputs,
        ))
        if obs.status in S.DONE:
            crash_point("k8s.reported", att.key)  # tests only: reported, not committed, finalizer on

    def _forget(self, att: Attempt) -> None:
        self.followers.cancel(att.key)
        self._attempts.pop(att.key, None)
        self._live.discard(att.key)

    def _send_points(self, key: str, points: list[dict[str, Any]]) -> None:
        """Metric points from a pod's log: a ``running`` report with ``metrics``, as the local
        executor sends for ``$FLOWD_METRICS`` lines (never after the terminal report)."""
        att = self._attempts.get(key)
        if att is None or att.state == "done":
            return
        self.metrics.metric_points.inc(len(points))
        self.send_report(OpStatus(run_id=att.run_id, path=att.path, attempt=att.attempt, status=S.RUNNING,
                                  time=self.clock(), metrics=points))

    def _drained(self, att: Attempt, resource: str) -> None:
        """A finished pod's log was read to the end: now its terminal status goes out."""
        obj, att.pending = att.pending, None
        if obj is not None and self._attempts.get(att.key) is att:
            self._observe(resource, obj)

    # ----------------------------------------------------------------------------- watches

    def _ensure_watch(self, namespace: str, resource: str) -> None:
        if (namespace, resource) in self._watches:
            return
        ready = anyio.Event()
        self._watches[(namespace, resource)] = ready
        assert self._tg is not None and self.kube is not None
        selector = f"{N.L_MANAGED_BY}={N.MANAGED_BY}"
        self._tg.start_soon(self._run_watch, namespace, resource, selector, ready, name=f"k8s-watch-{namespace}-{resource}")

    async def _run_watch(self, namespace: str, resource: str, selector: str, ready: anyio.Event) -> None:
        assert self.kube is not None
        await watch_forever(self.kube, collection_path(resource, namespace), namespace=namespace, resource=resource,
                            selector=selector, sink=self, timeout=self.settings.watch_timeout,
                            backoff=Backoff(self.settings.backoff_base, self.settings.backoff_max), ready=ready,
                            on_failure=lambda exc: self.metrics.watch_failures.labels(resource).inc())
        raise RuntimeError("watch_forever returned")  # pragma: no cover - it never does

    def listed(self, namespace: str, resource: str, items: list[dict[str, Any]]) -> None:
        """A complete list: observe each object, and check what should be there but is not."""
        self.metrics.relists.labels(resource).inc()
        names = set()
        for obj in items:
            names.add((obj.get("metadata") or {}).get("name"))
            self._observe(resource, obj)
        for att in self._attempts.values():
            if (att.state == "created" and att.namespace == namespace and att.resource == resource
                    and att.name not in names):
                # maybe created after the list was taken: a GET decides
                self._verify.add(att.key)

    def event(self, namespace: str, resource: str, kind: str, obj: dict[str, Any]) -> None:
        if kind == "DELETED":
            self._deleted(resource, obj)
        else:
            self._observe(resource, obj)

    def _attempt_for(self, resource: str, obj: dict[str, Any]) -> Attempt | None:
        ident = identity(obj)
        if ident is None:
            return None
        meta = obj.get("metadata") or {}
        if self.partitions is not None and (meta.get("labels") or {}).get(N.L_PARTITION) not in self.partitions:
            return None
        run_id, path, attempt, key = ident
        att = self._attempts.get(key)
        if att is None:
            if key in self._finished:
                return None
            # created by an earlier incarnation of flowd: adopt it
            att = Attempt(key=key, run_id=run_id, path=path, attempt=attempt,
                           kind=(meta.get("labels") or {}).get(N.L_KIND, "job"), namespace=meta.get("namespace", ""),
                           name=meta.get("name", ""), resource=resource)
            att.state = "created"
            ttl = (meta.get("annotations") or {}).get(N.A_TTL)
            att.ttl = float(ttl) if ttl else None
            self._attempts[key] = att
            self._live.add(key)
            self.stats["adopted"] += 1
            self.metrics.adopted.inc()
        return att

    def _observe(self, resource: str, obj: dict[str, Any]) -> None:
        att = self._attempt_for(resource, obj)
        if att is None:
            self._release_if_done(resource, obj)
            return
        att.seen = True
        if att.state in ("queued", "creating"):
            att.state = "created"  # the watch was faster than the create's answer
        if resource == "pods":
            obs = observe(obj, now=self.clock(), stuck_timeout=self.settings.image_pull_timeout)
        else:
            obs = kubeflow_observe(obj)
        deleting = bool((obj.get("metadata") or {}).get("deletionTimestamp"))
        if obs.status == GONE:
            if att.stop_reason is not None:
                obs = Observation(S.STOPPED, reason=att.stop_reason, message=f"pod stopped ({att.stop_reason})")
            else:
                obs = Observation(S.FAILED, reason=obs.reason, message=obs.message)
        elif obs.status in S.DONE and att.stop_reason is not None and obs.status != S.SUCCEEDED:
            obs = Observation(S.STOPPED, reason=att.stop_reason, message=obs.message, exit_code=obs.exit_code)
        att.stuck = obj if obs.status == S.WARNING else None
        if resource == "pods" and att.state != "done":
            if obs.status == S.RUNNING and self.followers.wants(key=att.key, path=att.path, resource=resource):
                assert self._tg is not None and self.kube is not None
                self.followers.start(self._tg, self.kube, key=att.key, namespace=att.namespace, name=att.name,
                                     container=main_container(obj))
            elif obs.status in S.DONE and self.followers.following(att.key):
                if att.stop_reason is None and (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                    # ended by itself: its last metric lines go out before its terminal status
                    att.pending = obj
                    self.followers.finish(att.key, lambda: self._drained(att, resource))
                    return
                self.followers.cancel(att.key)
        was_done = att.state == "done"
        self._report(att, obs)
        if att.state != "done":
            return
        if deleting:
            self._spawn(self._release, att, obj)
        elif not was_done:
            phase = (obj.get("status") or {}).get("phase")
            if resource == "pods" and phase not in ("Succeeded", "Failed") and att.stop_reason is None:
                # failed while not finished (an image that never pulls): take it off the node
                att.stop_reason = obs.reason or "Failed"
                self._spawn(self._delete, att)
            self._after_finish(att, obj)

    def _release_if_done(self, resource: str, obj: dict[str, Any]) -> None:
        """A finished attempt's object being deleted: drop the finalizer (already reported)."""
        meta = obj.get("metadata") or {}
        if meta.get("deletionTimestamp") and N.FINALIZER in (meta.get("finalizers") or []):
            ident = identity(obj)
            if ident is not None and ident[3] in self._finished:
                assert self.kube is not None
                self._spawn(remove_finalizer, self.kube, object_path(resource, meta["namespace"], meta["name"]),
                            meta.get("finalizers"))

    def _deleted(self, resource: str, obj: dict[str, Any]) -> None:
        att = self._attempt_for(resource, obj)
        if att is not None:
            self._vanished(att)

    def _vanished(self, att: Attempt) -> None:
        """The object is gone (DELETED event, or a 404)."""
        if att.state != "done":
            if att.stop_reason is not None:
                self._report(att, Observation(S.STOPPED, reason=att.stop_reason, message=f"pod stopped ({att.stop_reason})"))
            else:
                what = "pod" if att.resource == "pods" else att.resource[:-1]
                self._report(att, Observation(S.FAILED, reason=MISSING_REASON,
                                              message=f"{what} {att.namespace}/{att.name} disappeared before it finished"))
        self._forget(att)

    def _after_finish(self, att: Attempt, obj: dict[str, Any]) -> None:
        """Terminal and reported: schedule the TTL deletion, tear down a service's Service."""
        if att.service is not None or att.kind == "service":
            self._spawn(self._delete_service, att)
        if att.stop_reason is not None:
            return  # already being deleted
        if att.ttl is not None:
            done_at = finished_at(obj) if att.resource == "pods" else None
            delay = att.ttl - max(0.0, self.clock() - done_at) if done_at else att.ttl
            if delay <= 0:
                self._spawn(self._delete, att)
            else:
                heapq.heappush(self._ttl, (time.monotonic() + delay, att.key))
        else:
            self._forget(att)  # kept on the cluster; nothing more to do for it

    # ------------------------------------------------------------------------- API calls

    def _spawn(self, fn: Callable[..., Any], *args: Any) -> None:
        assert self._tg is not None
        self._tg.start_soon(fn, *args)

    async def _run_creator(self) -> None:
        while True:
            att = await self.limiter.get()
            if att.state != "queued":
                continue
            await self._create(att)

    async def _create(self, att: Attempt) -> None:
        assert self.kube is not None and att.manifest is not None
        att.state = "creating"
        path = collection_path(att.resource, att.namespace)
        delay: Backoff | None = None  # made on the first retry (seeding a Random costs ~0.1 ms)
        while True:
            try:
                # the created object is not needed (the watch reports it): not decoded
                await self.kube.request("POST", path, body=att.manifest, decode=False)
                crash_point("k8s.created", att.key)  # tests only: the pod exists, nothing recorded
                self.stats["created"] += 1
                self.metrics.count_created(att.kind)
                break
            except ApiError as exc:
                if exc.conflict:
                    if not await self._adoptable(att):
                        return
                    break
                if exc.retriable and att.stop_reason is None:
                    delay = delay or Backoff(self.settings.backoff_base, self.settings.backoff_max)
                    await anyio.sleep(delay.next())
                    continue
                self.stats["create_errors"] += 1
                self.metrics.create_errors.inc()
                if att.stop_reason is not None:
                    self._report(att, Observation(S.STOPPED, reason=att.stop_reason, message=f"pod stopped ({att.stop_reason})"))
                else:
                    self._report(att, Observation(S.FAILED, reason="CannotStart", message=f"creating {att.resource[:-1]} "
                                                  f"{att.namespace}/{att.name}: {exc}"))
                self._forget(att)
                return
        if att.state == "creating":
            att.state = "created"
        att.created_at = time.monotonic()
        if self.on_created is not None:
            self.on_created(att.key, att.created_at)
        att.manifest = None
        if att.service is not None:
            await self._create_service(att)
        if att.stop_reason is not None and att.state != "done":
            await self._delete(att)

    async def _adoptable(self, att: Attempt) -> bool:
        """409: the object exists. Ours (same key) -> adopt; anything else -> the attempt fails."""
        assert self.kube is not None
        try:
            obj = await self.kube.request("GET", object_path(att.resource, att.namespace, att.name))
        except ApiError:
            # cannot tell now (gone again, or a transient error): adopt; the watch and the
            # reconcile pass see what is really there (a vanished pod is "pod missing")
            obj = None
        ident = identity(obj) if obj else None
        if obj is None or (ident is not None and ident[3] == att.key):
            self.stats["adopted"] += 1
            self.metrics.adopted.inc()
            return True
        self._report(att, Observation(S.FAILED, reason="CannotStart",
                                      message=f"{att.namespace}/{att.name} exists and is not this attempt's"))
        self._forget(att)
        return False

    async def _create_service(self, att: Attempt) -> None:
        assert self.kube is not None and att.service is not None
        try:
            await self.kube.request("POST", f"/api/v1/namespaces/{att.namespace}/services", body=att.service)
        except ApiError as exc:
            if not exc.conflict:
                self._report(att, Observation(S.FAILED, reason="CannotStart", message=f"creating service: {exc}"))
                await self._delete(att)

    async def _delete_service(self, att: Attempt) -> None:
        assert self.kube is not None
        try:
            await self.kube.request("DELETE", f"/api/v1/namespaces/{att.namespace}/services/{att.name}")
        except ApiError as exc:
            if not exc.not_found:
                log.warning("service_delete_failed", key=att.key, error=str(exc))

    async def _delete(self, att: Attempt, grace: int | None = None) -> None:
        assert self.kube is not None
        try:
            if await delete(self.kube, object_path(att.resource, att.namespace, att.name), grace=grace):
                crash_point("k8s.deleting", att.key)  # tests only: Terminating, held by the finalizer
                self.stats["deleted"] += 1
                self.metrics.deleted.inc()
            else:
                self._vanished(att)
        except ApiError as exc:
            log.warning("delete_failed", key=att.key, error=str(exc))
        if att.kind == "service":
            await self._delete_service(att)

    async def _release(self, att: Attempt, obj: dict[str, Any]) -> None:
        finalizers = (obj.get("metadata") or {}).get("finalizers") or []
        if N.FINALIZER in finalizers:
            assert self.kube is not None
            await remove_finalizer(self.kube, object_path(att.resource, att.namespace, att.name), finalizers)

    # ----------------------------------------------------------------------- housekeeping

    async def _run_housekeeping(self) -> None:
        next_reconcile = time.monotonic() + self.settings.reconcile_interval
        while True:
            await anyio.sleep(min(1.0, self.settings.reconcile_interval))
            now = time.monotonic()
            while self._ttl and self._ttl[0][0] <= now:
                _, key = heapq.heappop(self._ttl)
                att = self._attempts.get(key)
                if att is not None:
                    self._spawn(self._delete, att)
            for att, stuck in [(a, a.stuck) for a in self._attempts.values() if a.stuck is not None]:
                self._observe(att.resource, stuck)  # re-judged with the current time
            if now >= next_reconcile:
                next_reconcile = now + self.settings.reconcile_interval
                await self.reconcile()

    async def reconcile(self) -> None:
        """Check with a GET every attempt a relist did not show, and every created attempt no
        watch has shown for a whole reconcile interval; a 404 -> ``failed`` (pod missing)."""
        horizon = time.monotonic() - self.settings.reconcile_interval
        for known in self._attempts.values():
            if known.state == "created" and not known.seen and known.created_at and known.created_at < horizon:
                self._verify.add(known.key)
        keys, self._verify = self._verify, set()
        for key in keys:
            att = self._attempts.get(key)
            if att is None or att.state != "created":
                continue
            assert self.kube is not None
            try:
                obj = await self.kube.request("GET", object_path(att.resource, att.namespace, att.name))
            except ApiError as exc:
                if exc.not_found:
                    self._vanished(att)
                else:
                    self._verify.add(key)
                continue
            self._observe(att.resource, obj)
