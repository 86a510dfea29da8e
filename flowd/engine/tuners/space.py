"""The search space of a matrix's ``params`` as numbers a model can work on (bayes, tpe).

Each hyperparameter becomes one dimension:

* **real** — the continuous generators, in the coordinate they are drawn in: ``uniform``/
  ``quniform`` over ``[low, high]``, ``loguniform``/``qloguniform`` over ``[low, high]`` in log
  space (the value is ``exp(x)``), ``normal``/``lognormal`` over ``loc ± 3·scale``. The ``q``
  variants floor the value to a multiple of ``q`` after decoding (§6.3).
* **ordinal** — the discrete generators (``range``, ``linspace``, ``logspace``, ``geomspace``,
  ``daterange``, ``datetimerange``, and a ``choice`` of numbers, sorted): the index of a value.
* **categorical** — ``choice`` of anything else and ``pchoice``: the index of a value.

``to_unit``/``from_unit`` map to and from ``[0, 1]`` (the Gaussian process works there);
``encode``/``decode`` map to and from the coordinate a TPE sampler sees.
"""

from __future__ import annotations

import math
from typing import Any

from flowd.engine.matrix import DISCRETE, expand
from flowd.engine.tuners.base import TunerError
from flowd.spec.compiled import HpParam
from flowd.spec.expansion import range_parts

_REAL = {"uniform", "quniform", "loguniform", "qloguniform", "normal", "qnormal", "lognormal", "qlognormal"}
_SIGMAS = 3.0


class Dim:
    def __init__(self, name: str, hp: HpParam) -> None:
        self.name = name
        self.kind = hp.kind
        self.q: float | None = None
        self.log_value = False  # value = exp(x)
        self.values: list[Any] = []
        self.low = self.high = 0.0
        if hp.kind in _REAL:
            normal = "normal" in hp.kind
            parts = range_parts(hp.value, ("loc", "scale", "q") if normal else ("low", "high", "q"))
            if hp.kind.startswith("q"):
                if len(parts) < 3 or not parts[2]:
                    raise TunerError(f"`{name}`: `{hp.kind}` needs a non-zero q")
                self.q = float(parts[2])
            a, b = float(parts[0]), float(parts[1])
            if normal:
                a, b = a - _SIGMAS * abs(b), a + _SIGMAS * abs(b)
            if not a < b:
                raise TunerError(f"`{name}`: `{hp.kind}` needs low < high, got {parts[:2]}")
            self.low, self.high = a, b
            self.log_value = hp.kind in ("loguniform", "qloguniform", "lognormal", "qlognormal")
            self.type = "real"
        elif hp.kind in DISCRETE or hp.kind == "pchoice":
            values = [v for v, _ in hp.value] if hp.kind == "pchoice" else expand(hp)
            if not values:
                raise TunerError(f"`{name}`: `{hp.kind}` has no values")
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
            if hp.kind == "choice" and numeric:
                values = sorted(values)
            self.values = values
            self.type = "ordinal" if (hp.kind != "pchoice" and (hp.kind != "choice" or numeric)) else "categorical"
        else:
            raise TunerError(f"`{name}`: unknown hyperparameter kind {hp.kind!r}")

    # -- the tuner's coordinate
    def encode(self, value: Any) -> float | int:
        if self.type == "real":
            try:
                x = float(value)
            except (TypeError, ValueError):
                return (self.low + self.high) / 2
            if self.log_value:
                x = math.log(x) if x > 0 else self.low
            return min(max(x, self.low), self.high)
        return self._index(value)

    def decode(self, x: float) -> Any:
        if self.type == "real":
            value = float(x)
            if self.log_value:
                value = math.exp(value)
            if self.q:
                value = math.floor(value / self.q) * self.q
            return value
        return self.values[min(max(round(x), 0), len(self.values) - 1)]

    def _index(self, value: Any) -> int:
        for i, v in enumerate(self.values):
            if v == value:
                return i
        numbers = [(abs(float(v) - float(value)), i) for i, v in enumerate(self.values)
                   if isinstance(v, (int, float)) and isinstance(value, (int, float))]
        return min(numbers)[1] if numbers else 0

    # -- the unit interval (Gaussian process)
    def to_unit(self, value: Any) -> float:
        x = self.encode(value)
        if self.type == "real":
            return (float(x) - self.low) / (self.high - self.low)
        return float(x) / max(len(self.values) - 1, 1)

    def from_unit(self, u: float) -> Any:
        u = min(max(float(u), 0.0), 1.0)
        if self.type == "real":
            return self.decode(self.low + u * (self.high - self.low))
        return self.decode(u * (len(self.values) - 1))


def dims(params: dict[str, HpParam] | None) -> list[Dim]:
    if not params:
        raise TunerError("the matrix has no `params` to tune")
    return [Dim(name, hp) for name, hp in params.items()]


def key(suggestion: dict[str, Any]) -> str:
    return repr(sorted(suggestion.items()))
