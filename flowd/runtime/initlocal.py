"""An attempt's init steps and connections under ``flowd run``: what the local executor starts.

Without init steps the op's process starts as before, with its connections' env read here. With
init steps the attempt's process is a small wrapper (``python -m flowd.initsteps local PLAN``)
that runs the steps and then ``exec``s the op's command in its place: one process group per
attempt still, so ``termination.timeout``, stops, ``--max-procs`` and the clean-up of a dead
flowd's leftovers cover the init steps exactly as they cover the op.

Container paths map into the attempt's directory: ``/plx-context`` -> ``<attempt>/context/
plx-context``, a step's own ``path`` -> ``<attempt>/context/<path>``, and each connection's mount
to its local folder (flowd.runtime.connections). The op sees its context root in
``$FLOWD_CONTEXT`` (``/plx-context`` in a pod), and the paths in its command, args and env
values are rewritten (flowd.initsteps.paths).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import msgspec

from flowd.engine import StartOp
from flowd.initsteps.envsources import EnvSourceError, read_env_sources
from flowd.initsteps.local import LocalPlan
from flowd.initsteps.paths import PathMap
from flowd.initsteps.plan import CONTEXT_ROOT, InitError, InitPlan, plan_init
from flowd.runtime.connections import ConnectionProblem, LocalConnections

__all__ = ["INIT_FAILED", "PLAN_FILE", "LocalStart", "prepare"]

INIT_FAILED = "init-failed.json"
PLAN_FILE = "init.json"


class LocalStart:
    """How one attempt starts: its argv (the op's, or the wrapper's), the path map, the env its
    connections add."""

    def __init__(self, *, paths: PathMap, env: dict[str, str], context: str, argv: list[str],
                 plan: LocalPlan | None, plan_file: Path) -> None:
        self.paths = paths
        self.env = env
        self.context = context
        self._argv = argv
        self._plan = plan
        self._plan_file = plan_file

    @property
    def wrapped(self) -> bool:
        return self._plan is not None

    def argv(self, cwd: str | None, fallback: Path) -> list[str]:
        """The argv to spawn; with init steps this writes the wrapper's plan first (the op runs
        in ``cwd`` if the steps made it, else in ``fallback``)."""
        if self._plan is None:
            return self._argv
        self._plan.cwd = cwd or str(fallback)
        self._plan.fallback_cwd = str(fallback)
        self._plan_file.write_bytes(msgspec.json.encode(self._plan))
        return [sys.executable, "-m", "flowd.initsteps", "local", str(self._plan_file)]


def prepare(cmd: StartOp, directory: Path, argv: list[str], connections: LocalConnections | None, *,
            workdir: Path) -> LocalStart:
    """Raises ConnectionProblem (an unknown connection, an unreadable secret) or the init plan's
    problem as ConnectionProblem, both naming what is wrong."""
    run = cmd.run or {}
    catalog = connections.catalog if connections is not None else {}
    try:
        plan = plan_init(run.get("init"), catalog)
    except InitError as exc:
        raise ConnectionProblem(str(exc)) from None
    names = [str(n) for n in run.get("connections") or []]
    if names and connections is None:
        raise ConnectionProblem(f"unknown connection {names[0]!r} (known: none configured: see --executor-config)")
    context = directory / "context"
    mapping: dict[str, str] = {CONTEXT_ROOT: str(context / CONTEXT_ROOT.lstrip("/"))}
    for mount in plan.mounts:
        if not (mount == CONTEXT_ROOT or mount.startswith(CONTEXT_ROOT + "/")):
            mapping[mount] = str(context / mount.lstrip("/"))
    if connections is not None:
        mapping.update(connections.mounts(names + sorted(set(plan.connections.values()))))
    paths = PathMap(mapping)
    local_argv = [paths.rewrite(a) for a in argv]
    main_sources = connections.env_sources(names) if connections is not None and names else []
    if not plan.steps:
        try:
            env = read_env_sources(main_sources)
        except EnvSourceError as exc:
            raise ConnectionProblem(f"connections: {exc}") from None
        return LocalStart(paths=paths, env=env, context=mapping[CONTEXT_ROOT], argv=local_argv, plan=None,
                          plan_file=directory / PLAN_FILE)
    wrapper = LocalPlan(steps=plan.steps, paths=mapping, argv=local_argv, cwd=str(workdir),
                        failed=str(directory / INIT_FAILED), step_env=_step_env(plan, connections),
                        main_env=main_sources, folders=[paths.local(m) for m in plan.mounts])
    return LocalStart(paths=paths, env={}, context=mapping[CONTEXT_ROOT], argv=local_argv, plan=wrapper,
                      plan_file=directory / PLAN_FILE)


def _step_env(plan: InitPlan, connections: LocalConnections | None) -> dict[str, list[dict[str, Any]]]:
    if connections is None:
        return {}
    return {str(i): connections.env_sources([name]) for i, name in plan.connections.items()}
