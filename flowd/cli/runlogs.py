"""``flowd run --logs``: the jobs' output printed while they run, each line prefixed by its op
path, through the progress display (so a live view stays intact). Local jobs are read from their
attempt directories; pods (``--executor k8s``) through the pod log API, as ``flowd logs -f``
reads them (flowd.k8s.podlogs). Both run in a thread beside the driver until the run ends."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

__all__ = ["streaming_logs"]

# after the run ended, how long the pod log thread may still read (lines in flight, the drain
# of each follower) before flowd run stops waiting for it
POD_LOGS_JOIN_SECONDS = 30.0


def streaming_logs(run_dir: Path, progress: Any, *, enabled: bool, settings: Any = None) -> Any:
    """A context manager: the log stream of the run in ``run_dir`` while the block runs.
    ``settings`` (the k8s executor's): its pods' logs instead of local attempt dirs."""
    if settings is not None:
        return _PodLogStream(run_dir, progress, enabled=enabled, settings=settings)
    return _LocalLogStream(run_dir, progress, enabled=enabled)


class _LocalLogStream:
    """Polls the attempt dirs' stdout/stderr files for new lines."""

    def __init__(self, run_dir: Path, progress: Any, *, enabled: bool) -> None:
        from flowd.runtime.logs import LogFollower

        self.enabled = enabled
        self.follower = LogFollower(run_dir)
        self.progress = progress
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="flowd-logs", daemon=True)

    def _flush(self, *, final: bool = False) -> None:
        for path, attempt, stream, line in self.follower.poll(final=final):
            label = path if attempt <= 1 else f"{path}#{attempt}"
            self.progress.note(f"[{label}{' stderr' if stream == 'stderr' else ''}] {line}")

    def _run(self) -> None:
        while not self.stop.wait(0.2):
            self._flush()

    def __enter__(self) -> _LocalLogStream:
        if self.enabled:
            self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self.stop.set()
            self.thread.join()
            self._flush(final=True)


class _Lines:
    """A text stream that hands each complete line to ``progress.note``."""

    def __init__(self, progress: Any) -> None:
        self.progress = progress
        self.buffer = ""

    def write(self, text: str) -> int:
        self.buffer += text
        *lines, self.buffer = self.buffer.split("\n")
        for line in lines:
            self.progress.note(line)
        return len(text)

    def flush(self) -> None:
        pass


class _PodLogStream:
    """Follows every pod of the run (and the ones that start later) in its own event loop, until
    the run has ended and every followed pod ended too; lines are ``[op] text`` (``[op#2]`` for
    attempt 2), as ``flowd logs RUN -f`` prints them."""

    def __init__(self, run_dir: Path, progress: Any, *, enabled: bool, settings: Any) -> None:
        self.enabled = enabled
        self.run_id = run_dir.name
        self.progress = progress
        self.settings = settings
        self.ended = threading.Event()
        self.thread = threading.Thread(target=self._run, name="flowd-pod-logs", daemon=True)

    def _run(self) -> None:
        import anyio

        from flowd.k8s.podlogs import PodLogError, print_run_logs

        s = self.settings
        try:
            anyio.run(lambda: print_run_logs(kubeconfig=s.kubeconfig, context=s.context, namespace=s.namespace,
                                             run_id=self.run_id, op=None, attempt=None, follow=True,
                                             out=_Lines(self.progress),  # type: ignore[arg-type]
                                             run_active=lambda: not self.ended.is_set()))
        except PodLogError as exc:
            self.progress.note(f"flowd run: --logs: {exc}")
        except Exception as exc:  # noqa: BLE001 - the run goes on without its log lines; say why once
            self.progress.note(f"flowd run: --logs stopped: {type(exc).__name__}: {' '.join(str(exc).split())}")

    def __enter__(self) -> _PodLogStream:
        if self.enabled:
            self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self.ended.set()
            self.thread.join(POD_LOGS_JOIN_SECONDS)
            if self.thread.is_alive():
                self.progress.note(f"flowd run: --logs: gave up waiting for the pods' last lines after "
                                   f"{POD_LOGS_JOIN_SECONDS:.0f}s (flowd logs {self.run_id} reads them)")
