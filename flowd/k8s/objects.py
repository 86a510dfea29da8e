"""Paths of the objects flowd manages and the few single-object calls on them.

Kept apart from the executor's bookkeeping: these functions know URLs and HTTP answers, not
attempts. Removing flowd's finalizer is a JSON patch guarded by a ``test`` op on the entry's
index, so a concurrent change of the finalizer list can never make flowd remove someone else's
finalizer; on a mismatch it reads the object and tries again.
"""

from __future__ import annotations

from typing import Any

import anyio
import structlog

from flowd.k8s import naming as N
from flowd.k8s.client import PATCH_JSON, ApiError, Kube
from flowd.k8s.kubeflow import KUBEFLOW_KINDS
from flowd.k8s.kubeflow import resource_path as kubeflow_path

__all__ = ["collection_path", "object_path", "remove_finalizer", "delete"]

log = structlog.get_logger("flowd.k8s")


def collection_path(resource: str, namespace: str) -> str:
    """``pods`` or a Kubeflow plural (``tfjobs``...) in a namespace."""
    if resource == "pods":
        return f"/api/v1/namespaces/{namespace}/pods"
    kind = next(k for k, v in KUBEFLOW_KINDS.items() if v.plural == resource)
    return kubeflow_path(kind, namespace)


def object_path(resource: str, namespace: str, name: str) -> str:
    return f"{collection_path(resource, namespace)}/{name}"


async def remove_finalizer(kube: Kube, url: str, finalizers: list[str] | None = None) -> None:
    """Drop ``flowd.io/report`` from the object's finalizers; ``finalizers`` is the list as last
    seen (saves a read when it is still current). Gone already is fine."""
    for _ in range(5):
        try:
            if finalizers is None:
                obj = await kube.request("GET", url)
                finalizers = (obj.get("metadata") or {}).get("finalizers") or []
            if N.FINALIZER not in finalizers:
                return
            i = finalizers.index(N.FINALIZER)
            patch = [{"op": "test", "path": f"/metadata/finalizers/{i}", "value": N.FINALIZER},
                     {"op": "remove", "path": f"/metadata/finalizers/{i}"}]
            await kube.request("PATCH", url, body=patch, content_type=PATCH_JSON)
            return
        except ApiError as exc:
            if exc.not_found:
                return
            if exc.status not in (409, 422) and not exc.retriable:
                log.warning("finalizer_remove_failed", url=url, error=str(exc))
                return
            finalizers = None  # stale: read it again
            await anyio.sleep(0.1)


async def delete(kube: Kube, url: str, *, grace: int | None = None) -> bool:
    """Delete (background propagation); False if it did not exist."""
    body: dict[str, Any] = {"propagationPolicy": "Background"}
    if grace is not None:
        body["gracePeriodSeconds"] = grace
    try:
        await kube.request("DELETE", url, body=body)
    except ApiError as exc:
        if exc.not_found:
            return False
        raise
    return True
