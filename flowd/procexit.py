"""How a flowd process ends once its work is done.

The S3 store's client (obstore) runs a process-wide Tokio runtime whose worker threads are never
shut down. When the interpreter finalizes while one of them still touches a Python object (a
waker, a dropped reference), Rust panics on a thread with no Python frame to catch it and the
process aborts: SIGABRT, exit -6, after all the work succeeded and was reported (seen in about
1 of 12 `flowd gc` runs against an S3 store; the same would fail a pod's uploader sidecar). This
is the known pyo3-async-runtimes shutdown race, and the library offers no runtime shutdown.

So a process that used the S3 client ends with ``os._exit`` once the standard streams and the
logging handlers are flushed: nothing of the interpreter's teardown is left to race with those
threads. Every file flowd writes is closed (and, where it matters, fsynced) by the code that
wrote it before the command returns; the interpreter's teardown is not relied on for that.
Processes that never loaded the client exit normally.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn

__all__ = ["exit_process"]

_NATIVE_RUNTIMES = ("obstore",)


def exit_process(code: int) -> NoReturn:
    """End the process with ``code``: ``sys.exit`` normally, ``os._exit`` after flushing when a
    native async runtime was loaded (see the module's docstring)."""
    if not any(name in sys.modules for name in _NATIVE_RUNTIMES):
        sys.exit(code)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed or broken pipe: nothing more can be written to it anyway
    os._exit(code)
