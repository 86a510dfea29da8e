"""flowd.procexit: a process that loaded the S3 client (a native Tokio runtime) ends without the
interpreter's teardown, which could abort it (SIGABRT) after its work succeeded; others exit
normally. Checked on real subprocesses: the exit code, the flushed output, and whether the
interpreter's teardown (an ``atexit`` hook) ran."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import atexit, sys
{load}
atexit.register(lambda: print("teardown ran", flush=True))
print("work done", end="")  # unflushed: exit_process must flush it
from flowd.procexit import exit_process
exit_process(3)
"""


@pytest.mark.parametrize(("load", "teardown"), [("import obstore", False), ("", True)])
def test_exit_code_and_output_survive_and_teardown_is_skipped_only_with_the_native_runtime(load: str,
                                                                                             teardown: bool) -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT.format(load=load)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.startswith("work done")
    assert ("teardown ran" in proc.stdout) is teardown


def test_the_flowd_command_ends_through_exit_process() -> None:
    """``python -m flowd`` and the console script keep their exit codes (2: usage error)."""
    proc = subprocess.run([sys.executable, "-m", "flowd", "no-such-command"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
