"""Pods' logs through the Kubernetes pod log API: ``flowd logs`` and the executor's metric lines.

``GET /api/v1/namespaces/NS/pods/NAME/log`` is proxied by the apiserver to the kubelet of the
pod's node. Three things about it shape this module:

* A followed stream (``follow=true``) ends when the container ends, when the kubelet or the
  apiserver closes it (restart, timeout), or never (kwok, the test cluster's fake kubelet, keeps
  it open). So :class:`PodLog` asks for ``timestamps=true``, reconnects with ``sinceTime`` and
  drops the lines it already gave (same or earlier timestamp), and is told from outside when the
  pod has ended (``done``): it then reads on for a short drain, stops the stream and makes one
  last plain read, so a container's last lines are never lost and never doubled.
* Before the container starts, the kubelet answers 400 ("waiting to start"): followed logs wait.
* The pod is found by the identity labels the executor puts on it (run, op, attempt) and its
  exact ``flowd.io/op-path`` annotation; the main container is the ``flowd.io/main-container``
  annotation, else the pod's first container.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, TextIO

import anyio

from flowd.k8s import naming as N
from flowd.k8s.client import ApiError, Kube, load_client

__all__ = ["PodLog", "PodLogError", "PodRef", "find_pods", "main_container", "pod_done", "print_run_logs"]

# how long a followed log is read on after its pod ended (lines still in flight), and how often
# a follower looks at the pod to see whether it ended
DRAIN_SECONDS = 1.0
POLL_SECONDS = 1.0
RETRY_SECONDS = 0.5
QUIET_SECONDS = 5.0

_STAMP = re.compile(rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z ")


class PodLogError(Exception):
    """One line for the user: what could not be read, and why."""


class PodRef(NamedTuple):
    name: str
    path: str
    attempt: int
    container: str


def _stamp_key(raw: bytes) -> tuple[tuple[bytes, int] | None, bytes]:
    """``2026-12-05T15:18:48.0785Z text`` -> ((seconds, nanoseconds), b"text"); no stamp: (None, raw).
    RFC3339Nano drops trailing zeros, so stamps compare as numbers, not as strings."""
    m = _STAMP.match(raw)
    if m is None:
        return None, raw
    return (m.group(1), int((m.group(2) or b"0").ljust(9, b"0"))), raw[m.end():]


def _since(key: tuple[bytes, int]) -> str:
    return f"{key[0].decode()}.{key[1]:09d}Z"


def pod_done(pod: dict[str, Any] | None) -> bool:
    """The pod ended (or is gone): its log will not grow."""
    if pod is None:
        return True
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def main_container(pod: dict[str, Any]) -> str:
    """The container whose log is the op's: ``flowd.io/main-container``, else the first."""
    ann = (pod.get("metadata") or {}).get("annotations") or {}
    containers = [c.get("name", "") for c in (pod.get("spec") or {}).get("containers", [])]
    return str(ann.get(N.A_MAIN) or (containers[0] if containers else ""))


def _ref(pod: dict[str, Any]) -> PodRef:
    meta = pod["metadata"]
    ann = meta.get("annotations") or {}
    return PodRef(meta["name"], ann.get(N.A_OP_PATH, ""), int(ann.get(N.A_ATTEMPT, "0") or 0), main_container(pod))


def _under(path: str, op: str | None) -> bool:
    return op is None or path == op or path.startswith((op + "/", op + "["))


def _refs(items: list[dict[str, Any]], *, run_id: str, op: str | None, attempt: int | None) -> list[PodRef]:
    refs = [_ref(p) for p in items if (p["metadata"].get("annotations") or {}).get(N.A_RUN_ID) == run_id]
    refs = [r for r in refs if _under(r.path, op) and (attempt is None or r.attempt == attempt)]
    latest: dict[str, PodRef] = {}
    for r in sorted(refs, key=lambda r: (r.path, r.attempt)):
        latest[r.path] = r
    return sorted(latest.values(), key=lambda r: r.path)


async def _run_pods(kube: Kube, *, namespace: str, run_id: str) -> list[dict[str, Any]]:
    found = await kube.request("GET", f"/api/v1/namespaces/{namespace}/pods",
                               query={"labelSelector": N.selector({N.L_RUN: N.label_value(run_id)})})
    return list(found.get("items", []))


def _in_start_order(refs: list[PodRef], items: list[dict[str, Any]]) -> list[tuple[PodRef, bool]]:
    """``refs`` in the order their pods were created (then by op path), each with whether its
    pod had already ended when listed."""
    pods = {p["metadata"]["name"]: p for p in items}

    def key(ref: PodRef) -> tuple[str, str]:
        return (str((pods.get(ref.name) or {}).get("metadata", {}).get("creationTimestamp") or ""), ref.path)

    return [(ref, ref.name in pods and pod_done(pods[ref.name])) for ref in sorted(refs, key=key)]


async def find_pods(kube: Kube, *, namespace: str, run_id: str, op: str | None = None,
                    attempt: int | None = None) -> list[PodRef]:
    """The run's pods (of ``op`` and the ops inside it), the latest attempt of each op unless
    ``attempt`` is given, ordered by op path."""
    items = await _run_pods(kube, namespace=namespace, run_id=run_id)
    return _refs(items, run_id=run_id, op=op, attempt=attempt)


class PodLog:
    """One container's log, read once or followed across reconnects without repeating a line."""

    def __init__(self, kube: Kube, *, namespace: str, name: str, container: str) -> None:
        self.kube = kube
        self.path = f"/api/v1/namespaces/{namespace}/pods/{name}/log"
        self.container = container
        self.last: tuple[bytes, int] | None = None  # stamp of the last line given
        self.at_last = 0  # lines given with exactly that stamp
        self._skip = 0  # after a reconnect: lines of that stamp to skip (given before)
        self._again = 0

    def _fresh(self, raw: bytes) -> bytes | None:
        key, text = _stamp_key(raw)
        if key is None:
            return text
        if self.last is not None and key < self.last:
            return None  # before what was given: a reconnect's sinceTime is cut to seconds
        if key == self.last:
            self._again += 1
            if self._again <= self._skip:
                return None  # a reconnect from sinceTime repeats the lines of that instant
            self.at_last += 1
            return text
        self.last, self.at_last, self._skip, self._again = key, 1, 0, 0
        return text

    def _query(self, *, follow: bool) -> dict[str, Any]:
        q: dict[str, Any] = {"container": self.container, "timestamps": "true"}
        if follow:
            q["follow"] = "true"
        if self.last is not None:
            # inclusive (and cut to seconds by the apiserver): what was given comes again
            q["sinceTime"] = _since(self.last)
            self._skip, self._again = self.at_last, 0
        return q

    async def read(self, emit: Callable[[str], None]) -> None:
        """What the log holds now (the lines not given yet)."""
        async for raw in self.kube.text_lines(self.path, query=self._query(follow=False), inactivity=30.0):
            text = self._fresh(raw)
            if text is not None:
                emit(text.decode(errors="replace"))

    async def follow(self, emit: Callable[[str], None], done: Callable[[], Awaitable[bool]], *,
                     poll: float = POLL_SECONDS, drain: float = DRAIN_SECONDS) -> None:
        """Every line, as it comes, until ``done()`` says the pod ended: then ``drain`` seconds
        more, and one last plain read for what the stream had not delivered."""
        ended = anyio.Event()

        async def watch_end() -> None:
            while not await done():
                await anyio.sleep(poll)
            ended.set()

        async def stream() -> None:
            while not ended.is_set():
                try:
                    async for raw in self.kube.text_lines(self.path, query=self._query(follow=True)):
                        text = self._fresh(raw)
                        if text is not None:
                            emit(text.decode(errors="replace"))
                except ApiError as exc:
                    if exc.status not in (0, 400, 404, 500, 502, 503):
                        raise
                # closed (container ended, server restart) or not started yet: look again
                with anyio.move_on_after(RETRY_SECONDS):
                    await ended.wait()

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_end)
            tg.start_soon(stream)
            await ended.wait()
            await anyio.sleep(drain)
            tg.cancel_scope.cancel()
        try:
            await self.read(emit)
        except ApiError:
            pass  # the pod is gone: what was streamed is all there is


async def print_run_logs(*, kubeconfig: str | None, context: str | None = None, namespace: str, run_id: str, op: str | None,
                         attempt: int | None, follow: bool, out: TextIO,
                         run_active: Callable[[], bool] | None = None) -> None:
    """``flowd logs RUN [OP] --k8s``: the logs of the run's pods, each line prefixed by
    ``[op]`` (``[op#2]`` for attempt 2) unless one op's are asked for. ``follow``: new lines as
    they come, and pods that start later, until every pod ended and ``run_active()`` (when
    known) says the run is over."""
    try:
        api = await load_client(kubeconfig=kubeconfig, context=context, pool_size=8)
    except Exception as exc:  # a missing or bad kubeconfig: say so in one line
        raise PodLogError(f"cannot load the kubeconfig: {' '.join(str(exc).split())}") from exc
    kube = Kube(api, pool_size=64)
    try:
        await _print(kube, namespace=namespace, run_id=run_id, op=op, attempt=attempt, follow=follow, out=out,
                     run_active=run_active)
    except ApiError as exc:
        raise PodLogError(str(exc)) from exc
    finally:
        await kube.close()
        await api.close()


async def _print(kube: Kube, *, namespace: str, run_id: str, op: str | None, attempt: int | None, follow: bool,
                 out: TextIO, run_active: Callable[[], bool] | None) -> None:
    items = await _run_pods(kube, namespace=namespace, run_id=run_id)
    refs = _refs(items, run_id=run_id, op=op, attempt=attempt)
    if not refs and not follow:
        what = f" op {op!r}" if op else ""
        raise PodLogError(f"no pod of run {run_id}{what}" + (f" attempt {attempt}" if attempt else "")
                          + f" in namespace {namespace!r} (finished pods may have been deleted by their ttl)")
    single = op is not None and len(refs) == 1 and refs[0].path == op

    def emitter(ref: PodRef) -> Callable[[str], None]:
        label = ref.path if ref.attempt <= 1 else f"{ref.path}#{ref.attempt}"

        def emit(line: str) -> None:
            out.write(line + "\n" if single else f"[{label}] {line}\n")
            out.flush()
        return emit

    if not follow:
        for ref in refs:
            log = PodLog(kube, namespace=namespace, name=ref.name, container=ref.container)
            try:
                await log.read(emitter(ref))
            except ApiError as exc:
                print(f"flowd logs: pod {ref.name}: {exc}", file=sys.stderr)
        return

    def done_of(ref: PodRef) -> Callable[[], Awaitable[bool]]:
        async def done() -> bool:
            try:
                pod = await kube.request("GET", f"/api/v1/namespaces/{namespace}/pods/{ref.name}")
            except ApiError as exc:
                return exc.not_found
            return pod_done(pod)
        return done

    followed: set[str] = set()
    quiet_since: float | None = None
    async with anyio.create_task_group() as tg:
        while True:
            refs = _refs(items, run_id=run_id, op=op, attempt=attempt)
            for ref, ended_before in _in_start_order(refs, items):
                if ref.name in followed:
                    continue
                followed.add(ref.name)
                log = PodLog(kube, namespace=namespace, name=ref.name, container=ref.container)
                if ended_before:
                    # its log is complete: read it now, in start order, so an op that ended
                    # before `flowd logs` looked is not printed after the ops that followed it
                    try:
                        await log.read(emitter(ref))
                    except ApiError as exc:
                        print(f"flowd logs: pod {ref.name}: {exc}", file=sys.stderr)
                else:
                    tg.start_soon(log.follow, emitter(ref), done_of(ref))
            if (single or attempt is not None) and refs:
                break  # one pod: its follower (or the read above) ends with it
            await anyio.sleep(POLL_SECONDS)
            items = await _run_pods(kube, namespace=namespace, run_id=run_id)
            refs = _refs(items, run_id=run_id, op=op, attempt=attempt)
            mine = [p for p in items if _ref(p).name in {r.name for r in refs}]
            ended = bool(mine) and all(pod_done(p) for p in mine)
            active = run_active() if run_active is not None else None
            if active is False and (ended or not mine):
                break
            if active is None:
                # nothing says whether the run goes on (a daemon's run): it is taken to be over
                # once every pod of it ended and none started for QUIET_SECONDS
                now = anyio.current_time()
                quiet_since = (quiet_since or now) if ended else None
                if quiet_since is not None and now - quiet_since >= QUIET_SECONDS:
                    break
