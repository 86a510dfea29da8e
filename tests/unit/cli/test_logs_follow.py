"""``flowd logs RUN -f --state-dir`` on a daemon's run dir (no snapshot, no lock): it follows
while an attempt has no ``exit_code`` and for ``QUIET`` seconds after the last one ended."""

from __future__ import annotations

import os
import time
from pathlib import Path

from flowd.cli.logs import _AttemptsGoing


def test_a_daemon_run_dir_goes_on_while_an_attempt_runs_and_briefly_after(tmp_path: Path) -> None:
    attempts = tmp_path / "attempts"
    (attempts / "a@1").mkdir(parents=True)
    (attempts / "stray.txt").write_text("")  # not an attempt: ignored
    going = _AttemptsGoing(tmp_path)
    assert going()  # a@1 has not ended
    (attempts / "a@1" / "exit_code").write_text("0")
    assert going()  # just ended: the next op may be starting
    old = time.time() - _AttemptsGoing.QUIET - 1
    os.utime(attempts / "a@1" / "exit_code", (old, old))
    assert not going()
    (attempts / "b@1").mkdir()
    assert going()
