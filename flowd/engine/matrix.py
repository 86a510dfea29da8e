"""Suggestions of a matrix (POLYFLOW §6): pure functions of the spec and a seed.

``mapping``, ``grid`` and ``random`` are generated here, all at once. The iterative kinds
(hyperband, bayes, tpe, iterative) need the results of earlier iterations: their suggestions come
from :mod:`flowd.engine.tuners`, one iteration at a time.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import random
from typing import Any

from flowd.spec.compiled import HpParam, Matrix
from flowd.spec.expansion import range_parts

DISCRETE = frozenset({"choice", "range", "linspace", "logspace", "geomspace", "daterange", "datetimerange"})
SUPPORTED_KINDS = frozenset({"mapping", "grid", "random"})


class MatrixError(ValueError):
    pass


def _linspace(start: float, stop: float, num: int) -> list[float]:
    num = int(num)
    if num == 1:
        return [float(start)]
    step = (stop - start) / (num - 1)
    return [start + i * step for i in range(num - 1)] + [float(stop)]


def _date(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    return dt.datetime.fromisoformat(str(value))


def expand(hp: HpParam) -> list[Any]:
    """All values of a discrete generator."""
    kind, value = hp.kind, hp.value
    if kind == "choice":
        return list(value)
    if kind == "range":
        start, stop, step = range_parts(value, ("start", "stop", "step"))
        n = max(0, math.ceil((stop - start) / step))
        return [start + i * step for i in range(n)]
    if kind == "linspace":
        start, stop, num = range_parts(value, ("start", "stop", "num"))[:3]
        return _linspace(start, stop, num)
    if kind == "logspace":
        parts = range_parts(value, ("start", "stop", "num", "base"))
        base = parts[3] if len(parts) > 3 else 10
        return [base**x for x in _linspace(parts[0], parts[1], parts[2])]
    if kind == "geomspace":
        start, stop, num = range_parts(value, ("start", "stop", "num"))[:3]
        return [math.exp(x) for x in _linspace(math.log(start), math.log(stop), num)]
    if kind in ("daterange", "datetimerange"):
        start, stop, step = range_parts(value, ("start", "stop", "step"))
        start_d, stop_d = _date(start), _date(stop)
        delta = dt.timedelta(days=step) if kind == "daterange" else dt.timedelta(seconds=step)
        out = []
        cur = start_d
        while cur < stop_d:
            out.append(cur.date().isoformat() if kind == "daterange" else cur.isoformat())
            cur += delta
        return out
    raise MatrixError(f"hyperparameter kind {kind!r} is not discrete")


def sample(hp: HpParam, rng: random.Random) -> Any:
    """One draw of any generator."""
    kind, value = hp.kind, hp.value
    if kind in DISCRETE:
        return rng.choice(expand(hp))
    if kind == "pchoice":
        r = rng.random()
        acc = 0.0
        for item, p in value:
            acc += p
            if r < acc:
                return item
        return value[-1][0]
    names = ("low", "high", "q") if kind.startswith("q") and "normal" not in kind else ("low", "high")
    if "normal" in kind:
        names = ("loc", "scale", "q") if kind.startswith("q") else ("loc", "scale")
    parts = range_parts(value, names)
    if kind == "uniform":
        return rng.uniform(parts[0], parts[1])
    if kind == "quniform":
        return math.floor(rng.uniform(parts[0], parts[1]) / parts[2]) * parts[2]
    if kind == "loguniform":
        return math.exp(rng.uniform(parts[0], parts[1]))
    if kind == "qloguniform":
        return math.floor(math.exp(rng.uniform(parts[0], parts[1])) / parts[2]) * parts[2]
    if kind == "normal":
        return rng.gauss(parts[0], parts[1])
    if kind == "qnormal":
        return math.floor(rng.gauss(parts[0], parts[1]) / parts[2]) * parts[2]
    if kind == "lognormal":
        return math.exp(rng.gauss(parts[0], parts[1]))
    if kind == "qlognormal":
        return math.floor(math.exp(rng.gauss(parts[0], parts[1])) / parts[2]) * parts[2]
    raise MatrixError(f"unknown hyperparameter kind {kind!r}")


def suggestions(matrix: Matrix, seed: int, values: Any = None) -> list[dict[str, Any]]:
    """The param sets of a matrix's children, in child order.

    ``values`` overrides ``matrix.values`` for a mapping whose values were a template (rendered
    by the caller). ``seed`` is used when the matrix sets none.
    """
    if matrix.kind not in SUPPORTED_KINDS:
        raise MatrixError(
            f"matrix kind {matrix.kind!r} is not supported by this version of flowd "
            f"(supported: {', '.join(sorted(SUPPORTED_KINDS))})"
        )
    if matrix.kind == "mapping":
        vals = values if values is not None else matrix.values
        if not isinstance(vals, list) or not all(isinstance(v, dict) for v in vals):
            raise MatrixError("matrix mapping values must be a list of mappings")
        return [dict(v) for v in vals]
    params = matrix.params or {}
    if matrix.kind == "grid":
        names = list(params)
        axes = [expand(params[n]) for n in names]
        # each combination has one value per name (product's doing): no strict zip per child
        grid = [dict(zip(names, combo)) for combo in itertools.product(*axes)]  # noqa: B905
        if matrix.num_runs:
            grid = grid[: matrix.num_runs]
        return grid
    return random_configs(params, int(matrix.num_runs or 0), matrix.seed if matrix.seed else seed)


def random_configs(params: dict[str, HpParam], wanted: int, seed: int,
                   exclude: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Random search (POLYFLOW §6.2): independent draws from a PRNG seeded with ``seed``,
    duplicates (and anything in ``exclude``) rejected, capped by the size of a discrete space."""
    rng = random.Random(seed)
    names = list(params)
    if names and all(params[n].kind in DISCRETE for n in names):
        space = 1
        for n in names:
            space *= max(1, len(expand(params[n])))
        wanted = min(wanted, space)
    out: list[dict[str, Any]] = []
    seen: set[str] = {repr(sorted(e.items())) for e in exclude or ()}
    attempts = 0
    while len(out) < wanted and attempts < wanted * 100 + 100:
        attempts += 1
        suggestion = {n: sample(params[n], rng) for n in names}
        marker = repr(sorted(suggestion.items()))
        if marker in seen:
            continue
        seen.add(marker)
        out.append(suggestion)
    return out
