"""Hyperband (POLYFLOW §6.5 with its [FLOWD] corrections): the canonical bracket schedule.

``R = maxIterations``, ``η = eta``. Everything is computed in exact rational arithmetic, so the
integer logarithm ``s_max`` is exact (``R=243, η=3`` gives 5, ``R=1000, η=10`` gives 3) and
resource values are not disturbed by rounding before they are cast to the resource's type.

Iteration ``i`` runs bracket ``s = s_max − i``; its round ``j = 0…s`` (``bracket_iteration``)
runs with resource ``R·η^(j−s)``. Round 0 has ``n(s) = ceil((s_max+1)·η^s/(s+1))`` fresh random
configurations; round ``j+1`` re-runs the best ``k_j = floor(n(s)·η^(−j)/η)`` runs of round ``j``
that succeeded and reported the metric (ties by creation order) — fewer if fewer qualify, and
the bracket ends if none do. A bracket stops after round ``j = s``.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

from flowd.engine.tuners.base import Batch, Trial, TunerError, _random, metric_spec
from flowd.spec.compiled import Matrix


class Schedule:
    """The numbers of one hyperband configuration."""

    def __init__(self, max_iterations: Any, eta: Any) -> None:
        if isinstance(max_iterations, bool) or not isinstance(max_iterations, int) or max_iterations < 1:
            raise TunerError(f"hyperband `maxIterations` must be an integer >= 1, got {max_iterations!r}")
        try:
            e = Fraction(str(eta)) if not isinstance(eta, int) else Fraction(eta)
        except (TypeError, ValueError):
            raise TunerError(f"hyperband `eta` must be a number > 1, got {eta!r}") from None
        if e <= 1:
            raise TunerError(f"hyperband `eta` must be greater than 1, got {eta!r}")
        self.R = max_iterations
        self.eta = e
        s = 0
        while e ** (s + 1) <= max_iterations:
            s += 1
        self.s_max = s

    def bracket(self, iteration: int) -> int:
        return self.s_max - iteration

    def n(self, s: int) -> int:
        """Configurations in round 0 of bracket ``s``."""
        return math.ceil(Fraction(self.s_max + 1) * self.eta**s / (s + 1))

    def resource(self, s: int, j: int) -> Fraction:
        """Resource of round ``j`` of bracket ``s``: ``R·η^(j−s)``."""
        return self.R * self.eta ** (j - s)

    def keep(self, s: int, j: int) -> int:
        """How many runs of round ``j`` go on to round ``j+1``."""
        return math.floor(self.n(s) / self.eta ** (j + 1))

    def rounds(self, iteration: int) -> list[tuple[int, Fraction]]:
        """(configs, resource) of every round of an iteration when every run qualifies."""
        s = self.bracket(iteration)
        out = [(self.n(s), self.resource(s, 0))]
        for j in range(s):
            out.append((self.keep(s, j), self.resource(s, j + 1)))
        return out


def _schedule(matrix: Matrix) -> Schedule:
    missing = [k for k in ("maxIterations", "eta", "resource", "metric") if matrix.extra.get(k) is None]
    if missing:
        raise TunerError(f"hyperband needs {', '.join(f'`{k}`' for k in missing)} to run")
    return Schedule(matrix.extra["maxIterations"], matrix.extra["eta"])


def cast_resource(matrix: Matrix, value: Fraction) -> tuple[str, int | float]:
    resource = matrix.extra["resource"]
    name = resource.get("name") if isinstance(resource, dict) else None
    if not name:
        raise TunerError("hyperband `resource` needs a `name`")
    return name, int(value) if resource.get("type") == "int" else float(value)


def _round0(matrix: Matrix, seed: int, sched: Schedule, iteration: int, trials: list[Trial]) -> Batch:
    s = sched.bracket(iteration)
    name, value = cast_resource(matrix, sched.resource(s, 0))
    configs = _random(matrix, sched.n(s), seed, iteration, [])
    return Batch(iteration, 0, [{**c, name: value} for c in configs])


def first(matrix: Matrix, seed: int) -> Batch:
    return _round0(matrix, seed, _schedule(matrix), 0, [])


def advance(matrix: Matrix, seed: int, iteration: int, bracket: int, trials: list[Trial]) -> Batch | None:
    sched = _schedule(matrix)
    metric = metric_spec(matrix)
    assert metric is not None
    maximize = metric[1]
    s = sched.bracket(iteration)
    if bracket < s:
        ranked = [(t.metric, pos, t) for pos, t in enumerate(trials)
                  if t.iteration == iteration and t.bracket == bracket and t.status == "succeeded" and t.metric is not None]
        ranked.sort(key=lambda x: (-x[0] if maximize else x[0], x[1]))
        survivors = [t for _, _, t in ranked[: sched.keep(s, bracket)]]
        if survivors:
            name, value = cast_resource(matrix, sched.resource(s, bracket + 1))
            resume = bool(matrix.extra.get("resume"))
            return Batch(iteration, bracket + 1, [{**t.params, name: value} for t in survivors],
                         origins=[t.path for t in survivors] if resume else None)
    if iteration + 1 <= sched.s_max:
        return _round0(matrix, seed, sched, iteration + 1, trials)
    return None
