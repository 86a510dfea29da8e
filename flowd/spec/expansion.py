"""How many ops a compiled pipeline expands to, computed without expanding anything.

A ``grid`` of three 1,000-value ``range`` params is 10^9 runs: enumerating them to count them
is exactly the work a limit must prevent. Here each generator's length is arithmetic
(``ceil((stop - start) / step)``, ``num``, ``len(choice)``), a matrix's run count is their
product (capped by ``numRuns``), and a pipeline's op count is a sum over its tree with each
component counted once (memoized: a component shared by many ops is not walked again).

Used by the compiler (``flowd check``: the limit ``max_ops`` when every size is literal) and
by the engine (when a matrix starts, with its templated ``values`` rendered, and on submit for
pipelines that were compiled elsewhere). Pure functions; nothing here enumerates a matrix.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from typing import Any

from flowd.spec import compiled as c
from flowd.spec.limits import LimitError, over
from flowd.spec.types import is_template

__all__ = ["Counter", "axis_length", "check_ops", "matrix_runs", "range_parts"]

_NAMES = {
    "range": ("start", "stop", "step"),
    "linspace": ("start", "stop", "num"),
    "logspace": ("start", "stop", "num", "base"),
    "geomspace": ("start", "stop", "num"),
    "daterange": ("start", "stop", "step"),
    "datetimerange": ("start", "stop", "step"),
}


def range_parts(value: Any, names: tuple[str, ...]) -> list[Any]:
    """A range-like hp value's parts, from any of its three spellings: a list, a ``"a:b:c"``
    string, or a map with named keys. The engine's generators read values with this too, so
    the size counted here is the size they expand to."""
    if isinstance(value, str):
        out: list[Any] = []
        for part in value.split(":"):
            try:
                out.append(int(part))
            except ValueError:
                try:
                    out.append(float(part))
                except ValueError:
                    out.append(part)
        return out
    if isinstance(value, dict):
        return [value[n] for n in names if n in value]
    if isinstance(value, (list, tuple)):
        return list(value)
    return []


def _number(x: Any) -> float | None:
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return float(x)
    return None


def _when(x: Any) -> dt.datetime | None:
    if isinstance(x, dt.datetime):
        return x.replace(tzinfo=None)
    if isinstance(x, dt.date):
        return dt.datetime(x.year, x.month, x.day)
    if isinstance(x, str):
        try:
            return dt.datetime.fromisoformat(x).replace(tzinfo=None)
        except ValueError:
            return None
    return None


def axis_length(hp: c.HpParam) -> int | None:
    """How many values a discrete generator yields; None when unknown (a template, a bad
    value, a distribution)."""
    kind, value = hp.kind, hp.value
    if is_template(value):
        return None
    if kind == "choice":
        return len(value) if isinstance(value, (list, tuple)) else None
    names = _NAMES.get(kind)
    if names is None:
        return None
    parts = range_parts(value, names)
    if len(parts) < 3:
        return None
    if kind in ("daterange", "datetimerange"):
        first, last, step = _when(parts[0]), _when(parts[1]), _number(parts[2])
        if first is None or last is None or not step or step <= 0:
            return None
        seconds = step * (86400 if kind == "daterange" else 1)
        return max(0, math.ceil((last - first).total_seconds() / seconds))
    nums = [n for n in (_number(p) for p in parts[:3]) if n is not None]
    if len(nums) < 3:
        return None
    start, stop, third = nums
    if kind == "range":
        if third == 0:
            return None
        length = (stop - start) / third
        return max(0, math.ceil(length)) if math.isfinite(length) else None
    return max(0, int(third)) if math.isfinite(third) else None


def matrix_runs(matrix: c.Matrix, values: Any = None) -> int | None:
    """How many runs a matrix makes; None when that is not known yet (a templated ``values``
    before it is rendered, a template in a generator) or flowd does not run that kind.
    ``values`` replaces ``matrix.values`` (a mapping's rendered template)."""
    if matrix.kind == "mapping":
        vals = values if values is not None else matrix.values
        return len(vals) if isinstance(vals, list) else None
    params = matrix.params or {}
    lengths = [axis_length(hp) for hp in params.values()]
    space: int | None = math.prod(n for n in lengths if n is not None) if all(n is not None for n in lengths) else None
    num_runs = matrix.num_runs if isinstance(matrix.num_runs, int) and not isinstance(matrix.num_runs, bool) else None
    if matrix.kind == "grid":
        if space is None:
            return None
        return min(space, num_runs) if num_runs else space
    if matrix.kind == "random":
        if num_runs is None:
            return None
        return min(num_runs, space) if space is not None and params else num_runs
    return None  # hyperband, bayes, tpe, iterative: not run by this version of flowd


class Counter:
    """Op counts of compiled ops, each component counted once."""

    def __init__(self) -> None:
        self._components: dict[int, int] = {}
        self._depths: dict[int, int] = {}

    def depth(self, comp: c.Component) -> int:
        """DAGs nested in ``comp``, itself included (0 for a job or service)."""
        hit = self._depths.get(id(comp))
        if hit is not None:
            return hit
        depth = 0
        if comp.dag is not None:
            depth = 1 + max((self.depth(child.component) for child in comp.dag.ops), default=0)
        self._depths[id(comp)] = depth
        return depth

    def component(self, comp: c.Component) -> int:
        """Nodes one run of ``comp`` creates: 1 for a job or service, 1 + its ops for a DAG."""
        hit = self._components.get(id(comp))
        if hit is not None:
            return hit
        total = 1
        if comp.dag is not None:
            total += sum(self.op(child) for child in comp.dag.ops)
        self._components[id(comp)] = total
        return total

    def op(self, op: c.Op) -> int:
        """Nodes ``op`` creates (a matrix whose size is not known yet counts as one run)."""
        inner = self.component(op.component)
        if op.matrix is None:
            return inner
        runs = matrix_runs(op.matrix)
        return 1 + (1 if runs is None else runs) * inner


def check_ops(root: c.Op, limit: int, *, max_reports: int = 5) -> Iterator[tuple[c.Op, str, LimitError]]:
    """``(op, field, error)`` for the places that make ``root`` expand to more than ``limit``
    ops: a matrix whose runs (times the matrices around it) pass the limit, else the smallest op
    whose expansion does. ``field`` is ``"matrix"`` or ``""``. Nothing when within the limit."""
    count = Counter()
    if count.op(root) <= limit:
        return
    reports = 0

    def visit(op: c.Op, mult: int, is_root: bool) -> Iterator[tuple[c.Op, str, LimitError]]:
        nonlocal reports
        if reports >= max_reports:
            return
        total = count.op(op) * mult
        if total <= limit:
            return
        runs = 1
        if op.matrix is not None:
            known = matrix_runs(op.matrix)
            runs = 1 if known is None else known
            if mult * runs > limit:
                reports += 1
                if mult == 1:
                    what = "this matrix expands to"
                else:
                    what = f"this matrix expands to {runs:,} runs, and inside the matrices around it to"
                yield op, "matrix", over(what, mult * runs, "runs", setting="max_ops", limit=limit)
                return
        before = reports
        if op.component.dag is not None:
            for child in op.component.dag.ops:
                yield from visit(child, mult * runs, False)
        if reports == before:
            reports += 1
            noun = "the pipeline" if is_root else ("this matrix" if op.matrix is not None else "this op")
            if op.matrix is not None:
                inner = count.component(op.component)
                what = f"{noun} expands to {runs:,} runs of {inner:,} ops each:"
            else:
                what = f"{noun} expands to"
            yield op, ("matrix" if op.matrix is not None else ""), over(what, total, "ops", setting="max_ops",
                                                                         limit=limit)

    yield from visit(root, 1, True)
