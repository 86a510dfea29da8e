"""What is derived from a run's state and specs and never stored: the op spec of each node
(computed on first use, so a restore stays cheap), downstream and event edges, and each
pipeline's admission limit. Rebuilt on restore by :mod:`flowd.engine.nodes`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from flowd.engine.plain import PipelineFlags
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

    __slots__ = ("specs", "downstream", "event_down", "limits", "child_templates", "flags", "matrix_templated",
                 "early_stopping", "dag_shapes")

    def __init__(self, compute: Callable[[str], Op]) -> None:
        self.specs = Specs(compute)
        self.downstream: dict[str, list[str]] = {}
        self.event_down: dict[str, list[tuple[str, list[str]]]] = {}
        self.limits: dict[str, int | None] = {}
        # matrix path -> the spec all its children share (``matrix_child_template``)
        self.child_templates: dict[str, Op] = {}
        # what the whole pipeline lacks (``plain.pipeline_flags``), found on first use
        self.flags: PipelineFlags | None = None
        # matrix path -> a template in its children's values: True, False, or None (look at
        # each child's suggestion: a tuner's)
        self.matrix_templated: dict[str, bool | None] = {}
        # pipeline path -> its early-stopping rules (looked up for every descendant that ends)
        self.early_stopping: dict[str, list[Any]] = {}
        # id(dag) -> (dag, (name, kind, approved up front, upstream count) of each of its ops): a
        # DAG body shared by many nested instances is looked at once
        self.dag_shapes: dict[int, tuple[Any, list[tuple[str, str, bool, int]]]] = {}


    def spec(self, node: Node) -> Op:
        """The spec of ``node``, as ``specs[node.path]``, but a matrix child's (the one template
        its matrix derived for all of them) is not entered per child: a million children would
        hold a million entries of the same spec (~40 bytes each)."""
        parent = node.parent
        if node.suggestion is not None and parent is not None:
            template = self.child_templates.get(parent)
            if template is not None:
                return template
        return self.specs[node.path]


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
        return child_template(index, parent.path, parent_spec)
    if parent.kind == "schedule":
        return msgspec.structs.replace(parent_spec, schedule=None)
    dag = parent_spec.component.dag
    assert dag is not None
    return dag.ops[node.index]


def child_template(index: Index, matrix_path: str, matrix_spec: Op) -> Op:
    """The spec every child of the matrix at ``matrix_path`` shares, built once per matrix."""
    template = index.child_templates.get(matrix_path)
    if template is None:
        template = index.child_templates[matrix_path] = matrix_child_template(matrix_spec)
    return template


def matrix_child_template(op: Op) -> Op:
    """The spec every child of the matrix ``op`` shares: the op without its matrix, edges,
    conditions, hooks or approval gate (the matrix had them), and without params. A child's
    params are its own values (``child_params``), which the Resolver derives when it needs them:
    a copy of the spec per child cost ~0.6 KB per live child (a million at once in a matrix
    with no concurrency)."""
    return msgspec.structs.replace(
        op, params={}, matrix=None, upstream=[], event_edges={}, conditions=None, hooks=[],
        trigger="all_succeeded", skip_on_upstream_skip=False, is_approved=True,
    )


def child_params(matrix_params: dict[str, ParamSpec], base: dict[str, Any],
                 suggestion: dict[str, Any]) -> dict[str, ParamSpec]:
    """A matrix child's params: the matrix op's resolved params (``base``) with the child's
    suggestion over them, as literal values that keep the flags (``toEnv``, ``contextOnly``,
    ``connection``) of the matrix op's param of the same name."""
    values = dict(base)
    values.update(suggestion)
    params = {}
    for name, value in values.items():
        original = matrix_params.get(name)
        params[name] = ParamSpec(
            value=value,
            context_only=original.context_only if original else None,
            to_env=original.to_env if original else None,
            connection=original.connection if original else None,
        )
    return params
