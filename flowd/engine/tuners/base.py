"""What the tuners share: the error that fails a matrix, a trial and a batch as tuners see them,
the metric a matrix optimises, per-iteration seeds, and random configurations. The tuner modules
(``hyperband``, ``bayes``, ``tpe``, ``space``) import this, never the package that dispatches to
them, so imports run one way."""

from __future__ import annotations

import math
import zlib
from typing import Any, NamedTuple

from flowd.engine.matrix import random_configs
from flowd.spec.compiled import Matrix


class TunerError(ValueError):
    """The matrix cannot be tuned as written (a missing or invalid field): fails the matrix."""


class Trial(NamedTuple):
    """One earlier child, as a tuner sees it."""

    path: str
    params: dict[str, Any]
    status: str
    # the metric the matrix optimises, when the child reported it (None otherwise)
    metric: float | None
    iteration: int
    bracket: int | None


class Batch(NamedTuple):
    """The children of the next iteration (or hyperband round)."""

    iteration: int
    bracket: int | None
    suggestions: list[dict[str, Any]]
    # hyperband survivors: the child each new run continues (``resume``), else None
    origins: list[str | None] | None = None


def metric_spec(matrix: Matrix) -> tuple[str, bool] | None:
    """(metric name, maximise?) — an unset ``optimization`` maximises (POLYFLOW §6.1)."""
    metric = matrix.extra.get("metric")
    if not isinstance(metric, dict) or not metric.get("name"):
        return None
    return str(metric["name"]), metric.get("optimization") != "minimize"


def metric_value(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)  # a numeric string from a job's outputs
        except (TypeError, ValueError):
            return None
    value = float(value)
    return value if math.isfinite(value) else None


def iteration_seed(seed: int, iteration: int, salt: str = "") -> int:
    """A distinct, stable seed per iteration (and purpose) from the matrix seed."""
    return (seed * 1_000_003 + iteration * 7_919 + zlib.crc32(salt.encode())) & 0xFFFF_FFFF


def _int_field(matrix: Matrix, name: str, *, required: bool, minimum: int = 1) -> int | None:
    value = matrix.extra.get(name)
    if value is None:
        if required:
            raise TunerError(f"a {matrix.kind} matrix needs `{name}` to run")
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise TunerError(f"`{name}` must be an integer >= {minimum}, got {value!r}")
    return value


def _random(matrix: Matrix, count: int, seed: int, iteration: int, trials: list[Trial]) -> list[dict[str, Any]]:
    return random_configs(matrix.params or {}, count, iteration_seed(seed, iteration, "random"),
                          exclude=[t.params for t in trials])
