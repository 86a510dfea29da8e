"""Fan-in (a matrix op's outputs downstream) and DAG outputs bound to inner ops, through the
spec layer and the engine."""

from __future__ import annotations

import textwrap

from flowd.spec import compile_text
from tests.unit.engine.sim import Sim


def compile_ok(text: str, params=None):
    result = compile_text(textwrap.dedent(text), source="test.yaml", params=params)
    assert result.valid, [d.format() for d in result.errors]
    return result.op


SWEEP = """
kind: component
name: sweep
run:
  kind: dag
  operations:
    - name: tune
      matrix: {kind: grid, params: {lr: {kind: choice, value: [0.3, 0.1, 0.2]}}}
      component:
        inputs: [{name: lr, type: float}]
        outputs: [{name: loss, type: float}, {name: note, type: str, isOptional: true}]
        run: {kind: job, container: {image: busybox, command: [echo]}}
    - name: pick
      trigger: all_done
      params:
        losses: {ref: ops.tune, value: outputs.loss}
        all: {ref: ops.tune, value: outputs}
        best: "{{ (ops.tune.children | selectattr('status', 'eq', 'succeeded') | sort(attribute='outputs.loss') | first).params.lr }}"
        statuses: "{{ ops.tune.children | map(attribute='status') | list }}"
        worst: "{{ ops.tune.outputs.loss | reject('none') | max }}"
      component:
        inputs:
          - {name: losses, type: float, isList: true}
          - {name: all, type: dict}
          - {name: best, type: float}
          - {name: statuses, type: list}
          - {name: worst, type: float}
        run: {kind: job, container: {image: busybox, command: [echo]}}
"""


def test_a_matrix_ops_outputs_are_lists_in_children_order():
    sim = Sim(compile_ok(SWEEP), outputs=lambda s: {"loss": s.params["lr"] * 2} if s.path.startswith("tune[") else None)
    sim.run()
    pick = next(s for s in sim.started if s.path == "pick")
    assert pick.params["losses"] == [0.6, 0.2, 0.4]
    assert pick.params["all"] == {"loss": [0.6, 0.2, 0.4], "note": [None, None, None]}
    assert pick.params["best"] == 0.1 and pick.params["worst"] == 0.6
    assert sim.node("tune").outputs == {"loss": [0.6, 0.2, 0.4], "note": [None, None, None]}


def test_a_failed_child_leaves_a_none_in_its_place_and_its_status_is_visible():
    sim = Sim(compile_ok(SWEEP), script={"tune[1]": ["fail"]},
              outputs=lambda s: {"loss": s.params["lr"] * 2} if s.path.startswith("tune[") else None)
    sim.run()
    pick = next(s for s in sim.started if s.path == "pick")
    assert pick.params["losses"] == [0.6, None, 0.4]
    assert pick.params["statuses"] == ["succeeded", "failed", "succeeded"]
    assert pick.params["best"] == 0.2


def test_check_types_a_matrix_output_as_a_list():
    bad = textwrap.dedent(SWEEP).replace("{name: losses, type: float, isList: true}", "{name: losses, type: float}")
    result = compile_text(bad, source="t.yaml")
    assert not result.valid
    assert "is a matrix" in result.errors[0].message and "isList: true" in result.errors[0].message
    bad = textwrap.dedent(SWEEP).replace("ops.tune.children |", "ops.tune.kids |")
    assert "`.children`" in compile_text(bad, source="t.yaml").errors[0].message


NESTED = """
kind: component
name: nest
run:
  kind: dag
  operations:
    - name: l1
      component:
        outputs: [{name: got, type: int, value: "{{ ops.l2.outputs.got }}"}, {name: fixed, type: str, value: x, isOptional: true}]
        run:
          kind: dag
          operations:
            - name: l2
              component:
                inputs: [{name: k, type: int, value: 2, isOptional: true}]
                outputs: [{name: got, type: int, value: "{{ ops.l3.outputs.n * k }}"}]
                run:
                  kind: dag
                  operations:
                    - name: l3
                      component:
                        outputs: [{name: n, type: int}]
                        run: {kind: job, container: {image: busybox, command: [echo]}}
    - name: use
      params: {got: {ref: ops.l1, value: outputs.got}, also: "{{ ops.l1.outputs.fixed }}"}
      component:
        inputs: [{name: got, type: int}, {name: also, type: str}]
        run: {kind: job, container: {image: busybox, command: [echo, "{{ got }}"]}}
"""


def test_dag_outputs_flow_out_of_three_levels():
    sim = Sim(compile_ok(NESTED), outputs=lambda s: {"n": "21"} if s.path.endswith("l3") else None)
    sim.run()
    assert sim.node("l1/l2").outputs == {"got": 42}
    assert sim.node("l1").outputs == {"got": 42, "fixed": "x"}
    use = next(s for s in sim.started if s.path == "use")
    assert use.params == {"got": 42, "also": "x"} and sim.done.status == "succeeded"


def test_a_binding_to_an_output_that_was_not_reported_fails_the_dag_naming_it():
    sim = Sim(compile_ok(NESTED), outputs=lambda s: None)
    sim.run()
    assert sim.status("l1/l2") == "failed" and sim.node("l1/l2").reason == "InvalidOutputs"
    assert "output 'got'" in sim.node("l1/l2").message
    assert sim.status("use") == "upstream_failed"


def test_check_types_dag_output_bindings():
    result = compile_text(textwrap.dedent(NESTED).replace("ops.l2.outputs.got", "ops.l2.outputs.gt"), source="t.yaml")
    assert not result.valid and "declares no output `gt`" in result.errors[0].message
    job_binding = """
    kind: component
    name: j
    outputs: [{name: x, type: int, value: "{{ ops.a.outputs.y }}"}]
    run: {kind: job, container: {image: busybox, command: [echo]}}
    """
    result = compile_text(textwrap.dedent(job_binding), source="t.yaml")
    assert not result.valid and "only a DAG component" in result.errors[0].message


UNBOUND = """
kind: component
name: nest
run:
  kind: dag
  operations:
    - name: l1
      component:
        outputs: [{name: n, type: int}]
        run:
          kind: dag
          operations:
            - name: l2
              component:
                outputs: [{name: n, type: int}]
                run:
                  kind: dag
                  operations:
                    - name: l3
                      component:
                        outputs: [{name: n, type: int}]
                        run: {kind: job, container: {image: busybox, command: [echo]}}
    - name: use
      params: {got: {ref: ops.l1, value: outputs.n}}
      component:
        inputs: [{name: got, type: int}]
        run: {kind: job, container: {image: busybox, command: [echo, "{{ got }}"]}}
"""


def test_a_dag_output_with_no_value_takes_the_one_inner_output_of_its_name():
    sim = Sim(compile_ok(UNBOUND), outputs=lambda s: {"n": "21"} if s.path.endswith("l3") else None)
    sim.run()
    assert sim.node("l1/l2").outputs == {"n": 21} and sim.node("l1").outputs == {"n": 21}
    use = next(s for s in sim.started if s.path == "use")
    assert use.params == {"got": 21} and sim.done.status == "succeeded"


def test_a_dag_output_nothing_or_several_ops_could_produce_is_warned_about():
    none = textwrap.dedent(UNBOUND).replace("outputs: [{name: n, type: int}]\n        run:\n          kind: dag",
                                            "outputs: [{name: m, type: int}]\n        run:\n          kind: dag")
    result = compile_text(none, source="t.yaml")
    assert [w.message for w in result.warnings if "never produced" in w.message] == [
        "output `m` of the DAG has no value and no op of the DAG declares an output of that name, so it is never "
        'produced: bind it with `value: "{{ ops.OP.outputs.m }}"`']
    several = textwrap.dedent(UNBOUND).replace(
        "                    - name: l3\n",
        "                    - name: l0\n                      component:\n"
        "                        outputs: [{name: n, type: int}]\n"
        "                        run: {kind: job, container: {image: busybox, command: [echo]}}\n"
        "                    - name: l3\n")
    result = compile_text(several, source="t.yaml")
    assert any("ops `l0`, `l3` all declare it" in w.message for w in result.warnings)
