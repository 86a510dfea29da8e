"""The executor's in-memory record of each attempt, and the bounded set of finished keys.

An attempt moves ``queued -> creating -> created -> done``; ``done`` means its terminal status
was sent (nothing is sent for it after that). ``reported`` holds every status sent for it, so
each (key, status) goes out at most once per process however often a watch, a relist or a
reconcile shows the same state.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Attempt", "FinishedKeys"]


class Attempt:
    __slots__ = ("key", "run_id", "path", "attempt", "kind", "namespace", "name", "resource", "manifest",
                 "service", "state", "reported", "stop_reason", "ttl", "created_at", "seen", "stuck",
                 "pending")

    def __init__(self, *, key: str, run_id: str, path: str, attempt: int, kind: str, namespace: str,
                 name: str, resource: str) -> None:
        self.key, self.run_id, self.path, self.attempt = key, run_id, path, attempt
        self.kind, self.namespace, self.name, self.resource = kind, namespace, name, resource
        self.manifest: bytes | None = None  # the object to create, as JSON; dropped once created
        self.service: dict[str, Any] | None = None  # the Service of a kind: service op
        self.state = "queued"
        self.reported: set[str] = set()
        self.stop_reason: str | None = None  # set when the engine asked to stop it
        self.ttl: float | None = None
        self.created_at = 0.0  # monotonic, when the create call returned
        self.seen = False  # a watch has shown it
        self.stuck: dict[str, Any] | None = None  # the last pod while it waits in a backoff
        # ended while its log is read to the end for metrics: the latest pod, observed again after
        self.pending: dict[str, Any] | None = None


class FinishedKeys:
    """Keys whose terminal status was sent, oldest first, at most ``limit`` (a replayed
    ``StartOp`` comes soon after its original, so the oldest keys can go)."""

    def __init__(self, limit: int = 500_000) -> None:
        self.limit = limit
        self._keys: dict[str, None] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: str) -> None:
        self._keys[key] = None
        if len(self._keys) > self.limit:
            for old in list(self._keys)[: max(1, self.limit // 10)]:
                del self._keys[old]
