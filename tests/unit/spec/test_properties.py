"""Property tests: random valid DAGs round-trip; random mutations give clean errors, never a crash."""

from __future__ import annotations

import copy
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowd.spec import compile_text, dump_text, load_text
from flowd.spec.diagnostics import Diagnostic
from flowd.spec.model import TRIGGERS
from flowd.spec.schema import Reader

NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True)
JOB = {"kind": "job", "container": {"image": "busybox:1.36", "command": ["sh", "-c", "true"]}}
TYPES = ["int", "float", "str", "path", "bool"]
VALUES = {"int": st.integers(-5, 5), "float": st.floats(-1, 1, allow_nan=False), "str": NAMES,
          "path": st.just("/data"), "bool": st.booleans()}


@st.composite
def dags(draw: Any) -> dict[str, Any]:
    names = draw(st.lists(NAMES, min_size=1, max_size=8, unique=True))
    out_type = {n: draw(st.sampled_from(TYPES)) for n in names}
    ops = []
    for i, name in enumerate(names):
        op: dict[str, Any] = {"name": name}
        earlier = names[:i]
        inputs = []
        params: dict[str, Any] = {}
        if earlier and draw(st.booleans()):
            deps = draw(st.lists(st.sampled_from(earlier), max_size=3, unique=True))
            if deps:
                op["dependencies"] = deps
                op["trigger"] = draw(st.sampled_from(TRIGGERS))
        if earlier and draw(st.booleans()):
            src = draw(st.sampled_from(earlier))
            inputs.append({"name": "x", "type": out_type[src]})
            params["x"] = {"ref": f"ops.{src}", "value": "outputs.out"}
        if draw(st.booleans()):
            t = draw(st.sampled_from(TYPES))
            inputs.append({"name": "y", "type": t})
            params["y"] = draw(VALUES[t])
        if earlier and draw(st.booleans()):
            params["z"] = {"value": "{{ ops['" + draw(st.sampled_from(earlier)) + "'].status }}", "contextOnly": True}
        if draw(st.booleans()):
            op["conditions"] = "{{ 1 == 1 }}"
        if params:
            op["params"] = params
        if draw(st.booleans()):
            op["dagRef"] = "shared"
            op["runPatch"] = {"environment": {"labels": {"op": name}}}
            # an inline component wins over the dagRef (POLYFLOW §1.3)
            op["component"] = {"inputs": inputs, "outputs": [{"name": "out", "type": out_type[name]}], "run": JOB}
        else:
            op["component"] = {"inputs": inputs, "outputs": [{"name": "out", "type": out_type[name]}], "run": JOB}
        ops.append(op)
    return {
        "version": 1.1,
        "kind": "component",
        "name": "generated",
        "run": {"kind": "dag", "concurrency": draw(st.integers(1, 4)), "operations": ops,
                "components": [{"name": "shared", "run": JOB}]},
    }


def _read(text: str) -> Any:
    findings: list[Any] = []
    spec = Reader("<t>", findings, {}).read_root(load_text(text))
    assert not [f for f in findings if f.severity == "error"], findings
    return spec


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags())
def test_valid_dags_round_trip(doc: dict[str, Any]) -> None:
    text = dump_text(doc)
    result = compile_text(text)
    assert result.valid, [f"{d.location}: {d.message}" for d in result.errors]
    first = _read(text)
    again = _read(dump_text(msgspec.to_builtins(first)))
    assert again == first
    # the compiled tree keeps the edges: every op lists its dependencies first
    for op, raw in zip(result.op.component.dag.ops, doc["run"]["operations"], strict=True):
        assert op.upstream[: len(raw.get("dependencies", []))] == raw.get("dependencies", [])


JUNK = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=12),
                 st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
                 st.just("{{ ops.nope.outputs.x }}"), st.just("ops.x"))


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated(draw: Any) -> tuple[dict[str, Any], str]:
    doc = copy.deepcopy(draw(dags()))
    action = draw(st.sampled_from(["delete", "junk", "typo", "extra", "cycle", "orphan", "dup"]))
    ops = doc["run"]["operations"]
    if action == "cycle":
        ops[0].setdefault("dependencies", []).append(ops[-1]["name"])
        ops[-1].setdefault("dependencies", []).append(ops[0]["name"])
        return doc, action
    if action == "orphan":
        ops[-1].setdefault("dependencies", []).append("no-such-op")
        return doc, action
    if action == "dup":
        ops.append(copy.deepcopy(ops[0]))
        return doc, action
    path = draw(st.sampled_from([p for p in _paths(doc) if p]))
    parent: Any = doc
    for part in path[:-1]:
        parent = parent[part]
    key = path[-1]
    if action == "delete":
        del parent[key]
    elif action == "junk":
        parent[key] = draw(JUNK)
    elif action == "typo" and isinstance(key, str):
        parent[key[:-1] + "x" + key[-1:]] = parent.pop(key)
    elif isinstance(parent, dict):
        parent[draw(NAMES) + "Zz"] = draw(JUNK)
    return doc, action


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutations_give_clean_errors(case: tuple[dict[str, Any], str]) -> None:
    doc, action = case
    result = compile_text(dump_text(doc))  # must not raise
    for d in result.errors + result.warnings:
        assert isinstance(d, Diagnostic) and d.message and isinstance(d.location, str)
    if action in ("orphan", "dup") or (action == "cycle"):
        assert not result.valid
    if not result.valid:
        assert result.op is None


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_never_crashes(text: str) -> None:
    result = compile_text(text)
    assert isinstance(result.valid, bool)
