"""What is derived from a run's state and specs and never stored: the op spec of each node
(computed on first use, so a restore stays cheap), downstream and event edges, and each
pipeline's admission limit. Rebuilt on restore by :mod:`flowd.engine.nodes`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from flowd.engine.state import Node, RunState
from flowd.engine.tuner_job import tuner_job_spec
from flowd.spec.compiled import Op, ParamSpec


class Specs(dict[str, Op]):
    """path -> Op spec of that node, computed on first use (restore stays cheap)."""

    def __init__(self, compute: Callable[[str], Op]) -> None:
        super().__init__()
        self._compute = compute

    def __missing__(self, path: str) -> Op:
        spec = self[path] = self._compute(path)
        return spec


class Index:
    """What is derived from a run's state and specs and never stored: rebuilt on restore."""

    __slots__ = ("specs", "downstream", "event_down", "limits")

    def __init__(self, compute: Callable[[str], Op]) -> None:
        self.specs = Specs(compute)
        self.downstream: dict[str, list[str]] = {}
        self.event_down: dict[str, list[tuple[str, list[str]]]] = {}
        self.limits: dict[str, int | None] = {}


def new_index(run: RunState) -> Index:
    index = Index(lambda path: spec_of(run, index, run.nodes[path]))
    return index


def spec_of(run: RunState, index: Index, node: Node) -> Op:
    if node.parent is None:
        return run.pipeline
    parent = run.nodes[node.parent]
    parent_spec = index.specs[node.parent]
    if parent.kind == "matrix":
        if node.suggestion is None:  # the tuner job of an iterative matrix
            return tuner_job_spec(run, parent, parent_spec, node)
        return matrix_child_spec(parent_spec, parent.params or {}, node.suggestion or {})
    if parent.kind == "schedule":
        return msgspec.structs.replace(parent_spec, schedule=None)
    dag = parent_spec.component.dag
    assert dag is not None
    return dag.ops[node.index]


def matrix_child_spec(op: Op, base: dict[str, Any], suggestion: dict[str, Any]) -> Op:
    values = dict(base)
    values.update(suggestion)
    params = {}
    for name, value in values.items():
        original = op.params.get(name)
        params[name] = ParamSpec(
            value=value,
            context_only=original.context_only if original else None,
            to_env=original.to_env if original else None,
            connection=original.connection if original else None,
        )
    return msgspec.structs.replace(
        op, params=params, matrix=None, upstream=[], event_edges={}, conditions=None,
        trigger="all_succeeded", skip_on_upstream_skip=False, is_approved=True,
    )
