"""Tuners of the iterative matrix kinds (POLYFLOW §6.2, §6.4, §6.5): hyperband, bayes, tpe.

A tuner is a pure function ``(matrix spec, seed, position, history) -> next batch``. It runs
inside the engine step that saw the last child of an iteration finish, so its suggestions are
decided by what the engine's state already holds (the matrix spec, the run's seed, the params
and metric of every earlier child) and nothing else: the same events always give the same
suggestions, and a snapshot needs no tuner state beyond the ``iteration``/``bracket`` of the
matrix node and its children (docs/engine.md, "Tuners").

``iterative`` has no built-in algorithm: its suggestions come from the user's tuner job, whose
outputs the executor reports in an ``OpStatus`` event (see :mod:`flowd.engine.pipelines`).

The mathematics (scikit-learn, scipy, optuna) is imported lazily, inside ``bayes``/``tpe``, so
starting flowd or running other matrices never pays for it.
"""

from __future__ import annotations

# the tuners' shared names, re-exported: the engine reads them as tuners.X
from flowd.engine.tuners.base import (
    Batch as Batch,
)
from flowd.engine.tuners.base import (
    Trial as Trial,
)
from flowd.engine.tuners.base import (
    TunerError as TunerError,
)
from flowd.engine.tuners.base import (
    _int_field as _int_field,
)
from flowd.engine.tuners.base import (
    _random as _random,
)
from flowd.engine.tuners.base import (
    iteration_seed as iteration_seed,
)
from flowd.engine.tuners.base import (
    metric_spec as metric_spec,
)
from flowd.engine.tuners.base import (
    metric_value as metric_value,
)
from flowd.spec.compiled import Matrix

ITERATIVE_KINDS = frozenset({"hyperband", "bayes", "tpe", "iterative"})
# a tpe matrix without maxIterations has no limit in Polyaxon; flowd bounds it (docs/engine.md)
UNBOUNDED_ITERATIONS = 1000


def first(matrix: Matrix, seed: int) -> Batch:
    """The children of iteration 0."""
    if matrix.kind == "hyperband":
        from flowd.engine.tuners import hyperband

        return hyperband.first(matrix, seed)
    if matrix.kind in ("bayes", "tpe"):
        return next_batch(matrix, seed, -1, None, [])  # type: ignore[return-value]
    raise TunerError(f"matrix kind {matrix.kind!r} has no built-in tuner")


def next_batch(matrix: Matrix, seed: int, iteration: int, bracket: int | None, trials: list[Trial]) -> Batch | None:
    """The children of the iteration after ``iteration`` (None: the matrix is done).
    ``trials`` are all earlier children in creation order."""
    if matrix.kind == "hyperband":
        from flowd.engine.tuners import hyperband

        return hyperband.advance(matrix, seed, iteration, bracket or 0, trials)
    nxt = iteration + 1
    if matrix.kind == "bayes":
        max_it = _int_field(matrix, "maxIterations", required=True)
        initial = _int_field(matrix, "numInitialRuns", required=True)
        assert max_it is not None and initial is not None
        if nxt > max_it:
            return None
        if nxt == 0:
            return Batch(0, None, _random(matrix, initial, seed, 0, trials))
        from flowd.engine.tuners import bayes

        return Batch(nxt, None, bayes.suggest(matrix, trials, 1, iteration_seed(seed, nxt, "bayes")))
    if matrix.kind == "tpe":
        num_runs = matrix.num_runs
        if not num_runs:
            raise TunerError("a tpe matrix needs `numRuns` (suggestions per iteration) to run")
        max_it = _int_field(matrix, "maxIterations", required=False, minimum=0)
        if nxt > (max_it if max_it else UNBOUNDED_ITERATIONS):
            return None
        from flowd.engine.tuners import tpe

        return Batch(nxt, None, tpe.suggest(matrix, trials, num_runs, iteration_seed(seed, nxt, "tpe")))
    raise TunerError(f"matrix kind {matrix.kind!r} has no built-in tuner")
