"""Outputs too large for a termination message, read back from the artifact store.

The ``flowd-artifacts`` sidecar (flowd.artifacts.podside) stores an attempt's report (its
outputs and the names it uploaded) at :func:`flowd.artifacts.layout.report_prefix` when it
does not fit the kubelet's 4 KiB, and leaves a pointer ``{"at", "bytes", "sha256"}`` in its
termination message. The executor reads the report here before it reports the op succeeded.

The key is computed from the attempt's identity (run, op, attempt), never taken from the pod:
a pod cannot make flowd read another run's files. The pointer's size is checked against
``max_outputs_bytes`` before anything is downloaded, and its digest after: a report replaced
or cut short is refused, not half-read. Reading is idempotent, so after a crash the next owner
reads the same report again from the same pod.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import anyio

from flowd.artifacts.config import StoreConfig, open_store
from flowd.artifacts.layout import REPORT_FILE, report_prefix
from flowd.artifacts.store import ArtifactStoreError, Store
from flowd.k8s.config import Settings

__all__ = ["ReportError", "ReportReader"]

# a store that does not answer is retried this many times (0.5 s, 1 s, 2 s... apart) before the
# op is failed with reason OutputsUnavailable
TRIES = 4


class ReportError(Exception):
    """The report cannot be read or is not the one the pod pointed at."""


class ReportReader:
    def __init__(self, settings: Settings, *, store: Store | None = None, backoff: float = 0.5) -> None:
        self.settings = settings
        self._store = store
        self.backoff = backoff

    def store(self) -> Store:
        if self._store is None:
            # the executor's own S3 client: credentials from its environment (AWS_*)
            config = StoreConfig(url=self.settings.artifacts_store, endpoint=self.settings.artifacts_endpoint,
                                 region=self.settings.artifacts_region)
            try:
                self._store = open_store(config, default_folder=Path("."))
            except ArtifactStoreError as exc:
                raise ReportError(str(exc)) from exc
        return self._store

    async def read(self, run_id: str, path: str, attempt: int, pointer: dict[str, Any]) -> dict[str, Any]:
        """The report of that attempt, checked against ``pointer``. Raises ReportError."""
        try:
            size, digest = int(pointer["bytes"]), str(pointer["sha256"])
        except (KeyError, TypeError, ValueError):
            raise ReportError(f"the artifacts sidecar's pointer is malformed: {pointer!r}") from None
        limit = self.settings.max_outputs_bytes
        # the report carries the outputs plus the uploaded names: allow the names' share on top
        if size > limit + 65536:
            raise ReportError(f"the outputs report is {size} bytes, over the limit max_outputs_bytes={limit}")
        store = self.store()
        prefix = report_prefix(run_id, path, attempt)
        where = store.location(f"{prefix}/{REPORT_FILE}")
        last: Exception | None = None
        for i in range(TRIES):
            if i:
                await anyio.sleep(self.backoff * 2 ** (i - 1))
            try:
                # what is stored there, not only what the pointer claims, is bounded
                stored = sum(o.size for o in await store.list(prefix))
                if stored > limit + 65536:
                    raise ReportError(f"{stored} bytes are stored at {store.location(prefix)}, over the limit "
                                      f"max_outputs_bytes={limit}")
                data = await self._get(store, prefix)
                break
            except (ArtifactStoreError, OSError) as exc:
                last = exc
        else:
            raise ReportError(f"cannot read the outputs report {where}: {last}")
        if len(data) != size or hashlib.sha256(data).hexdigest() != digest:
            raise ReportError(f"the outputs report {where} is not the one the pod wrote "
                              f"({len(data)} bytes, expected {size} with sha256 {digest[:12]}…)")
        try:
            report = json.loads(data)
        except ValueError as exc:
            raise ReportError(f"the outputs report {where} is not valid JSON: {exc}") from exc
        if not isinstance(report, dict):
            raise ReportError(f"the outputs report {where} must be a JSON object")
        return report

    @staticmethod
    async def _get(store: Store, prefix: str) -> bytes:
        with tempfile.TemporaryDirectory(prefix="flowd-report-") as tmp:
            await store.get(prefix, Path(tmp))
            return await anyio.Path(Path(tmp) / REPORT_FILE).read_bytes()
