"""The job an ``iterative`` matrix runs between iterations: the user's tuner component, given the
history of every trial created before it (POLYFLOW §6.4). Pure functions over the run's state:
the job's spec is derived again on restore, never stored."""

from __future__ import annotations

import json
from typing import Any

import msgspec

from flowd.engine import status as S
from flowd.engine.state import Node, RunState
from flowd.spec.compiled import Op, ParamSpec

# an environment string must stay under Linux's 128 KiB MAX_ARG_STRLEN
MAX_HISTORY_BYTES = 100_000


def tuner_history(run: RunState, matrix_node: Node, upto: int, iteration: int) -> tuple[list[dict[str, Any]], str]:
    """Every trial created before child number ``upto``, and the JSON the tuner job reads."""
    history = []
    for path in (matrix_node.children or ())[:upto]:
        child = run.nodes[path]
        if child.suggestion is None:
            continue
        history.append({"params": child.suggestion, "metrics": child.outputs or {}, "status": child.status,
                        "iteration": child.iteration})
    text = json.dumps({"iteration": iteration, "history": history}, separators=(",", ":"), default=str)
    return history, text


def tuner_job_spec(run: RunState, matrix_node: Node, matrix_spec: Op, job: Node) -> Op:
    """The tuner op of one iteration: ``tuner.params`` plus the history of every child created
    before it — ``iteration``, ``matrix`` (the spec), Polyaxon's ``configs``/``metrics`` join
    params, and ``history`` as JSON in ``$FLOWD_TUNER_HISTORY`` (docs/engine.md)."""
    assert matrix_spec.matrix is not None and matrix_spec.matrix.tuner is not None
    tuner = matrix_spec.matrix.tuner
    history, text = tuner_history(run, matrix_node, job.index, job.iteration or 0)
    matrix = msgspec.to_builtins(msgspec.structs.replace(matrix_spec.matrix, tuner=None))
    params = dict(tuner.params)
    for name, value in (("iteration", job.iteration), ("matrix", matrix),
                        ("configs", [h["params"] for h in history if h["status"] == S.SUCCEEDED]),
                        ("metrics", [h["metrics"] for h in history if h["status"] == S.SUCCEEDED])):
        if name not in params:
            params[name] = ParamSpec(value=value)
    params["history"] = ParamSpec(value=text, to_env="FLOWD_TUNER_HISTORY")
    return msgspec.structs.replace(tuner, params=params, upstream=[], event_edges={}, conditions=None,
                                   trigger="all_succeeded", is_approved=True)
