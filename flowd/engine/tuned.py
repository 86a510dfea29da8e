"""Tuned matrices in the engine (POLYFLOW §6.4): iterations of children driven by a tuner.

``hyperband``, ``bayes`` and ``tpe`` are pure functions (:mod:`flowd.engine.tuners`) called in
the engine step in which the last child of an iteration ended. ``iterative`` runs the user's
tuner component as a job between iterations; its suggestions come back in that job's outputs
(an ``OpStatus`` event the log records). Intermediate metrics and the early-stopping policies
that judge them live here too: they rule out children of a matrix or DAG while they run.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from typing import Any

import msgspec

from flowd.engine import fields, policies, tuners
from flowd.engine import status as S
from flowd.engine.nodes import new_node
from flowd.engine.ops import Ops
from flowd.engine.resolve import ResolveError
from flowd.engine.state import PIPELINE_KINDS, Node, RunState
from flowd.engine.step import Step
from flowd.engine.tuner_job import MAX_HISTORY_BYTES, tuner_history
from flowd.spec.compiled import Matrix

# bounds on what a user's tuner job exchanges with the engine
MAX_SUGGESTIONS = 10_000
# intermediate metrics: points taken from one report, and kept per metric of one run
MAX_POINTS_PER_REPORT = 1_000
MAX_POINTS = 10_000
# matrix fields that may be templates, rendered with the matrix node's params: (key, integer?)
_TEMPLATED = (("maxIterations", True), ("eta", False), ("numInitialRuns", True))


def _no_stop(run: RunState, node: Node, reason: str) -> None:
    raise AssertionError("Tuned.stop is not wired")


class Tuned:
    """The tuned matrices of the runs in ``step``. Children are created with :mod:`nodes` and
    triggered through ``ops``; stopping a child a policy ruled out is the pipelines' work,
    handed in as ``stop`` (the one call that goes back up)."""

    def __init__(self, step: Step, ops: Ops) -> None:
        self.step = step
        self.ops = ops
        self.stop: Callable[[RunState, Node, str], None] = _no_stop

    def tuned_matrix(self, run: RunState, node: Node) -> tuple[Matrix, int]:
        """The matrix spec with its templated numbers rendered, and the tuner's seed."""
        matrix = self.step.index[run.run_id].specs[node.path].matrix
        assert matrix is not None
        if isinstance(matrix.seed, str):
            matrix = msgspec.structs.replace(matrix, seed=fields.number(run, self.step.index[run.run_id], node, matrix.seed, "matrix.seed"))
        extra = dict(matrix.extra)
        changed = False
        for key, integer in _TEMPLATED:
            if isinstance(extra.get(key), str):
                extra[key] = fields.number(run, self.step.index[run.run_id], node, extra[key], f"matrix.{key}", integer=integer)
                changed = True
        if changed:
            matrix = msgspec.structs.replace(matrix, extra=extra)
        seed = matrix.seed if matrix.seed else run.seed ^ zlib.crc32(node.path.encode())
        return matrix, seed

    def trials(self, run: RunState, node: Node, matrix: Matrix) -> list[tuners.Trial]:
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

    def start_tuned_matrix(self, run: RunState, node: Node) -> None:
        if self.step.index[run.run_id].specs[node.path].matrix.kind == "iterative":  # type: ignore[union-attr]
            self.start_tuner_job(run, node, 0)
            return
        try:
            matrix, seed = self.tuned_matrix(run, node)
            batch = tuners.first(matrix, seed)
        except Exception as exc:  # noqa: BLE001 - a tuner's error fails its matrix, never the engine
            self.tuner_failed(run, node, exc)
            return
        self.add_batch(run, node, batch)

    def next_iteration(self, run: RunState, node: Node) -> bool:
        """All children of the iteration are done: start the next one. False when the matrix is
        finished (the caller then decides its final status)."""
        spec = self.step.index[run.run_id].specs[node.path]
        if spec.matrix is None or spec.matrix.kind not in tuners.ITERATIVE_KINDS:
            return False
        if spec.matrix.kind == "iterative":
            return self.iterative_next(run, node)
        try:
            matrix, seed = self.tuned_matrix(run, node)
            trials = self.trials(run, node, matrix)
            iteration = node.iteration if node.iteration is not None else -1
            batch = tuners.next_batch(matrix, seed, iteration, node.bracket, trials)
            while batch is not None and not batch.suggestions:
                batch = tuners.next_batch(matrix, seed, batch.iteration, batch.bracket, trials)
        except Exception as exc:  # noqa: BLE001
            self.tuner_failed(run, node, exc)
            return True
        if batch is None:
            return False
        self.add_batch(run, node, batch)
        return True

    def tuner_failed(self, run: RunState, node: Node, exc: Exception) -> None:
        message = f"matrix {node.name}: tuner: {exc}" if not isinstance(exc, (tuners.TunerError, ResolveError)) else (
            f"matrix: {exc}")
        self.step.finish(run, node, S.FAILED, reason="TunerFailed", message=message)

    def add_batch(self, run: RunState, node: Node, batch: tuners.Batch) -> None:
        index = self.step.index[run.run_id]
        spec = index.specs[node.path]
        node.iteration = batch.iteration
        node.bracket = batch.bracket
        kind = spec.component.kind
        created = []
        for k, suggestion in enumerate(batch.suggestions):
            i = len(node.children or ())
            child = new_node(self.step, run, index, f"{node.path}[{i}]", node.path, f"{spec.name}[{i}]", i, kind,
                                   suggestion=_plain(suggestion))
            child.iteration = batch.iteration
            child.bracket = batch.bracket
            if batch.origins is not None:
                child.origin = batch.origins[k]
            created.append(child)
        for child in created:
            self.ops.ready(run, child)


    # ------------------------------------------------------------------ iterative: the user's tuner

    def start_tuner_job(self, run: RunState, node: Node, iteration: int) -> None:
        spec = self.step.index[run.run_id].specs[node.path]
        assert spec.matrix is not None
        if spec.matrix.tuner is None:
            self.step.finish(run, node, S.FAILED, reason="TunerFailed",
                         message="matrix: an `iterative` matrix needs a `tuner` (tuner.hubRef) to produce suggestions")
            return
        i = len(node.children or ())
        _, text = tuner_history(run, node, i, iteration)
        if len(text) > MAX_HISTORY_BYTES:
            self.step.finish(run, node, S.FAILED, reason="TunerFailed", message=(
                f"matrix: the tuner history of iteration {iteration} is {len(text)} bytes, over the "
                f"{MAX_HISTORY_BYTES}-byte limit of $FLOWD_TUNER_HISTORY (fewer runs per iteration or fewer "
                "iterations)"))
            return
        node.iteration = iteration
        node.bracket = None
        index = self.step.index[run.run_id]
        job = new_node(self.step, run, index, f"{node.path}/tuner-{iteration}", node.path, f"tuner-{iteration}", i,
                             spec.matrix.tuner.component.kind)
        job.iteration = iteration
        self.ops.ready(run, job)

    def iterative_next(self, run: RunState, node: Node) -> bool:
        last = run.nodes[node.children[-1]] if node.children else None
        if last is not None and last.suggestion is None:  # the tuner job of this iteration ended
            if last.status != S.SUCCEEDED:
                self.step.finish(run, node, S.FAILED, reason="TunerFailed",
                             message=f"matrix: tuner job {last.name} {last.status}" + (
                                 f": {last.message}" if last.message else ""))
                return True
            suggestions = (last.outputs or {}).get("suggestions")
            if isinstance(suggestions, str):
                try:
                    suggestions = json.loads(suggestions)
                except ValueError:
                    pass
            problem = None
            if not isinstance(suggestions, list) or not all(isinstance(x, dict) for x in suggestions):
                problem = "did not report an output `suggestions` that is a list of mappings"
            elif not suggestions:
                problem = "reported no suggestions"
            elif len(suggestions) > MAX_SUGGESTIONS:
                problem = f"reported {len(suggestions)} suggestions, over the limit of {MAX_SUGGESTIONS} per iteration"
            if problem:
                self.step.finish(run, node, S.FAILED, reason="TunerFailed", message=f"matrix: tuner job {last.name} {problem}")
                return True
            self.add_batch(run, node, tuners.Batch(last.iteration or 0, None, list(suggestions)))  # type: ignore[arg-type]
            return True
        try:
            matrix, _ = self.tuned_matrix(run, node)
            max_it = tuners._int_field(matrix, "maxIterations", required=True)  # noqa: SLF001
        except Exception as exc:  # noqa: BLE001
            self.tuner_failed(run, node, exc)
            return True
        nxt = (node.iteration or 0) + 1
        if max_it is None or nxt > max_it:
            return False
        self.start_tuner_job(run, node, nxt)
        return True


    # ----------------------------------------------------- intermediate metrics, stopping policies

    def metrics(self, run: RunState, node: Node, points: list[Any]) -> None:
        """Record a running attempt's metric points and let its pipeline's policies judge it."""
        curves = node.curves if node.curves is not None else {}
        added: set[str] = set()
        count = 0
        for point in points[:MAX_POINTS_PER_REPORT]:
            if not isinstance(point, dict):
                continue
            step = point.get("step")
            for name, raw in point.items():
                value = tuners.metric_value(raw)
                if name == "step" or value is None:
                    continue
                curve = curves.setdefault(str(name), [])
                s = tuners.metric_value(step)
                if s is None:
                    s = curve[-1][0] + 1 if curve else 0.0
                if (curve and s <= curve[-1][0]) or len(curve) >= MAX_POINTS:
                    continue  # redelivered / out of order, or over the bound (docs/engine.md)
                curve.append([s, value])
                added.add(str(name))
                count += 1
        node.curves = curves
        parent = run.nodes.get(node.parent) if node.parent is not None else None
        if not count or parent is None or parent.stopping or parent.status in S.DONE:
            return
        before = parent.n_reports
        parent.n_reports += count
        spec = self.step.index[run.run_id].specs[parent.path]
        if parent.kind == "matrix":
            rules = spec.matrix.early_stopping if spec.matrix is not None else []
        else:
            rules = spec.component.dag.early_stopping if spec.component.dag is not None else []
        for rule in rules:
            policy = rule.policy
            if rule.kind != "metric_early_stopping" or not policy or rule.metric not in added:
                continue
            every = max(int(policy.get("evaluationInterval") or 1), 1)
            first = int(policy.get("minInterval") or 0)
            if parent.n_reports < first or (before >= first and (parent.n_reports - first) // every == (before - first) // every):
                continue
            maximize = rule.optimization != "minimize"
            curves_of = []
            for path in parent.children or ():
                child = run.nodes[path]
                points_of = (child.curves or {}).get(rule.metric)
                if points_of is None or child.kind in PIPELINE_KINDS:
                    continue
                curves_of.append(policies.Curve(path, child.status in S.ACTIVE and child.status != S.STOPPING,
                                                child.status == S.SUCCEEDED, points_of))
            kind = policy.get("kind")
            for path in policies.ruled_out(policy, curves_of, maximize):
                child = run.nodes[path]
                child.message = f"stopped by the `{kind}` early-stopping policy on `{rule.metric}`"
                self.stop(run, child, f"EarlyStopping:{kind}")


def _plain(suggestion: dict[str, Any]) -> dict[str, Any]:
    """Suggestions as plain JSON values (numpy scalars from a tuner would not encode)."""
    out = {}
    for key, value in suggestion.items():
        if hasattr(value, "item") and not isinstance(value, (str, bytes)):
            value = value.item()
        out[str(key)] = value
    return out
