"""Regression tests for the wrong results of issue 11: each pipeline here used to run to a
wrong outcome (a bypassed approval gate, a dict method instead of an output, a matrix started
before its values existed, a trigger blind to its params, a blank for a misspelt name, a run
waiting forever on a service)."""

from __future__ import annotations

import textwrap

import pytest

from flowd.engine.messages import Approve
from flowd.spec import compile_text
from tests.unit.engine.sim import Sim


def compile_ok(text: str, params=None):
    result = compile_text(textwrap.dedent(text), source="test.yaml", params=params)
    assert result.valid, [d.format() for d in result.errors]
    return result.op


def check(text: str):
    return compile_text(textwrap.dedent(text), source="test.yaml")


JOB = "{kind: job, container: {image: busybox, command: [echo, hi]}}"

# ------------------------------------------------------------------------------ approval


APPROVAL = f"""
kind: component
name: gate
inputs: [{{name: ok, type: bool, value: false, isOptional: true}}]
run:
  kind: dag
  operations:
    - name: literal
      isApproved: "{{{{ false }}}}"
      component: {{run: {JOB}}}
    - name: from-dag-input
      isApproved: "{{{{ dag.inputs.ok }}}}"
      component: {{run: {JOB}}}
    - name: from-param
      isApproved: "{{{{ approve }}}}"
      params: {{approve: {{value: "no"}}}}
      component: {{inputs: [{{name: approve, type: str}}], run: {JOB}}}
    - name: rendered-true
      isApproved: "{{{{ 1 == 1 }}}}"
      component: {{run: {JOB}}}
"""


def test_a_templated_is_approved_never_bypasses_the_gate():
    sim = Sim(compile_ok(APPROVAL))
    sim.run()
    assert [s.path for s in sim.started] == ["rendered-true"]
    for path in ("literal", "from-dag-input", "from-param"):
        assert (sim.status(path), sim.node(path).reason) == ("compiled", "PendingApproval"), path
    sim.feed(Approve(sim.run_id, "from-param", sim.now))
    sim.run()
    assert "from-param" in [s.path for s in sim.started]
    assert sim.status("literal") == "compiled"


def test_a_templated_is_approved_rendering_true_from_a_dag_input_runs():
    sim = Sim(compile_ok(APPROVAL, params={"ok": True}))
    sim.run()
    assert "from-dag-input" in [s.path for s in sim.started]
    assert "literal" not in [s.path for s in sim.started]


def test_an_is_approved_that_renders_no_truth_word_fails_the_op():
    sim = Sim(compile_ok(f"""
    kind: component
    name: gate
    run:
      kind: dag
      operations:
        - name: maybe
          isApproved: "{{{{ 'perhaps' }}}}"
          component: {{run: {JOB}}}
    """))
    sim.run()
    assert sim.status("maybe") == "failed" and "isApproved" in sim.node("maybe").message
    assert sim.started == []


# ------------------------------------------------------------------ items before attributes


DICT_NAMES = """
kind: component
name: names
run:
  kind: dag
  operations:
    - name: produce
      component:
        outputs: [{name: items, type: int}, {name: values, type: int}, {name: keys, type: int}]
        run: {kind: job, container: {image: busybox, command: [echo]}}
    - name: consume
      params:
        a: {ref: ops.produce, value: outputs.values}
        b: "{{ ops.produce.outputs.items }}"
        c: "{{ ops.produce.outputs['keys'] + ops.produce.outputs.keys }}"
      component:
        inputs: [{name: a, type: int}, {name: b, type: int}, {name: c, type: int}]
        run: {kind: job, container: {image: busybox, command: [echo, "{{ a }} {{ params.values if false else b }}"]}}
"""


def test_outputs_named_like_dict_methods_are_the_outputs():
    sim = Sim(compile_ok(DICT_NAMES), outputs=lambda s: {"items": 1, "values": 2, "keys": 3} if s.path == "produce" else None)
    sim.run()
    consume = next(s for s in sim.started if s.path == "consume")
    assert consume.params == {"a": 2, "b": 1, "c": 6}
    assert consume.run["container"]["command"] == ["echo", "2 1"]
    assert sim.done.status == "succeeded"


# ------------------------------------------------------------- a matrix over another op's outputs


MAPPING_OVER_OUTPUTS = """
kind: component
name: shards
run:
  kind: dag
  operations:
    - name: lister
      component:
        outputs: [{name: shards, type: list}]
        run: {kind: job, container: {image: busybox, command: [echo]}}
    - name: work
      matrix: {kind: mapping, values: "{{ ops.lister.outputs.shards }}"}
      component:
        inputs: [{name: s, type: str}]
        run: {kind: job, container: {image: busybox, command: [echo, "{{ s }}"]}}
"""


def test_a_mapping_over_an_ops_outputs_is_an_edge_and_waits_for_it():
    op = compile_ok(MAPPING_OVER_OUTPUTS)
    assert op.component.dag.ops[1].upstream == ["lister"]
    sim = Sim(op, outputs=lambda s: {"shards": [{"s": "a"}, {"s": "b"}]} if s.path == "lister" else None)
    assert [s.path for s in sim.started] == ["lister"]  # the matrix did not start before lister
    sim.run()
    assert [s.path for s in sim.started] == ["lister", "work[0]", "work[1]"]
    assert [s.run["container"]["command"] for s in sim.started[1:]] == [["echo", "a"], ["echo", "b"]]


def test_check_reports_a_mapping_over_an_unknown_op_or_output():
    result = check(MAPPING_OVER_OUTPUTS.replace("outputs.shards", "outputs.shard"))
    assert not result.valid and "declares no output `shard`" in result.errors[0].message
    result = check(MAPPING_OVER_OUTPUTS.replace("ops.lister.outputs", "ops.listr.outputs"))
    assert not result.valid and "`listr`" in result.errors[0].message


# --------------------------------------------------------------------- trigger with own params


def test_a_templated_trigger_sees_the_ops_own_params():
    sim = Sim(compile_ok(f"""
    kind: component
    name: trig
    run:
      kind: dag
      operations:
        - name: boom
          component: {{run: {JOB}}}
        - name: cleanup
          dependencies: [boom]
          trigger: "{{{{ pol }}}}"
          params: {{pol: {{value: all_failed}}}}
          component: {{inputs: [{{name: pol, type: str}}], run: {JOB}}}
    """), script={"boom": ["fail"]})
    sim.run()
    assert sim.status("cleanup") == "succeeded"


# ------------------------------------------------------------------------- strict undefined


TYPO = """
kind: component
name: typo
run:
  kind: dag
  operations:
    - name: train
      params: {lr: 0.1}
      component:
        inputs: [{name: lr, type: float}]
        run: {kind: job, container: {image: busybox, command: [sh, -c], args: ["echo train {{ learning_rate }}"]}}
"""


def test_an_undefined_name_fails_the_op_naming_the_template_and_the_op():
    sim = Sim(compile_ok(TYPO))
    sim.run()
    assert sim.started == []
    message = sim.node("train").message
    assert sim.status("train") == "failed"
    assert "'learning_rate' is undefined" in message and "echo train {{ learning_rate }}" in message
    assert "op 'train'" in message


def test_check_warns_about_names_it_can_tell_are_undefined():
    result = check(TYPO)
    assert result.valid  # Polyaxon's verdict; the run fails, and check says so
    [warning] = [w for w in result.warnings if "learning_rate" in w.message]
    assert "rendering it will fail the op" in warning.message and warning.location.endswith("args[0]")


@pytest.mark.parametrize("template, expected", [
    ("{{ lr | no_such_filter }}", "No filter named 'no_such_filter'"),
    ("{{ lr ", "unexpected end of template"),
    ("{% if lr %}x", "Unexpected end of template"),
])
def test_check_reports_template_syntax_errors_and_unknown_filters(template, expected):
    result = check(TYPO.replace("echo train {{ learning_rate }}", template))
    assert not result.valid
    assert any(expected.lower() in e.message.lower() for e in result.errors), [e.message for e in result.errors]


def test_defined_tests_and_defaults_still_work_under_strict_undefined():
    sim = Sim(compile_ok(TYPO.replace("echo train {{ learning_rate }}",
                                      "{{ learning_rate | default(lr) }} {{ 'x' if foo is defined else 'y' }}")))
    sim.run()
    assert sim.started[0].run["container"]["args"] == ["0.1 y"]


# ---------------------------------------------------------------------- waiting on a service


SERVICE_DEP = f"""
kind: component
name: svc
run:
  kind: dag
  operations:
    - name: web
      component: {{run: {{kind: service, container: {{image: busybox, command: [sleep, "1000"]}}}}}}
    - name: prep
      component: {{run: {JOB}}}
    - name: client
      dependencies: [web, prep]
      component: {{run: {JOB}}}
    - name: after
      dependencies: [client]
      component: {{run: {JOB}}}
"""


def test_check_points_a_dependency_on_a_service_at_an_event_edge():
    result = check(SERVICE_DEP)
    [warning] = [w for w in result.warnings if "service" in w.message]
    assert "events: [{ref: ops.web, kinds: [run_status_running]}]" in warning.message


def test_a_dependency_on_a_service_ends_the_run_with_what_it_waits_for():
    sim = Sim(compile_ok(SERVICE_DEP), hold={"web"})
    sim.run()
    # prep ran; then nothing but the service could move: client fails with the advice
    assert sim.status("prep") == "succeeded"
    assert sim.status("client") == "failed" and sim.node("client").reason == "WaitsForService"
    assert "waits for service 'web'" in sim.node("client").message
    assert sim.status("after") == "upstream_failed"
    assert [s.path for s in sim.stops] == ["web"]  # only the service is left: stopped


def test_an_op_held_for_approval_next_to_a_service_is_not_declared_stuck():
    text = SERVICE_DEP.replace("    - name: prep\n", "    - name: prep\n      isApproved: false\n")
    sim = Sim(compile_ok(text), hold={"web"})
    sim.run()
    assert sim.status("client") == "created" and sim.done is None
    assert sim.engine.waiting_for(sim.run_id)["prep"].startswith("approval")


def test_a_matrix_or_nested_dag_held_for_approval_says_so_when_the_run_stalls():
    text = """
    kind: component
    name: held
    run:
      kind: dag
      operations:
        - name: sweep
          isApproved: false
          matrix: {kind: mapping, values: [{x: 1}, {x: 2}]}
          component: {inputs: [{name: x, type: int}], run: {kind: job, container: {image: busybox, command: [echo]}}}
        - name: sub
          isApproved: false
          component:
            run:
              kind: dag
              operations:
                - {name: inner, component: {run: {kind: job, container: {image: busybox, command: [echo]}}}}
    """
    sim = Sim(compile_ok(text))
    sim.run()
    assert sim.started == [] and sim.done is None
    waits = sim.engine.waiting_for(sim.run_id)
    assert waits == {"sweep": "approval (flowd approve / --approve sweep)", "sub": "approval (flowd approve / --approve sub)"}
