"""Process-group helpers for the local executor: signalling a group, and finding and killing
what a dead flowd left running (``--resume``).

A flowd killed with ``kill -9`` leaves its op processes orphaned: nobody reaps them or reads
their exit codes, so they cannot be taken over, only killed, before the run is resumed or
started afresh. They are recognised by the ``FLOWD_OUTPUTS`` path in their environment, which
lies in the run's directory and is inherited by every descendant (Linux, through ``/proc``);
elsewhere, by the process groups recorded in the attempts' ``pid.json``.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

__all__ = ["is_live", "kill_leftovers", "pids_with_env", "signal_group", "start_time"]

_HAS_PROC = Path("/proc/self/environ").exists()


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to a process group; False when there is no such group (any more)."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux, clock ticks since boot), recorded in
    ``pid.json`` so a later reader can tell the process from an unrelated one with a reused pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def is_live(pid: int) -> bool:
    """A process that exists and is not a zombie (without /proc: that exists)."""
    if not _HAS_PROC:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def pids_with_env(prefix: bytes) -> list[int]:
    """Live processes (that this user may inspect) with an environment entry starting with
    ``prefix`` (Linux)."""
    found = []
    me = os.getpid()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == me:
            continue
        try:
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue  # gone, or not ours to read
        if any(entry.startswith(prefix) for entry in environ.split(b"\0")) and is_live(int(proc.name)):
            found.append(int(proc.name))
    return found


def kill_leftovers(run_dir: Path, *, wait: float = 1.0) -> list[int]:
    """SIGKILL whatever a dead flowd left running for the run in ``run_dir``, and wait (at most
    ``wait`` seconds) until it is gone. Returns the pids killed.

    With /proc: every process whose ``FLOWD_OUTPUTS`` lies under ``run_dir/attempts/`` (this
    also finds processes whose leader died first, and those spawned by a flowd killed before it
    wrote ``pid.json``). Without: the group in each attempt's ``pid.json`` that has no
    ``result.json``."""
    attempts = run_dir / "attempts"
    if _HAS_PROC:
        pids = pids_with_env(f"FLOWD_OUTPUTS={attempts}{os.sep}".encode())
    else:
        pids = []
        for pid_file in attempts.glob("*/pid.json"):
            if (pid_file.parent / "result.json").exists():
                continue
            try:
                pids.append(int(json.loads(pid_file.read_text())["pid"]))
            except (OSError, ValueError, KeyError, TypeError):
                continue
    for pid in pids:
        signal_group(pid, signal.SIGKILL)
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    deadline = time.monotonic() + wait
    while any(is_live(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    return pids
