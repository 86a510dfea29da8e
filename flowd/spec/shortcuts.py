"""The 2.18 ``resources`` shortcut (POLYFLOW §1.4): how it is checked and how it is lowered.

``resources: {cpu: "1..2", memory: 512Mi, gpu: 1}`` becomes the main container's requests and
limits. Checked like the reference: cpu/memory take a Kubernetes quantity, ``gpu`` (spelled so,
not ``nvidia.com/gpu``) and extended resources (names with ``/``) an integer count; ``"a..b"``
sets request ``a`` and limit ``b`` (either may be empty) and the request may not exceed the limit.
Pure functions.
"""

from __future__ import annotations

import re
from typing import Any

from flowd.spec.diagnostics import did_you_mean

__all__ = ["resource_problem", "lower_resources"]


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


_UNITS = {"": 1, "m": 1e-3, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


def _quantity(x: Any) -> float | None:
    """A Kubernetes quantity (``500m``, ``2Gi``, ``1.5``) as a number, or None."""
    if isinstance(x, bool):
        return None
    if isinstance(x, (int, float)):
        return float(x)
    mt = re.match(r"^([0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?)([a-zA-Z]*)$", str(x))
    if not mt or mt.group(2) not in _UNITS:
        return None
    return float(mt.group(1)) * _UNITS[mt.group(2)]


def resource_problem(key: str, value: Any) -> str | None:
    """What is wrong with one entry of the ``resources`` shortcut, or None."""
    if key == "nvidia.com/gpu":
        return "write `gpu` instead of `nvidia.com/gpu` in the `resources` shortcut"
    if key not in ("cpu", "memory", "gpu") and "/" not in key:
        hint = did_you_mean(key, ["cpu", "memory", "gpu"])
        return f"unknown resource `{key}`: use cpu, memory, gpu or an extended resource name containing `/`{hint}"
    count = key == "gpu" or "/" in key
    parts = value.split("..", 1) if isinstance(value, str) and ".." in value else [value]
    nums: list[float | None] = []
    for part in parts:
        if isinstance(part, str) and not part.strip():
            nums.append(None)
            continue
        part = part.strip() if isinstance(part, str) else part
        q = _quantity(part)
        if count and not (type(part) is int or (isinstance(part, str) and part.isdigit())):
            q = None
        if q is None or q < 0 or q != q or q == float("inf"):
            return (f"`{key}` expects a non-negative {'integer count' if count else 'quantity'} or `low..high`, "
                    f"got {_show(value)}")
        nums.append(q)
    if len(nums) == 2 and nums[0] is not None and nums[1] is not None and nums[0] > nums[1]:
        return f"`{key}`: the request {parts[0]} is above the limit {parts[1]}"
    return None


def lower_resources(res: dict[str, Any]) -> dict[str, Any]:
    """§1.4 ``resources`` shortcut -> container requests/limits."""
    requests: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    for key, value in res.items():
        name = "nvidia.com/gpu" if key == "gpu" else key
        count = key == "gpu" or "/" in key
        if isinstance(value, str) and ".." in value:
            low, _, high = value.partition("..")
            if low.strip():
                requests[name] = low.strip()
            if high.strip():
                limits[name] = high.strip()
        else:
            requests[name] = value
            if count:
                limits[name] = value
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out
