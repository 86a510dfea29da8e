"""Reading the logs of local attempts (``<run dir>/attempts/<op>@<n>/stdout.log, stderr.log``):
for ``flowd logs``, ``flowd run --logs`` and the web UI. Read-only; the executor writes them.

A run of ``flowd run --executor k8s`` has its logs in its pods instead: ``pods.json`` in the run
dir says where (namespace, kubeconfig, context), so ``flowd logs RUN`` reads them through the
pod log API without being told.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["AttemptLogs", "LogFollower", "attempt_logs", "parse_attempt_dir_name", "pod_location", "tail_lines",
           "write_pod_location"]

POD_LOCATION = "pods.json"


def write_pod_location(run_dir: Path, *, namespace: str, kubeconfig: str | None, context: str | None) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    kc = str(Path(kubeconfig).resolve()) if kubeconfig else None
    (run_dir / POD_LOCATION).write_text(json.dumps({"namespace": namespace, "kubeconfig": kc, "context": context}))


def pod_location(run_dir: Path) -> dict[str, str | None] | None:
    """Where a run's pods are (``flowd run --executor k8s``), or None for a run of local processes."""
    try:
        data = json.loads((run_dir / POD_LOCATION).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("namespace"), str) else None

STREAMS = ("stdout", "stderr")
# how the logs of a hook run the run fired are named (flowd logs RUN hook:1c8d68eb)
HOOK_PREFIX = "hook:"
_ATTEMPT_DIR = re.compile(r"^(?P<path>.+)@(?P<attempt>\d+)$")


def parse_attempt_dir_name(name: str) -> tuple[str, int] | None:
    """``outer+inner@2`` -> ``("outer/inner", 2)`` (the inverse of ``attempt_dir_name``)."""
    match = _ATTEMPT_DIR.match(name)
    if match is None:
        return None
    return match["path"].replace("+", "/"), int(match["attempt"])


@dataclass(frozen=True)
class AttemptLogs:
    path: str
    attempt: int
    dir: Path

    def file(self, stream: str) -> Path:
        return self.dir / f"{stream}.log"


def attempt_logs(run_dir: Path, *, op: str | None = None, attempt: int | None = None) -> list[AttemptLogs]:
    """The attempts of a run that have a log directory, in (op path, attempt) order; ``op``
    selects one op (and the ops inside it, for a nested DAG or a matrix), ``attempt`` one attempt.

    The hook runs the run fired (``<run dir>/hooks/<hook run id>/attempts/``) come last, as
    ``hook:<first 8 characters of the hook run id>`` (a hook that is a DAG: ``hook:<id>/<op>``)."""
    found = []
    for prefix, folder in [("", run_dir / "attempts"), *_hook_folders(run_dir)]:
        for path, number, entry in _attempt_dirs(folder, prefix):
            if op is not None and not (path == op or path.startswith((op + "/", op + "["))):
                continue
            if attempt is not None and number != attempt:
                continue
            found.append(AttemptLogs(path, number, entry))
    return sorted(found, key=lambda a: (a.path.startswith(HOOK_PREFIX), a.path, a.attempt))



def _hook_folders(run_dir: Path) -> list[tuple[str, Path]]:
    try:
        hooks = sorted(e for e in (run_dir / "hooks").iterdir() if e.is_dir())
    except OSError:
        return []
    return [(f"{HOOK_PREFIX}{h.name[:8]}", h / "attempts") for h in hooks]


def _attempt_dirs(folder: Path, prefix: str) -> Iterator[tuple[str, int, Path]]:
    """(op path, attempt, dir) of each attempt directory in ``folder``; ``prefix`` names the run
    (a hook run's single op has the path "" and its directory is ``@1``)."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return
    for entry in entries:
        if not entry.is_dir():
            continue
        if prefix and entry.name.startswith("@") and entry.name[1:].isdigit():
            yield prefix, int(entry.name[1:]), entry
            continue
        parsed = parse_attempt_dir_name(entry.name)
        if parsed is None:
            continue
        path, number = parsed
        yield (f"{prefix}/{path}" if prefix else path), number, entry


def tail_lines(path: Path, lines: int, *, max_bytes: int = 65536) -> list[str]:
    """The last ``lines`` non-blank lines of a file (reading at most ``max_bytes`` from its end)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - max_bytes))
            text = f.read().decode(errors="replace")
    except OSError:
        return []
    return [ln for ln in text.splitlines() if ln.strip()][-lines:]


@dataclass
class LogFollower:
    """Hands out the complete new lines of every attempt's logs since the last ``poll``
    (``flowd run --logs``, ``flowd logs -f``). A partial last line waits for its newline,
    unless ``final`` says nothing more will come."""

    run_dir: Path
    op: str | None = None
    attempt: int | None = None
    streams: tuple[str, ...] = STREAMS
    _offsets: dict[Path, int] = field(default_factory=dict)
    _partial: dict[Path, bytes] = field(default_factory=dict)

    def poll(self, *, final: bool = False) -> Iterator[tuple[str, int, str, str]]:
        """Yields ``(op path, attempt, stream, line)``."""
        for item in attempt_logs(self.run_dir, op=self.op, attempt=self.attempt):
            for stream in self.streams:
                path = item.file(stream)
                offset = self._offsets.get(path, 0)
                try:
                    with path.open("rb") as f:
                        f.seek(offset)
                        data = f.read(1 << 20)
                except OSError:
                    continue
                self._offsets[path] = offset + len(data)
                data = self._partial.pop(path, b"") + data
                *complete, rest = data.split(b"\n")
                if rest and final:
                    complete.append(rest)
                elif rest:
                    self._partial[path] = rest
                for line in complete:
                    yield item.path, item.attempt, stream, line.decode(errors="replace")
