"""What the engine's per-op shortcuts (docs/engine.md, "Work per op") must leave as it was: the
commands a caller's sink gets, a matrix child's spec, and the outputs an op is left with."""

from __future__ import annotations

from typing import Any

from flowd.engine.core import Engine
from flowd.engine.index import child_template
from flowd.engine.messages import Command, OpStatus, StartOp, Submit
from flowd.spec.compiled import HpParam
from tests.unit.engine.build import IOSpec, Matrix, dag, job


def _succeed(run_id: str, path: str, outputs: dict[str, Any] | None = None, time: float = 1.0) -> OpStatus:
    return OpStatus(run_id, path, 1, "succeeded", time, outputs=outputs)


def test_one_sink_for_many_calls_then_another_then_none_routes_every_command():
    """The outbox of a sink is kept for the next call with the same sink: a call with another
    sink, or none, must still get exactly its own commands (what a list-returning engine gives)."""
    pipeline = dag("p", [job("a"), job("b", upstream=["a"]), job("c", upstream=["a"]), job("d", upstream=["b", "c"])])
    events = [Submit("r", pipeline, 0.0), _succeed("r", "a"), _succeed("r", "b"), _succeed("r", "c"),
              _succeed("r", "d")]
    first: list[Command] = []
    second: list[Command] = []
    sink_first, sink_second = first.append, second.append  # each the same object on every call
    plan = [sink_first, sink_first, None, sink_second, sink_first]
    listed, sunk = Engine(), Engine()
    for event, sink in zip(events, plan, strict=True):
        expected = listed.handle(event)
        assert expected  # every event here produces commands
        if sink is None:
            sizes = (len(first), len(second))
            assert sunk.handle(event) == expected
            assert (len(first), len(second)) == sizes  # neither sink got any
        else:
            target, other = (first, second) if sink is sink_first else (second, first)
            start, other_size = len(target), len(other)
            assert sunk.handle(event, sink) == []
            assert target[start:] == expected and len(other) == other_size
    assert sunk.snapshot() == listed.snapshot()
    assert sunk.runs["r"].nodes[""].status == "succeeded"


def test_a_matrix_child_spec_is_its_matrix_template_without_an_entry_per_child():
    sweep = job("sweep", inputs=[IOSpec("n", type="int")], matrix=Matrix(kind="mapping", values=[{"n": i} for i in range(5)]))
    engine = Engine()
    starts = [c for c in engine.handle(Submit("r", dag("p", [sweep]), 0.0)) if isinstance(c, StartOp)]
    assert len(starts) == 5
    index = engine._index["r"]
    nodes = engine.runs["r"].nodes
    template = index.child_templates["sweep"]
    assert not any(f"sweep[{i}]" in dict.keys(index.specs) for i in range(5))  # no entry per child
    assert all(index.spec(nodes[f"sweep[{i}]"]) is template for i in range(5))
    # what the index derives on demand (a restore's way) is that very template
    assert index.specs["sweep[3]"] is template
    # a restored engine derives it again and the children finish on it
    restored = Engine.restore(engine.snapshot())
    again = restored._index["r"]
    assert again.spec(restored.runs["r"].nodes["sweep[0]"]) == template
    for i in range(5):
        restored.handle(_succeed("r", f"sweep[{i}]"))
    assert restored.runs["r"].nodes[""].status == "succeeded"


def _finish_one(outputs: list[IOSpec], report: dict[str, Any]) -> dict[str, Any] | None:
    engine = Engine()
    engine.handle(Submit("r", dag("p", [job("a", outputs=outputs)]), 0.0))
    engine.handle(_succeed("r", "a", report))
    node = engine.runs["r"].nodes["a"]
    assert node.status == "succeeded", node.message
    return node.outputs


def test_a_report_that_needs_nothing_is_kept_and_one_that_needs_a_default_or_coercion_is_copied():
    typed = [IOSpec("x", type="int")]
    report = {"x": 1}
    assert _finish_one(typed, report) is report

    # a declared default fills a missing output: the node gets it, the report stays as sent
    report = {"x": 1}
    kept = _finish_one([*typed, IOSpec("y", type="int", value=7, is_optional=True)], report)
    assert kept == {"x": 1, "y": 7} and report == {"x": 1}

    # a value its declared type coerces ("3" for an int): the node gets 3, the report keeps "3"
    report = {"x": "3"}
    kept = _finish_one(typed, report)
    assert kept == {"x": 3} and type(kept["x"]) is int and report == {"x": "3"}


def test_a_tuner_job_under_a_matrix_keeps_its_own_spec():
    """An iterative matrix's tuner job is a child without a suggestion: its spec is the tuner's,
    never the template the matrix's suggested children share."""
    tuner = job("tuner", outputs=[IOSpec("suggestions", type="list")])
    sweep = job("it", inputs=[IOSpec("x", type="float")],
                matrix=Matrix(kind="iterative", params={"x": HpParam("uniform", [0, 1])}, extra={"maxIterations": 1},
                              tuner=tuner))
    engine = Engine()
    starts = [c for c in engine.handle(Submit("r", dag("p", [sweep]), 0.0)) if isinstance(c, StartOp)]
    index = engine._index["r"]
    node = engine.runs["r"].nodes[starts[0].path]
    assert node.parent == "it" and node.suggestion is None  # the tuner job, started first
    template = child_template(index, "it", index.specs["it"])  # as once a suggested child exists
    assert index.spec(node) is index.specs[node.path] and index.spec(node) is not template
    assert index.spec(node).component.outputs == tuner.component.outputs
