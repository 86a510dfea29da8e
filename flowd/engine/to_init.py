"""Params with ``toInit: true`` -> init steps of the op (POLYFLOW §3.8). Pure.

The resolved value becomes one step appended to the op's ``run.init``, which both executors
then carry out like any other step (flowd.initsteps.plan):

* type ``git`` -> ``{git: value}`` (a clone), ``artifacts`` -> ``{artifacts: value}`` (a
  download from the store), ``dockerfile`` -> ``{dockerfile: value}`` (the file generated);
  each with the param's connection when it has one;
* ``path`` with a connection -> ``{paths: [value], connection}`` (a download from it);
* any other type with a connection -> ``{connection}`` (the connection initialised).

Anything else (no declared type, or another type without a connection) cannot be turned into a
step: the op fails with the reference's message, at dispatch. Submission does not check it (as
Polyaxon does not).
"""

from __future__ import annotations

from typing import Any

from flowd.engine.resolve import ResolveError
from flowd.spec.compiled import Op

__all__ = ["init_steps", "with_init_steps"]

_OWN_KEY = {"git": "git", "artifacts": "artifacts", "dockerfile": "dockerfile"}


def init_steps(spec: Op, params: dict[str, Any]) -> list[dict[str, Any]]:
    """The steps the op's ``toInit`` params ask for, in declaration order of the params.
    Raises ResolveError naming a param that cannot be turned into one."""
    wanted = [name for name, p in spec.params.items() if p.to_init]
    ios = {io.name: io for io in spec.component.inputs}
    wanted += [io.name for io in spec.component.inputs if io.to_init and io.name not in wanted]
    if not wanted:
        return []
    steps: list[dict[str, Any]] = []
    for name in wanted:
        param = spec.params.get(name)
        io = ios.get(name)
        if name not in params or params[name] is None:
            continue  # an optional param left unset: nothing to prepare
        value = params[name]
        kind = io.type if io is not None else None
        connection = (param.connection if param is not None else None) or (io.connection if io is not None else None)
        step: dict[str, Any]
        if kind in _OWN_KEY:
            step = {_OWN_KEY[kind]: value}
        elif kind == "path" and connection:
            step = {"paths": value if isinstance(value, list) else [value]}
        elif kind is not None and connection:
            step = {}
        else:
            what = f"type `{kind}`" if kind else "no declared type"
            raise ResolveError(f"param {name!r} has toInit but {what} and no connection, so it cannot be turned to an "
                               "init container automatically (only git, artifacts and dockerfile params can without "
                               "a connection)")
        if connection:
            step["connection"] = connection
        steps.append(step)
    return steps


def with_init_steps(body: dict[str, Any], steps: list[dict[str, Any]]) -> dict[str, Any]:
    """``body`` (a rendered runtime) with ``steps`` after its own init steps."""
    if not steps:
        return body
    return {**body, "init": [*(body.get("init") or []), *steps]}
