"""Fault injection for tests only: a process that SIGKILLs itself at a named step.

The crash-window tests (``tests/integration/test_local_crash_windows.py``,
``tests/integration/test_k8s_crash_windows.py``) start a real ``flowd serve`` with

* ``FLOWD_TEST_CRASH_AT=step[,step...]`` -- the steps at which the process kills itself, and
* ``FLOWD_TEST_CRASH_DIR=DIR`` (optional) -- with it, a step kills the process only once per
  ``key`` (an attempt key): the first time it is reached, a marker ``DIR/<step>@<key>`` is created
  (``O_EXCL``) and the process dies; a restarted process with the same settings passes that
  point and dies at the same step of the *next* attempt. Without it, every hit kills.

``kill -9`` is what the step names promise: no ``finally``, no flush, no atexit -- exactly what
an OOM kill or a node failure leaves behind. Unset (always, outside these tests), a crash point
is one dictionary lookup.
"""

from __future__ import annotations

import hashlib
import os
import signal

__all__ = ["CRASH_AT", "CRASH_DIR", "crash_point"]

CRASH_AT = "FLOWD_TEST_CRASH_AT"
CRASH_DIR = "FLOWD_TEST_CRASH_DIR"


def crash_point(step: str, key: str = "") -> None:
    """SIGKILL this process if ``step`` is one of ``$FLOWD_TEST_CRASH_AT`` (see the module doc)."""
    wanted = os.environ.get(CRASH_AT)
    if not wanted or step not in wanted.split(","):
        return
    directory = os.environ.get(CRASH_DIR)
    if directory:
        name = f"{step}@{hashlib.sha1(key.encode()).hexdigest()[:16]}"
        try:
            fd = os.open(os.path.join(directory, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return  # this step already killed a process for this key
        os.write(fd, key.encode())
        os.fsync(fd)
        os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)
