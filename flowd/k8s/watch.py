"""List-then-watch of one resource in one namespace, forever (three nested loops, as kopf's).

* :func:`watch_forever` only reconnects: any failure is logged and retried after a jittered,
  capped exponential backoff (full jitter, reset after a healthy stream). It never returns.
* :func:`list_then_watch` lists (paged), hands the complete list to ``sink.listed`` (the
  reconcile point: whatever flowd believes exists but is not in the list is gone), then watches
  from the list's resourceVersion, moving it forward on every event including BOOKMARKs. It
  returns on ``410 Gone`` (the version is too old), so the outer loop lists again.
* :func:`watch_once` is one watch request with ``allowWatchBookmarks`` and an explicit
  ``timeoutSeconds``: kubernetes_asyncio's own Watch would reconnect and swallow a 410 by itself,
  hiding decisions this loop must make.

Events reach the sink in order, per namespace; the sink must not block for long (it only
updates in-memory state and calls ``send``).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import anyio
import structlog

from flowd.k8s.client import ApiError, Kube

__all__ = ["WatchSink", "watch_forever", "list_then_watch", "watch_once", "Backoff", "Gone"]

log = structlog.get_logger("flowd.k8s.watch")


class WatchSink(Protocol):
    def listed(self, namespace: str, resource: str, items: list[dict[str, Any]]) -> None: ...

    def event(self, namespace: str, resource: str, kind: str, obj: dict[str, Any]) -> None: ...


class Gone(Exception):
    """410: the resourceVersion is no longer in the watch cache; list again."""


class Backoff:
    """Full-jitter exponential backoff: ``uniform(0, min(max, base * 2**n))``."""

    def __init__(self, base: float, cap: float, rng: random.Random | None = None) -> None:
        self.base, self.cap, self.n = base, cap, 0
        self.rng = rng or random.Random()

    def next(self) -> float:
        delay = self.rng.uniform(0, min(self.cap, self.base * 2 ** self.n))
        self.n = min(self.n + 1, 30)
        return delay

    def reset(self) -> None:
        self.n = 0


async def watch_forever(kube: Kube, path: str, *, namespace: str, resource: str, selector: str,
                        sink: WatchSink, timeout: int, backoff: Backoff,
                        ready: anyio.Event | None = None, on_failure: Callable[[ApiError], None] | None = None,
                        _iterations: int | None = None) -> None:
    """Keep ``sink`` in sync with the objects at ``path`` matching ``selector``. ``ready`` is
    set after the first complete list."""
    n = 0
    while _iterations is None or n < _iterations:
        n += 1
        try:
            await list_then_watch(kube, path, namespace=namespace, resource=resource, selector=selector,
                                  sink=sink, timeout=timeout, ready=ready, backoff=backoff)
            continue  # 410: list again at once
        except ApiError as exc:
            if on_failure is not None:
                on_failure(exc)
            delay = backoff.next()
            log.warning("watch_failed", namespace=namespace, resource=resource, error=str(exc), retry_in=round(delay, 2))
        await anyio.sleep(delay)


async def list_then_watch(kube: Kube, path: str, *, namespace: str, resource: str, selector: str,
                          sink: WatchSink, timeout: int, ready: anyio.Event | None = None,
                          backoff: Backoff | None = None) -> None:
    items: list[dict[str, Any]] = []
    cont: str | None = None
    while True:
        page = await kube.request("GET", path, query={"labelSelector": selector, "limit": 500, "continue": cont})
        items.extend(page.get("items") or [])
        meta = page.get("metadata") or {}
        cont = meta.get("continue")
        if not cont:
            break
    version = str(meta.get("resourceVersion") or "")
    sink.listed(namespace, resource, items)
    del items
    if ready is not None:
        ready.set()
    try:
        while True:
            async for kind, obj in watch_once(kube, path, selector=selector, resource_version=version, timeout=timeout):
                rv = (obj.get("metadata") or {}).get("resourceVersion")
                if rv:
                    version = rv
                if kind != "BOOKMARK":
                    sink.event(namespace, resource, kind, obj)
                if backoff is not None:
                    backoff.reset()
    except Gone:
        log.info("watch_gone_relist", namespace=namespace, resource=resource, resource_version=version)
        return
    except ApiError as exc:
        if exc.gone:  # a 410 as the HTTP answer rather than as an ERROR event
            log.info("watch_gone_relist", namespace=namespace, resource=resource, resource_version=version)
            return
        raise


async def watch_once(kube: Kube, path: str, *, selector: str, resource_version: str,
                     timeout: int) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """One watch request; ends when the server closes it after ``timeout`` seconds."""
    query = {
        "labelSelector": selector,
        "resourceVersion": resource_version,
        "allowWatchBookmarks": "true",
        "timeoutSeconds": timeout,
    }
    # bookmarks come about once a minute; twice the server timeout means the stream is dead
    async for event in kube.lines(path, query=query, inactivity=max(90.0, timeout + 30.0)):
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            code = obj.get("code")
            if code == 410:
                raise Gone(obj.get("message"))
            raise ApiError(int(code or 0), str(obj.get("reason") or "WatchError"), str(obj.get("message") or obj))
        if kind in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK"):
            yield kind, obj
        else:
            log.warning("watch_unknown_event", type=kind)
