"""``python -m flowd.initsteps step STEP_JSON``: one init step, in an init container of the flowd
image (a failure is written to the termination log, which the pod status carries to flowd).

``python -m flowd.initsteps local PLAN_FILE``: ``flowd run``'s wrapper of an attempt with init
steps. It runs the steps in order, then replaces itself with the op's process (``exec``: same
pid, same process group, so stops, timeouts and a dead flowd's leftovers are handled as for any
op). A failing step writes ``{"step", "label", "message"}`` to the plan's ``failed`` file and
exits 1 without starting the op.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import msgspec

from flowd.initsteps.local import run_local
from flowd.initsteps.paths import PathMap
from flowd.initsteps.plan import Step
from flowd.initsteps.runner import StepFailed, run_step

TERMINATION_LOG = "/dev/termination-log"


def _step(raw: str) -> int:
    step = msgspec.json.decode(raw.encode(), type=Step)
    try:
        run_step(step, paths=PathMap({}), env=os.environ, store=_store())
    except StepFailed as exc:
        message = f"{step.label} failed: {exc}"
        print(f"flowd: {message}", file=sys.stderr, flush=True)
        try:
            Path(TERMINATION_LOG).write_text(message[-4000:])
        except OSError:
            pass
        return 1
    print(f"flowd: {step.label} done", file=sys.stderr, flush=True)
    return 0


def _store() -> Any:
    return None  # the artifact store of an init container: see flowd.initsteps.store once it lands


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "step":
        return _step(argv[1])
    if len(argv) == 2 and argv[0] == "local":
        return run_local(argv[1])
    print("usage: python -m flowd.initsteps step STEP_JSON | local PLAN_FILE", file=sys.stderr)
    return 2


if __name__ == "__main__":
    # an artifacts step loads the S3 client: end as flowd.procexit explains, with this code
    from flowd.procexit import exit_process

    exit_process(main(sys.argv[1:]))
