"""Fault injection for tests of poison-record handling, off unless ``FLOWD_TEST_FAULTS=1``.

A ``runs`` record whose bytes contain ``flowd-test-fault:kill`` makes the daemon SIGKILL itself
while handling it (what an out-of-memory kill or a segfault in a library does); one containing
``flowd-test-fault:raise`` makes its handling raise. Tests put the marker in a submission's
``params``. With the variable unset (always, in production) the check is one boolean test.
"""

from __future__ import annotations

import os
import signal

__all__ = ["CRASH_POINTS", "ENABLED", "inject"]

ENABLED = os.environ.get("FLOWD_TEST_FAULTS") == "1"
# kill points of flowd.faults.crash_point are set (FLOWD_TEST_CRASH_AT): the daemon waits for
# the step before one to reach the broker, so the kill lands where its name says
CRASH_POINTS = bool(os.environ.get("FLOWD_TEST_CRASH_AT"))


class InjectedFault(RuntimeError):
    """Raised for a ``flowd-test-fault:raise`` record."""


def inject(value: bytes | None) -> None:
    if not ENABLED or value is None or b"flowd-test-fault:" not in value:
        return
    if b"flowd-test-fault:kill" in value:
        os.kill(os.getpid(), signal.SIGKILL)
    if b"flowd-test-fault:raise" in value:
        raise InjectedFault("injected by a flowd-test-fault:raise record (FLOWD_TEST_FAULTS=1)")
