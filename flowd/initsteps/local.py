"""``flowd run``'s wrapper of an attempt with init steps (``python -m flowd.initsteps local PLAN``):
the steps in order, then ``exec`` of the op's command (same pid and process group). A failing
step writes ``{"step", "label", "message"}`` to the plan's ``failed`` file and exits 1 without
starting the op. The plan is written by flowd.runtime.initlocal; it holds paths, never secret
values (those are read from their files here, right before the step or the op that needs them).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import msgspec

from flowd.initsteps.envsources import EnvSourceError, read_env_sources
from flowd.initsteps.paths import PathMap
from flowd.initsteps.plan import Step
from flowd.initsteps.runner import StepFailed, run_step

__all__ = ["LocalPlan", "run_local"]


class LocalPlan(msgspec.Struct, kw_only=True):
    steps: list[Step]
    paths: dict[str, str]
    argv: list[str]
    cwd: str
    failed: str
    # where the steps run, and the op when ``cwd`` does not exist
    fallback_cwd: str = "."
    # env sources (flowd.initsteps.envsources) of each step's connection, and of the op's
    step_env: dict[str, list[dict[str, Any]]] = {}
    main_env: list[dict[str, Any]] = []
    # create these local folders first (the context volumes)
    folders: list[str] = []


def run_local(plan_file: str) -> int:
    plan = msgspec.json.decode(Path(plan_file).read_bytes(), type=LocalPlan)
    paths = PathMap(plan.paths)
    for folder in plan.folders:
        os.makedirs(folder, exist_ok=True)

    def fail(step: Step | None, message: str) -> int:
        record = {"step": step.index if step else None, "label": step.label if step else "op", "message": message}
        Path(plan.failed).write_text(msgspec.json.encode(record).decode())
        print(f"--- flowd: {message} ---", file=sys.stderr, flush=True)
        return 1

    for step in plan.steps:
        print(f"--- flowd: {step.label} ---", file=sys.stderr, flush=True)
        try:
            env = {**os.environ, **read_env_sources(plan.step_env.get(str(step.index), []))}
            run_step(step, paths=paths, env=env, cwd=plan.fallback_cwd)
        except (StepFailed, EnvSourceError) as exc:
            return fail(step, f"{step.label} failed: {exc}")
    try:
        env = {**os.environ, **read_env_sources(plan.main_env)}
    except EnvSourceError as exc:
        return fail(None, f"connections: {exc}")
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.chdir(plan.cwd if os.path.isdir(plan.cwd) else plan.fallback_cwd)
        os.execvpe(plan.argv[0], plan.argv, env)
    except OSError as exc:
        return fail(None, f"cannot start {plan.argv[0]!r}: {exc.strerror or exc}")
    return 1  # not reached


