"""Matrix rules the schema cannot express (POLYFLOW §6.1–§6.3) and the compiled form.

The model (:mod:`flowd.spec.model`) already checks the fields of each matrix kind. Here:
which generators each kind accepts (grid: discrete only; bayes: no distributions besides
``uniform``), the value shapes of each generator (``[a, b, c]``, ``"a:b:c"`` or a map),
``start < stop``, non-zero steps, ``pchoice`` probabilities, the bayes utility function, and
flowd's hyperband completeness warnings. Pure functions.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from typing import Any

import msgspec

from flowd.spec import compiled as c
from flowd.spec import model as m
from flowd.spec.types import is_template

__all__ = ["check_matrix", "compile_matrix", "compile_early_stopping", "hp_kind"]

Emit = Callable[[str, tuple[Any, ...], str], None]

_GRID_OK = {"choice", "range", "linspace", "logspace", "geomspace", "daterange", "datetimerange"}
_BAYES_OK = {"choice", "range", "linspace", "logspace", "geomspace", "uniform"}
# generator -> (named keys in list/string order, number of required leading keys)
_SHAPES: dict[str, tuple[tuple[str, ...], int]] = {
    "range": (("start", "stop", "step"), 3),
    "linspace": (("start", "stop", "num"), 3),
    "logspace": (("start", "stop", "num", "base"), 3),
    "geomspace": (("start", "stop", "num"), 3),
    "daterange": (("start", "stop", "step"), 3),
    "datetimerange": (("start", "stop", "step"), 3),
    "uniform": (("low", "high", "size"), 2),
    "quniform": (("low", "high", "q", "size"), 3),
    "loguniform": (("low", "high", "size"), 2),
    "qloguniform": (("low", "high", "q", "size"), 3),
    "normal": (("loc", "scale", "size"), 2),
    "qnormal": (("loc", "scale", "q", "size"), 3),
    "lognormal": (("loc", "scale", "size"), 2),
    "qlognormal": (("loc", "scale", "q", "size"), 3),
}


def hp_kind(hp: Any) -> str:
    return type(hp).__struct_config__.tag  # type: ignore[no-any-return]


def _num(x: Any) -> float | None:
    if isinstance(x, (int, float)):  # bools too, as pydantic's lax float reads them
        return float(x)
    if isinstance(x, str):
        try:
            return float(x)
        except ValueError:
            return None
    return None


def _when(x: Any, kind: str) -> Any:
    if isinstance(x, (_dt.date, _dt.datetime)):
        return x if isinstance(x, _dt.datetime) or kind == "daterange" else _dt.datetime(x.year, x.month, x.day)
    if isinstance(x, str):
        try:
            return _dt.date.fromisoformat(x) if kind == "daterange" else _dt.datetime.fromisoformat(x)
        except ValueError:
            try:
                d = _dt.datetime.fromisoformat(x)
                return d.date() if kind == "daterange" else d
            except ValueError:
                return None
    return None


def _check_hp(name: str, hp: Any, emit: Emit, path: tuple[Any, ...]) -> None:
    kind = hp_kind(hp)
    value = hp.value
    vpath = (*path, "value")
    if is_template(value):
        return
    if value is None:
        emit("warning", path, f"`{name}`: the `{kind}` generator has no `value`: it generates nothing")
        return
    if kind == "choice":
        if not isinstance(value, list):
            emit("error", vpath, f"`{name}`: a `choice` needs a list of values")
        elif not value:
            emit("warning", vpath, f"`{name}`: a `choice` with no values generates no runs")
        return
    if kind == "pchoice":
        if not isinstance(value, list) or not value:
            emit("error", vpath, f"`{name}`: a `pchoice` needs a list of `[value, probability]` pairs")
            return
        total = 0.0
        for i, item in enumerate(value):
            if not isinstance(item, (list, tuple)) or len(item) != 2:
                emit("error", (*vpath, i), f"`{name}`: each `pchoice` entry is a `[value, probability]` pair")
                return
            p = item[1]
            if not isinstance(p, float) or not 0 <= p < 1:
                emit("error", (*vpath, i, 1), f"`{name}`: a `pchoice` probability must be a float in [0, 1), got {p!r}")
                return
            total += p
        if total > 1 + 1e-9:
            emit("error", vpath, f"`{name}`: the `pchoice` probabilities should sum to 1 at most (they sum to {total:g})")
        return
    keys, need = _SHAPES[kind]
    if isinstance(value, str):
        parts: list[Any] = value.split(":")
    elif isinstance(value, list):
        parts = list(value)
    elif isinstance(value, dict):
        unknown = [k for k in value if k not in keys]
        if unknown:
            emit("error", (*vpath, unknown[0]), f"`{name}`: unknown key `{unknown[0]}` for `{kind}` (keys: {', '.join(keys)})")
            return
        parts = [value.get(k) for k in keys]
        while parts and parts[-1] is None:
            parts.pop()
    else:
        emit("error", vpath, f"`{name}`: `{kind}` expects `[{', '.join(keys)}]`, a `\"{':'.join(keys[:need])}\"` string or a map")
        return
    if len(parts) < need or any(p is None for p in parts[:need]):
        emit("error", vpath, f"`{name}`: `{kind}` expects {need} to {len(keys)} values ({', '.join(keys)}), got {len(parts)}")
        return
    if kind in ("daterange", "datetimerange"):
        start, stop = _when(parts[0], kind), _when(parts[1], kind)
        step = _num(parts[2])
        if start is None or stop is None or step is None:
            emit("error", vpath, f"`{name}`: `{kind}` expects start/stop as ISO dates and a numeric step")
            return
        if not start < stop:
            emit("error", vpath, f"`{name}`: `{kind}` stop must be strictly higher than start")
        return
    nums = [_num(p) for p in parts]
    if any(n is None for n in nums):
        emit("error", vpath, f"`{name}`: `{kind}` values must be numbers, got {parts!r}")
        return
    for key, n in zip(keys, nums, strict=False):
        if key in ("num", "size") and not float(n).is_integer():  # type: ignore[arg-type]
            emit("error", vpath, f"`{name}`: the `{key}` of `{kind}` must be an integer, got {n:g}")
            return
    if kind in ("range", "linspace", "logspace", "geomspace"):
        if not nums[0] < nums[1]:  # type: ignore[operator]
            emit("error", vpath, f"`{name}`: `{kind}` stop ({parts[1]}) must be strictly higher than start ({parts[0]})")
        elif nums[2] == 0:
            emit("error", vpath, f"`{name}`: `{kind}` {keys[2]} must not be 0")
    elif keys[2] == "q" and len(nums) > 2 and nums[2] == 0:
        emit("error", vpath, f"`{name}`: `{kind}` q must not be 0")


def check_matrix(mx: Any, emit: Emit, path: tuple[Any, ...] = ("matrix",)) -> None:
    """The semantic rules of §6 for one matrix (schema errors were reported when reading)."""
    params = getattr(mx, "params", None)
    if isinstance(params, dict) and not params and isinstance(mx, (m.GridMatrix, m.RandomMatrix, m.BayesMatrix,
                                                                   m.TpeMatrix)):
        emit("error", (*path, "params"), f"a `{hp_kind(mx)}` matrix needs at least one entry in `params`")
    if isinstance(params, dict):
        for name, hp in params.items():
            kind = hp_kind(hp)
            ppath = (*path, "params", name)
            if isinstance(mx, m.GridMatrix) and kind not in _GRID_OK:
                emit("error", (*ppath, "kind"), f"`{name}`: distribution `{kind}` cannot be used with grid search "
                                                f"(use one of {', '.join(sorted(_GRID_OK))})")
                continue
            if isinstance(mx, m.BayesMatrix) and kind not in _BAYES_OK:
                emit("error", (*ppath, "kind"), f"`{name}`: `{kind}` cannot be used with bayesian optimization "
                                                f"(use one of {', '.join(sorted(_BAYES_OK))})")
                continue
            _check_hp(name, hp, emit, ppath)
    if isinstance(mx, m.BayesMatrix) and mx.utility_function is not None:
        uf = mx.utility_function
        acq = uf.acquisition_function or "ucb"
        if acq == "ucb" and uf.kappa is None:
            emit("error", (*path, "utilityFunction"), "acquisition function `ucb` requires a parameter `kappa`")
        if acq in ("ei", "poi") and uf.eps is None:
            emit("error", (*path, "utilityFunction"), f"acquisition function `{acq}` requires a parameter `eps`")
    if isinstance(mx, m.HyperbandMatrix):
        missing = [k for k, v in (("maxIterations", mx.max_iterations), ("eta", mx.eta), ("resource", mx.resource),
                                  ("metric", mx.metric)) if v is None]
        if missing:
            emit("warning", path, f"hyperband needs {', '.join(f'`{k}`' for k in missing)} to run (the reference "
                                  "accepts the file without them but cannot run it)")
    if isinstance(mx, m.IterativeMatrix) and mx.tuner is None:
        emit("warning", path, "an `iterative` matrix needs a `tuner` (a component that returns the suggestions of "
                              "each iteration) to run")
    if isinstance(mx, (m.HyperbandMatrix, m.BayesMatrix, m.TpeMatrix)) and mx.tuner is not None:
        emit("warning", (*path, "tuner"), f"flowd runs its built-in {hp_kind(mx)} tuner; the custom `tuner` "
                                          "component is ignored (use `kind: iterative` to drive a search with it)")
    if isinstance(mx, m.MappingMatrix) and isinstance(mx.values, list) and not mx.values:
        emit("warning", (*path, "values"), "a mapping matrix with no values creates no runs")


def compile_early_stopping(items: Any) -> list[c.EarlyStopping]:
    if not isinstance(items, list):
        return []
    out = []
    for es in items:
        if isinstance(es, m.FailureEarlyStopping):
            out.append(c.EarlyStopping(kind="failure_early_stopping", percent=es.percent))  # type: ignore[arg-type]
        else:
            policy = msgspec.to_builtins(es.policy) if es.policy is not None else None
            out.append(c.EarlyStopping(kind="metric_early_stopping", metric=es.metric, value=es.value,
                                       optimization=es.optimization, policy=policy))
    return out


_MAIN = ("values", "params", "num_runs", "seed", "concurrency", "early_stopping")


def compile_matrix(mx: Any) -> c.Matrix:
    kind = type(mx).__struct_config__.tag
    raw = msgspec.to_builtins(mx)
    extra = {k: v for k, v in raw.items() if k not in ("kind", "values", "params", "numRuns", "seed",
                                                        "concurrency", "earlyStopping")}
    params = getattr(mx, "params", None)
    hp = None
    if isinstance(params, dict):
        hp = {name: c.HpParam(kind=hp_kind(p), value=p.value) for name, p in params.items()}
    elif isinstance(params, str):
        extra["params"] = params
    es = getattr(mx, "early_stopping", None)
    if isinstance(es, str):
        extra["earlyStopping"] = es
    return c.Matrix(
        kind=kind,
        values=getattr(mx, "values", None),
        params=hp,
        num_runs=getattr(mx, "num_runs", None),
        seed=getattr(mx, "seed", None),
        concurrency=getattr(mx, "concurrency", None),
        early_stopping=compile_early_stopping(es),
        extra=extra,
    )
