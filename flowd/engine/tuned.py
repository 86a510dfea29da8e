"""Tuned matrices in the engine (POLYFLOW §6.4): iterations of children driven by a tuner.

``hyperband``, ``bayes`` and ``tpe`` are pure functions (:mod:`flowd.engine.tuners`) called in
the engine step in which the last child of an iteration ended. ``iterative`` runs the user's
tuner component as a job between iterations; its suggestions come back in that job's outputs
(an ``OpStatus`` event the log records). Part of :class:`flowd.engine.core.Engine`.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Any

import msgspec

from flowd.engine import status as S
from flowd.engine import tuners
from flowd.engine.resolve import ResolveError
from flowd.engine.state import Node, RunState
from flowd.spec.compiled import Matrix

if TYPE_CHECKING:
    from flowd.engine.core import Engine

    _Base = Engine
else:
    _Base = object

# matrix fields that may be templates, rendered with the matrix node's params: (key, integer?)
_TEMPLATED = (("maxIterations", True), ("eta", False), ("numInitialRuns", True))


class TunedMixin(_Base):
    def _tuned_matrix(self, run: RunState, node: Node) -> tuple[Matrix, int]:
        """The matrix spec with its templated numbers rendered, and the tuner's seed."""
        matrix = self._index[run.run_id].specs[node.path].matrix
        assert matrix is not None
        if isinstance(matrix.seed, str):
            matrix = msgspec.structs.replace(matrix, seed=self._number(run, node, matrix.seed, "matrix.seed"))
        extra = dict(matrix.extra)
        changed = False
        for key, integer in _TEMPLATED:
            if isinstance(extra.get(key), str):
                extra[key] = self._number(run, node, extra[key], f"matrix.{key}", integer=integer)
                changed = True
        if changed:
            matrix = msgspec.structs.replace(matrix, extra=extra)
        seed = matrix.seed if matrix.seed else run.seed ^ zlib.crc32(node.path.encode())
        return matrix, seed

    def _trials(self, run: RunState, node: Node, matrix: Matrix) -> list[tuners.Trial]:
        metric = tuners.metric_spec(matrix)
        out = []
        for path in node.children or ():
            child = run.nodes[path]
            if child.suggestion is None:
                continue  # an iterative tuner job, not a trial
            value = None
            if metric is not None and child.status == S.SUCCEEDED:
                value = tuners.metric_value((child.outputs or {}).get(metric[0]))
            out.append(tuners.Trial(path, child.suggestion, child.status, value,
                                    child.iteration or 0, child.bracket))
        return out

    def _start_tuned_matrix(self, run: RunState, node: Node) -> None:
        try:
            matrix, seed = self._tuned_matrix(run, node)
            batch = tuners.first(matrix, seed)
        except Exception as exc:  # noqa: BLE001 - a tuner's error fails its matrix, never the engine
            self._tuner_failed(run, node, exc)
            return
        self._add_batch(run, node, batch)

    def _next_iteration(self, run: RunState, node: Node) -> bool:
        """All children of the iteration are done: start the next one. False when the matrix is
        finished (the caller then decides its final status)."""
        spec = self._index[run.run_id].specs[node.path]
        if spec.matrix is None or spec.matrix.kind not in tuners.ITERATIVE_KINDS:
            return False
        try:
            matrix, seed = self._tuned_matrix(run, node)
            trials = self._trials(run, node, matrix)
            iteration = node.iteration if node.iteration is not None else -1
            batch = tuners.next_batch(matrix, seed, iteration, node.bracket, trials)
            while batch is not None and not batch.suggestions:
                batch = tuners.next_batch(matrix, seed, batch.iteration, batch.bracket, trials)
        except Exception as exc:  # noqa: BLE001
            self._tuner_failed(run, node, exc)
            return True
        if batch is None:
            return False
        self._add_batch(run, node, batch)
        return True

    def _tuner_failed(self, run: RunState, node: Node, exc: Exception) -> None:
        message = f"matrix {node.name}: tuner: {exc}" if not isinstance(exc, (tuners.TunerError, ResolveError)) else (
            f"matrix: {exc}")
        self._finish(run, node, S.FAILED, reason="TunerFailed", message=message)

    def _add_batch(self, run: RunState, node: Node, batch: tuners.Batch) -> None:
        index = self._index[run.run_id]
        spec = index.specs[node.path]
        node.iteration = batch.iteration
        node.bracket = batch.bracket
        kind = spec.component.kind
        created = []
        for k, suggestion in enumerate(batch.suggestions):
            i = len(node.children or ())
            child = self._new_node(run, index, f"{node.path}[{i}]", node.path, f"{spec.name}[{i}]", i, kind,
                                   suggestion=_plain(suggestion))
            child.iteration = batch.iteration
            child.bracket = batch.bracket
            if batch.origins is not None:
                child.origin = batch.origins[k]
            created.append(child)
        for child in created:
            self._ready(run, child)


def _plain(suggestion: dict[str, Any]) -> dict[str, Any]:
    """Suggestions as plain JSON values (numpy scalars from a tuner would not encode)."""
    out = {}
    for key, value in suggestion.items():
        if hasattr(value, "item") and not isinstance(value, (str, bytes)):
            value = value.item()
        out[str(key)] = value
    return out
