"""Early-stopping policies of a metric rule (POLYFLOW §7 [FLOWD]): which running children to stop.

Pure functions over the intermediate curves the children reported (``[[step, value], ...]`` per
metric, see ``OpStatus.metrics``). A rule ``metric_early_stopping`` with a ``policy`` acts on
individual children of the pipeline that declares it, never on the pipeline: the children it
rules out end ``stopped`` with reason ``EarlyStopping:<policy kind>``. The engine evaluates a
policy every ``evaluationInterval`` metric reports (points) received by the pipeline, once at
least ``minInterval`` reports were received, and only when at least ``minSamples`` children
have reported. "Better" follows the rule's ``optimization`` (``minimize`` or ``maximize``).

* ``median``: a running child is stopped when its best value so far is worse than the median of
  the best values, up to the same step, of the other children that reported by that step.
* ``truncation``: the children are ranked by their best value so far (the running ones, and the
  succeeded ones too with ``includeSucceeded: true``); of the worst ``floor(n·percent/100)``,
  those still running are stopped (so a small set is spared).
* ``diff``: a running child is stopped when its best value so far is worse than the best value
  of all children by more than ``percent`` % of that best value (absolute difference when the
  best value is 0).
"""

from __future__ import annotations

import math
import statistics
from typing import Any, NamedTuple


class Curve(NamedTuple):
    path: str
    running: bool
    succeeded: bool
    points: list[list[float]]  # [[step, value], ...] in step order


def _best(points: list[list[float]], maximize: bool, upto: float | None = None) -> float | None:
    values = [v for s, v in points if upto is None or s <= upto]
    if not values:
        return None
    return max(values) if maximize else min(values)


def _worse(a: float, b: float, maximize: bool) -> bool:
    return a < b if maximize else a > b


def ruled_out(policy: dict[str, Any], curves: list[Curve], maximize: bool) -> list[str]:
    """Paths of the running children the policy stops now."""
    kind = policy.get("kind")
    reported = [c for c in curves if c.points]
    if len(reported) < int(policy.get("minSamples") or 1):
        return []
    out: list[str] = []
    if kind == "median":
        for c in reported:
            if not c.running:
                continue
            step = c.points[-1][0]
            mine = _best(c.points, maximize)
            others = [b for o in reported if o.path != c.path
                      for b in [_best(o.points, maximize, step)] if b is not None]
            if mine is not None and others and _worse(mine, statistics.median(others), maximize):
                out.append(c.path)
    elif kind == "truncation":
        pool = [c for c in reported if c.running or (c.succeeded and policy.get("includeSucceeded"))]
        ranked = sorted(pool, key=lambda c: (_best(c.points, maximize) or 0.0) * (-1 if maximize else 1))
        cut = math.floor(len(ranked) * float(policy.get("percent") or 0) / 100)
        out = [c.path for c in ranked[len(ranked) - cut:] if cut and c.running]
    elif kind == "diff":
        bests = {c.path: _best(c.points, maximize) for c in reported}
        values = [b for b in bests.values() if b is not None]
        if not values:
            return []
        top = max(values) if maximize else min(values)
        margin = abs(top) * float(policy.get("percent") or 0) / 100 if top else float(policy.get("percent") or 0) / 100
        for c in reported:
            b = bests[c.path]
            if c.running and b is not None and abs(b - top) > margin and _worse(b, top, maximize):
                out.append(c.path)
    return out
