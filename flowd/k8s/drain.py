"""``flowd run --executor k8s`` at exit: leave the cluster as the ops' ``termination.ttl`` says.

The daemon's executor lives as long as the daemon, so TTL deletions and finalizer removals can
happen whenever they are due. ``flowd run`` exits when its pipeline is done, and leaving the
executor cancels what is still in flight: a pod with ``ttl: 0`` stayed behind, finished and
undeleted or ``Terminating`` with flowd's finalizer (4 of 4 runs with an apiserver restart). So
before it leaves, :func:`draining` walks the pods of the attempts this process reported as
finished, from a fresh LIST (not from the watch's view, which an apiserver restart interrupts):

* ttl due within ``exit_wait`` seconds (ttl 0: now): delete it and wait until it is gone,
  removing flowd's finalizer once the deletion has started;
* no ttl, or one due later: keep the pod, remove flowd's finalizer (its status is reported; a
  finalizer left behind would make a later delete hang with no flowd to release it), and log
  ``pod_kept`` (info, stderr).

Every call is retried until ``exit_wait`` runs out, so an apiserver restart at exit only delays
it. Attempts not finished (``flowd run`` interrupted for a later ``--resume``) keep their
finalizer: their report is still to come.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from flowd.k8s import naming as N
from flowd.k8s.client import ApiError
from flowd.k8s.objects import collection_path, delete, object_path, remove_finalizer
from flowd.k8s.status import finished_at, identity

if TYPE_CHECKING:
    from flowd.k8s.executor import KubernetesExecutor

__all__ = ["drain", "draining"]

log = structlog.get_logger("flowd.k8s")


@contextlib.asynccontextmanager
async def draining(executor: KubernetesExecutor, *, exit_wait: float = 60.0) -> AsyncIterator[KubernetesExecutor]:
    """``async with draining(KubernetesExecutor(...)) as ex``: on a normal exit, :func:`drain`
    before the executor's task group is cancelled."""
    async with executor as ex:
        yield ex
        await drain(ex, exit_wait=exit_wait)


def _ttl(obj: dict[str, Any]) -> float | None:
    raw = ((obj.get("metadata") or {}).get("annotations") or {}).get(N.A_TTL)
    try:
        return float(raw) if raw not in (None, "") else None
    except ValueError:
        return None


async def drain(executor: KubernetesExecutor, *, exit_wait: float = 60.0) -> dict[str, int]:
    """Delete or release every finished attempt's object (module doc). Returns counts
    (``deleted``, ``released``, ``left``: still there when ``exit_wait`` ran out)."""
    kube = executor.kube
    assert kube is not None
    deadline = time.monotonic() + exit_wait
    selector = f"{N.L_MANAGED_BY}={N.MANAGED_BY}"
    counts = {"deleted": 0, "released": 0, "left": 0}
    released: set[str] = set()
    delay = 0.1
    while True:
        pending = 0
        try:
            for namespace, resource in list(executor._watches):  # noqa: SLF001
                listed = await kube.request("GET", collection_path(resource, namespace),
                                            query={"labelSelector": selector}, timeout=10.0)
                for obj in listed.get("items") or []:
                    pending += await _settle(executor, resource, obj, deadline=deadline, counts=counts,
                                             released=released)
        except ApiError as exc:
            if not exc.retriable and not exc.not_found:
                raise
            log.warning("drain_retrying", error=str(exc))
            pending = 1
        if not pending:
            return counts
        if time.monotonic() >= deadline:
            counts["left"] = pending
            log.warning("drain_gave_up", left=pending, exit_wait=exit_wait)
            return counts
        await anyio.sleep(delay)
        delay = min(1.0, delay * 2)


async def _settle(executor: KubernetesExecutor, resource: str, obj: dict[str, Any], *, deadline: float,
                  counts: dict[str, int], released: set[str]) -> int:
    """One object: 1 if it still needs a look on the next pass, else 0."""
    ident = identity(obj)
    if ident is None or ident[3] not in executor._finished:  # noqa: SLF001
        return 0
    kube = executor.kube
    assert kube is not None
    meta = obj.get("metadata") or {}
    url = object_path(resource, meta.get("namespace", ""), meta.get("name", ""))
    finalizers = meta.get("finalizers") or []
    if meta.get("deletionTimestamp"):
        if N.FINALIZER in finalizers:
            await remove_finalizer(kube, url, finalizers)
        return 1  # wait until it is gone
    ttl = _ttl(obj)
    done = finished_at(obj) if resource == "pods" else None
    due = None if ttl is None else (done or time.time()) + ttl
    if due is not None and due - time.time() <= max(0.0, deadline - time.monotonic()):
        if due > time.time():
            return 1  # due before we give up: wait for it
        if await delete(kube, url):
            counts["deleted"] += 1
        return 1
    if N.FINALIZER in finalizers:
        await remove_finalizer(kube, url, finalizers)
    if ident[3] not in released:
        released.add(ident[3])
        counts["released"] += 1
        log.info("pod_kept", pod=f"{meta.get('namespace')}/{meta.get('name')}", ttl=ttl,
                    reason="no termination.ttl" if ttl is None else f"ttl {ttl:g}s is due after flowd run exits")
    return 0
