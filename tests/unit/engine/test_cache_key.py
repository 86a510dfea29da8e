"""The engine's cache key (POLYFLOW §5.10): component content + resolved inputs, cache.io,
disable, ttl, on by default inside pipelines, off for schedules and with context cache=off."""

from __future__ import annotations

import textwrap

from flowd.engine.core import Engine
from flowd.engine.messages import StartOp, Submit
from flowd.spec import compile_text

TEXT = """
kind: component
name: c
run:
  kind: dag
  operations:
    - {name: a, params: {n: 1, x: 1}, cache: {io: [n]}, component: {inputs: [{name: n, type: int}, {name: x, type: int}], run: {kind: job, container: {image: busybox, command: [echo]}}}}
    - {name: b, params: {n: 1, x: 2}, cache: {io: [n], ttl: 60}, component: {inputs: [{name: n, type: int}, {name: x, type: int}], run: {kind: job, container: {image: busybox, command: [echo]}}}}
    - {name: c, params: {n: 2, x: 1}, component: {inputs: [{name: n, type: int}, {name: x, type: int}], run: {kind: job, container: {image: busybox, command: [echo]}}}}
    - {name: d, params: {n: 1, x: 1}, cache: {disable: true}, component: {inputs: [{name: n, type: int}, {name: x, type: int}], run: {kind: job, container: {image: busybox, command: [echo]}}}}
"""


def starts(context=None, op=None):
    op = op or compile_text(textwrap.dedent(TEXT), source="t.yaml").op
    commands = Engine().handle(Submit("r", op, 0.0, context=context or {}))
    return {c.path: c for c in commands if isinstance(c, StartOp)}


def test_keys_follow_content_inputs_and_cache_io():
    s = starts()
    assert s["a"].cache_key == s["b"].cache_key  # x is outside cache.io
    assert s["c"].cache_key not in (None, s["a"].cache_key)
    assert s["d"].cache_key is None
    assert (s["a"].cache_ttl, s["b"].cache_ttl) == (None, 60.0)


def test_no_keys_when_the_submission_turns_the_cache_off():
    assert all(c.cache_key is None for c in starts({"cache": "off"}).values())


def test_keys_are_the_digest_of_the_whole_array_whatever_was_hashed_before():
    """Keys are kept across releases (a cache filled by the previous one still hits): each is
    the SHA-256 of ``["flowd-cache-1", kind, inputs, outputs, body, env, sorted params]`` as
    JSON, also now that the head of that array is hashed once per component and body."""
    import hashlib

    import msgspec

    op = compile_text(textwrap.dedent(TEXT), source="t.yaml").op
    specs = {o.name: o for o in op.component.dag.ops}
    first = starts(op=op)
    second = starts(op=op)  # the same components hashed again: the stored head is reused
    for path, start in first.items():
        spec = specs[path]
        if spec.cache and spec.cache.get("disable"):
            continue
        io = (spec.cache or {}).get("io")
        keyed = sorted((k, v) for k, v in start.params.items() if io is None or k in io)
        component = spec.component
        blob = msgspec.json.encode(["flowd-cache-1", component.kind, component.inputs, component.outputs, start.run,
                                    start.env, keyed])
        assert start.cache_key == hashlib.sha256(blob).hexdigest() == second[path].cache_key
