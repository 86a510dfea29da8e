"""Joins (POLYFLOW §8.4) in the engine: selection over the runs the engine holds, sort, limit,
offset, missing values as null, binding into isList inputs and context params, lineage."""

from __future__ import annotations

import textwrap

from flowd.engine.messages import StatusChanged, Submit
from flowd.engine.resolve import op_uuid
from flowd.spec import compile_text
from flowd.spec.limits import Limits
from tests.unit.engine.sim import Sim

TUNE = """
kind: component
name: tune-and-reduce
inputs: [{name: top_k, type: int, value: 2}]
run:
  kind: dag
  operations:
    - name: tune
      matrix: {kind: grid, params: {lr: {kind: choice, value: [0.3, 0.1, 0.2, 0.4]}}}
      trigger: all_done
      component:
        inputs: [{name: lr, type: float}]
        outputs: [{name: loss, type: float, isOptional: true}]
        run: {kind: job, container: {image: busybox, command: [echo]}}
    - name: reduce
      dependencies: [tune]
      trigger: all_done
      params:
        tune_uuid: {ref: ops.tune, value: globals.uuid, contextOnly: true}
        k: {ref: dag, value: inputs.top_k, contextOnly: true}
      joins:
        - query: "pipeline: {{ tune_uuid }}, status: succeeded"
          sort: "%(sort)s"
          limit: "{{ k }}"
          offset: %(offset)s
          params:
            losses: {value: outputs.loss}
            lrs: {value: inputs.lr}
            names: {value: globals.name}
      component:
        inputs:
          - {name: losses, type: float, isList: true}
          - {name: lrs, type: float, isList: true}
        run: {kind: job, container: {image: busybox, command: [echo]}}
"""


def compile_ok(text: str):
    result = compile_text(textwrap.dedent(text), source="test.yaml")
    assert result.valid, [d.format() for d in result.errors]
    return result.op


def loss_of(start):
    # tune[2] reports no loss: a missing value
    lr = start.params.get("lr")
    return None if lr is None or lr == 0.2 else {"loss": round(abs(lr - 0.1), 3)}


def run(sort: str = "metrics.loss", offset: int = 0, **kw) -> Sim:
    sim = Sim(compile_ok(TUNE % {"sort": sort, "offset": offset}), outputs=loss_of, **kw)
    sim.run()
    return sim


def test_join_binds_sorted_limited_lists_into_list_inputs():
    sim = run()
    assert sim.status("reduce") == "succeeded"
    params = sim.node("reduce").params
    # sorted by ascending loss, the run without a loss last; limit k=2
    assert params["losses"] == [0.0, 0.2] and params["lrs"] == [0.1, 0.3]
    assert params["names"] == ["tune[1]", "tune[0]"]  # the children's globals.name


def test_missing_values_are_null_and_offset_moves_the_window():
    sim = run(sort="-inputs.lr", offset=1)
    # lrs descending: 0.4, 0.3, 0.2, 0.1 -> offset 1, limit 2 -> 0.3, 0.2 (0.2 reported no loss)
    params = sim.node("reduce").params
    assert params["lrs"] == [0.3, 0.2] and params["losses"] == [0.2, None]


def test_lineage_is_in_the_compiled_event_and_the_node():
    sim = run()
    compiled = [s for s in sim.statuses if isinstance(s, StatusChanged) and s.path == "reduce" and s.status == "compiled"]
    assert compiled and compiled[0].joined == ["run1/tune[1]", "run1/tune[0]"]
    assert sim.node("reduce").joined == ["run1/tune[1]", "run1/tune[0]"]
    assert sim.engine.view("run1").ops["reduce"].joined == [
        {"run_id": "run1", "op": "tune[1]", "uuid": op_uuid("run1", "tune[1]")},
        {"run_id": "run1", "op": "tune[0]", "uuid": op_uuid("run1", "tune[0]")},
    ]
    # the selection really is by the matrix's uuid: the children's pipeline
    assert op_uuid("run1", "tune") != op_uuid("run1", "")


def test_a_limit_over_the_cap_names_the_setting():
    sim = run(limits=Limits(max_join_runs=1))
    node = sim.node("reduce")
    assert node.status == "failed" and node.reason == "CompilationFailed"
    assert "join #1 of op 'reduce'" in node.message and "setting max_join_runs" in node.message


def test_an_unknown_field_fails_the_op_at_run_time():
    sim = run(sort="hub.name")
    node = sim.node("reduce")
    assert node.status == "failed" and "unknown field `hub.name`" in node.message


REDUCE_OTHER_RUNS = """
kind: component
name: reducer
run:
  kind: dag
  operations:
    - name: gather
      joins:
        - query: "name: train, status: succeeded"
          sort: "-created_at"
          params:
            seen: {value: outputs.loss}
            arts: {value: artifacts.model}
      component:
        inputs: [{name: arts, type: artifacts}]
        run: {kind: job, container: {image: busybox, command: [echo]}}
"""

TRAIN = """
kind: component
name: trainer
run:
  kind: dag
  operations:
    - name: train
      component:
        outputs: [{name: loss, type: float}, {name: model, type: artifacts}]
        run: {kind: job, container: {image: busybox, command: [echo]}}
"""


def test_a_join_sees_the_other_runs_the_engine_holds_and_merges_artifacts():
    outputs = {"loss": 0.5, "model": {"files": ["model.bin"], "dirs": ["ckpt"]}}
    sim = Sim(compile_ok(TRAIN), outputs=lambda start: outputs, run_id="first")
    sim.run()
    assert sim.status("") == "succeeded"
    sim.run_id = "second"
    sim.now += 10
    sim.feed(Submit("second", compile_ok(REDUCE_OTHER_RUNS), sim.now))
    sim.run()
    node = sim.engine.runs["second"].nodes["gather"]
    assert node.status == "succeeded", node.message
    assert node.params["seen"] == [0.5]  # context param: a list, unchanged
    uid = op_uuid("first", "train")
    assert node.params["arts"] == {"files": [f"{uid}/model.bin"], "dirs": [f"{uid}/ckpt"]}
    assert node.joined == ["first/train"]
