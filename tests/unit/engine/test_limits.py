"""Limits the engine applies at run time (docs/limits.md): what only a run can know (a templated
matrix, reported outputs, rendered templates) and pipelines compiled elsewhere."""

from __future__ import annotations

import textwrap
import tracemalloc

from flowd.engine import Engine, StartOp, Submit
from flowd.spec import compile_text
from flowd.spec.compiled import HpParam, Matrix
from flowd.spec.limits import Limits
from tests.unit.engine.build import dag, job
from tests.unit.engine.sim import Sim

TEMPLATED = """
version: 1.1
kind: component
name: fan
run:
  kind: dag
  operations:
    - name: gen
      component:
        outputs: [{name: rows, type: list}]
        run: {kind: job, container: {image: x, command: ["true"]}}
    - name: each
      dependencies: [gen]
      matrix: {kind: mapping, values: "{{ ops.gen.outputs.rows }}"}
      component:
        inputs: [{name: i, type: int}]
        run: {kind: job, container: {image: x, command: ["true"]}}
"""


def compiled(text: str, limits: Limits | None = None):
    result = compile_text(textwrap.dedent(text), source="t.yaml", limits=limits)
    assert result.valid, [d.format() for d in result.errors]
    return result.op


def rows(n: int):
    return lambda start: {"rows": [{"i": i} for i in range(n)]} if start.path == "gen" else None


def test_a_templated_matrix_over_max_ops_fails_when_it_starts() -> None:
    op = compiled(TEMPLATED, Limits(max_ops=50))  # literal sizes are fine: 1 + 1 + 1 + (1 run)
    sim = Sim(op, outputs=rows(60), limits=Limits(max_ops=50))
    sim.run()
    each = sim.node("each")
    assert (each.status, each.reason) == ("failed", "LimitExceeded")
    assert each.message == "this matrix expands to 60 runs; the limit is 50 (setting max_ops)"
    assert each.children == []  # not one child was created
    assert [s.path for s in sim.started] == ["gen"]
    assert sim.done is not None and sim.done.status == "failed"


def test_a_templated_matrix_counts_the_ops_already_in_the_run() -> None:
    sim = Sim(compiled(TEMPLATED), outputs=rows(48), limits=Limits(max_ops=50))
    sim.run()
    # root, gen, each: 3 nodes, plus 48 runs = 51
    assert sim.node("each").message == ("this matrix expands to 48 runs, which takes the run to 51 ops; "
                                        "the limit is 50 (setting max_ops)")
    ok = Sim(compiled(TEMPLATED), outputs=rows(47), limits=Limits(max_ops=50))
    ok.run()
    assert ok.done is not None and ok.done.status == "succeeded" and len(ok.engine.runs["run1"].nodes) == 50


def test_a_compiled_pipeline_from_elsewhere_is_counted_on_submit() -> None:
    """A producer may send a compiled pipeline (no `flowd check` ran): the 1000^3 grid fails at
    once, before any suggestion is made."""
    axis = HpParam(kind="range", value=[0, 1000, 1])
    sweep = job("sweep", matrix=Matrix(kind="grid", params={"a": axis, "b": axis, "c": axis}))
    engine = Engine(Limits())
    tracemalloc.start()
    try:
        commands = engine.handle(Submit(run_id="r", pipeline=dag("p", [sweep]), time=1.0))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000, peak
    root = engine.runs["r"].nodes[""]
    assert (root.status, root.reason) == ("failed", "LimitExceeded")
    assert root.message == "the pipeline expands to 1,000,000,002 ops; the limit is 250,000 (setting max_ops)"
    assert len(engine.runs["r"].nodes) == 1 and not any(isinstance(c, StartOp) for c in commands)


def test_nested_literal_matrices_multiply_and_are_refused_on_submit() -> None:
    inner = job("inner", matrix=Matrix(kind="grid", params={"j": HpParam(kind="range", value=[0, 30, 1])}))
    outer = dag("outer", [inner], matrix=Matrix(kind="grid", params={"i": HpParam(kind="range", value=[0, 3, 1])}))
    sim = Sim(dag("p", [outer]), limits=Limits(max_ops=60))
    # p + outer + 3 x (outer[i] + inner + 30 runs)
    assert sim.node("").message == "the pipeline expands to 98 ops; the limit is 60 (setting max_ops)"
    assert sim.started == [] and len(sim.engine.runs["run1"].nodes) == 1


NESTED_TEMPLATED = """
version: 1.1
kind: component
name: nested
inputs: [{name: rows, type: list}]
run:
  kind: dag
  operations:
    - name: outer
      params: {rows: {ref: dag, value: inputs.rows}}
      matrix: {kind: grid, concurrency: 1, params: {i: {kind: range, value: [0, 3, 1]}}}
      component:
        inputs: [{name: i, type: int}, {name: rows, type: list}]
        run:
          kind: dag
          operations:
            - name: inner
              matrix: {kind: mapping, values: "{{ dag.inputs.rows }}"}
              component:
                inputs: [{name: j, type: int}]
                run: {kind: job, container: {image: x, command: ["true"]}}
"""


def test_templated_matrices_inside_a_matrix_count_against_the_whole_run() -> None:
    result = compile_text(textwrap.dedent(NESTED_TEMPLATED), source="t.yaml",
                          params={"rows": [{"j": j} for j in range(20)]}, limits=Limits(max_ops=50))
    assert result.valid, [d.format() for d in result.errors]
    sim = Sim(result.op, limits=Limits(max_ops=50))
    sim.run()
    nodes = sim.engine.runs["run1"].nodes
    refused = [p for p, n in nodes.items() if n.reason == "LimitExceeded"]
    assert refused == ["outer[2]/inner"], {p: n.status for p, n in nodes.items() if n.kind != "job"}
    assert "this matrix expands to 20 runs, which takes the run to " in nodes["outer[2]/inner"].message
    assert [nodes[f"outer[{i}]/inner"].status for i in range(3)] == ["succeeded", "succeeded", "failed"]
    assert len(nodes) <= 50


def test_outputs_over_the_limit_fail_the_attempt_and_stay_out_of_the_state() -> None:
    pipeline = dag("p", [job("a"), job("b", upstream=["a"])])
    sim = Sim(pipeline, outputs=lambda s: {"blob": "x" * 2000} if s.path == "a" else None,
              limits=Limits(max_outputs_bytes=1000))
    sim.run()
    a = sim.node("a")
    assert (a.status, a.reason, a.outputs) == ("failed", "InvalidOutputs", None)
    assert a.message == "the outputs are 2,011 bytes as JSON; the limit is 1,000 (setting max_outputs_bytes)"
    assert sim.status("b") == "upstream_failed"


def test_a_template_rendering_past_the_limit_fails_the_op() -> None:
    text = """
    version: 1.1
    kind: component
    inputs: [{name: n, type: int, value: 100000}]
    run:
      kind: dag
      operations:
        - name: big
          params: {n: {ref: dag, value: inputs.n}}
          component:
            inputs: [{name: n, type: int}]
            run: {kind: job, container: {image: x, command: ["echo", "{{ 'abcdefghij' * n }}"]}}
        - name: loop
          component:
            run:
              kind: job
              container: {image: x, command: ["echo", "{% for i in range(100000) %}0123456789{% endfor %}"]}
    """
    sim = Sim(compiled(text), limits=Limits(max_template_bytes=100_000))
    sim.run()
    big, loop = sim.node("big"), sim.node("loop")
    assert (big.status, big.reason) == ("failed", "CompilationFailed")
    assert "a repetition in the template would be 1,000,000 bytes; the limit is 100,000 (setting " \
           "max_template_bytes)" in big.message
    assert "the template renders to at least 100,010 bytes; the limit is 100,000 (setting max_template_bytes)" \
           in loop.message
    assert sim.started == []
    ok = Sim(compiled(text), limits=Limits(max_template_bytes=2_000_000))
    ok.run()
    assert ok.done is not None and ok.done.status == "succeeded"


def test_a_compiled_pipeline_nested_too_deep_is_refused_on_submit() -> None:
    op = job("leaf")
    for level in range(5):
        op = dag(f"d{level}", [op])
    sim = Sim(op, limits=Limits(max_dag_depth=4))
    assert sim.node("").message == "DAGs are nested 5 levels deep; the limit is 4 (setting max_dag_depth)"
    assert sim.started == []
    ok = Sim(op, limits=Limits(max_dag_depth=5))
    ok.run()
    assert ok.done is not None and ok.done.status == "succeeded"
