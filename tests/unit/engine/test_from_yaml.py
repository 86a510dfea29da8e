"""The spec layer and the engine together: Polyaxonfiles compiled, then run by the Sim executor."""

from __future__ import annotations

import textwrap

from flowd.spec import compile_text
from tests.unit.engine.sim import Sim


def compile_ok(text: str, params=None):
    result = compile_text(textwrap.dedent(text), source="test.yaml", params=params)
    assert result.valid, [d.format() for d in result.errors]
    return result.op


FAN_OUT = """
version: 1.1
kind: component
name: fan-out-fan-in
inputs:
  - {name: dataset, type: s3, value: "s3://acme-data/raw/2024"}
  - {name: parallel, type: int, value: 1}
run:
  kind: dag
  concurrency: "{{ parallel }}"
  operations:
    - name: prepare
      params:
        src: {ref: dag, value: inputs.dataset}
      component:
        inputs: [{name: src, type: s3}]
        outputs: [{name: clean_path, type: path}]
        run:
          kind: job
          container: {image: "busybox:1.36", command: [sh, -c], args: ["echo cleaning {{ src }}"]}
    - name: train-small
      dagRef: trainer
      params:
        data: {ref: ops.prepare, value: outputs.clean_path}
        width: 64
    - name: train-large
      dagRef: trainer
      params:
        data: {ref: ops.prepare, value: outputs.clean_path}
        width: 512
    - name: pick-best
      dependencies: [train-small, train-large]
      params:
        loss_small: {ref: ops.train-small, value: outputs.loss}
        loss_large: {ref: ops.train-large, value: outputs.loss}
      component:
        inputs:
          - {name: loss_small, type: float}
          - {name: loss_large, type: float}
        run:
          kind: job
          container: {image: "busybox:1.36", command: [sh, -c], args: ["echo {{ loss_small }} {{ loss_large }}"]}
  components:
    - name: trainer
      inputs:
        - {name: data, type: path}
        - {name: width, type: int}
      outputs:
        - {name: loss, type: float}
      termination: {maxRetries: "{{ 1 if width > 100 else 0 }}"}
      run:
        kind: job
        container: {image: "busybox:1.36", command: [sh, -c], args: ["echo train {{ data }} {{ width }}"]}
"""


def outputs_of(start):
    if start.path == "prepare":
        return {"clean_path": "/data/clean"}
    if start.path.startswith("train"):
        return {"loss": 1.0 / start.params["width"]}
    return None


def test_example_9_1_runs_with_templated_concurrency_and_retries():
    sim = Sim(compile_ok(FAN_OUT), outputs=outputs_of, hold={"train-small", "train-large"})
    sim.run()
    # concurrency "{{ parallel }}" = 1: one trainer at a time
    assert [s.path for s in sim.held] == ["train-small"]
    held = sim.held.pop(0)
    sim.pending.append(held)
    sim.hold.clear()
    sim.run()
    sim.pending.extend(sim.held)
    sim.run()
    best = next(s for s in sim.started if s.path == "pick-best")
    assert best.params == {"loss_small": 1 / 64, "loss_large": 1 / 512}
    assert best.run["container"]["args"] == [f"echo {1/64} {1/512}"]
    assert sim.done.status == "succeeded"
    assert [s.termination.max_retries for s in sim.started if s.path.startswith("train")] == [0, 1]


def test_example_9_1_retries_follow_the_rendered_max_retries():
    sim = Sim(compile_ok(FAN_OUT, params={"parallel": 2}), outputs=outputs_of,
              script={"train-small": ["fail"], "train-large": ["fail", "ok"]})
    sim.run()
    assert sim.node("train-small").attempt == 1 and sim.status("train-small") == "failed"
    assert sim.node("train-large").attempt == 2 and sim.status("train-large") == "succeeded"
    assert sim.status("pick-best") == "upstream_failed"
    assert sim.done.status == "failed"


def test_bad_templated_concurrency_fails_the_pipeline_with_a_message():
    op = compile_ok(FAN_OUT, params={"parallel": 0})
    sim = Sim(op)
    assert sim.done.status == "failed"
    assert "concurrency must be greater than 0" in sim.node("").message


def test_cross_op_templates_create_edges_and_resolve():
    op = compile_ok("""
    kind: component
    name: t
    run:
      kind: dag
      operations:
        - name: count
          component:
            outputs: [{name: rows, type: int}]
            run: {kind: job, container: {image: busybox, command: [sh, -c, "echo"]}}
        - name: report
          params:
            total: {value: "{{ ops.count.outputs.rows * 10 }}"}
          component:
            inputs: [{name: total, type: int}]
            run: {kind: job, container: {image: busybox, command: [echo, "{{ total }}"]}}
    """)
    sim = Sim(op, outputs=lambda s: {"rows": 4} if s.path == "count" else None)
    assert [s.path for s in sim.started] == ["count"]  # `report` waits: the template is an edge
    sim.run()
    report = next(s for s in sim.started if s.path == "report")
    assert report.params == {"total": 40}
    assert report.run["container"]["command"] == ["echo", "40"]
