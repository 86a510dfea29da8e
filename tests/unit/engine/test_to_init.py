"""Params with ``toInit: true`` become init steps of the op (POLYFLOW §3.8)."""

from __future__ import annotations

import textwrap

from flowd.spec import compile_text
from tests.unit.engine.sim import Sim

PIPELINE = """
kind: component
name: to-init
run:
  kind: dag
  operations:
    - name: train
      params:
        repo: {value: {url: "https://example.com/acme/models.git", revision: v2}, toInit: true}
        data: {value: {dirs: [datasets/mnist]}, toInit: true}
        recipe: {value: {image: "python:3.11", run: ["pip install numpy"]}, toInit: true}
        shards: {value: /data/shards, toInit: true, connection: s3-data}
        conf: {value: "x", toInit: true, connection: settings}
        plain: {value: {url: "https://example.com/other.git"}}
      component:
        inputs:
          - {name: repo, type: git}
          - {name: data, type: artifacts}
          - {name: recipe, type: dockerfile}
          - {name: shards, type: path}
          - {name: conf, type: str}
          - {name: plain, type: git}
        run:
          kind: job
          init: [{file: {content: "hello", filename: greeting}}]
          container: {image: busybox, command: [ls]}
"""


def compile_ok(text: str):
    result = compile_text(textwrap.dedent(text), source="t.yaml")
    assert result.valid, [e.message for e in result.errors]
    return result.op


def test_each_to_init_param_becomes_a_step_after_the_ops_own():
    sim = Sim(compile_ok(PIPELINE))
    sim.run()
    start = next(s for s in sim.started if s.path == "train")
    assert start.run["init"] == [
        {"file": {"content": "hello", "filename": "greeting"}},
        {"git": {"url": "https://example.com/acme/models.git", "revision": "v2"}},
        {"artifacts": {"dirs": ["datasets/mnist"]}},
        {"dockerfile": {"image": "python:3.11", "run": ["pip install numpy"]}},
        {"paths": ["/data/shards"], "connection": "s3-data"},
        {"connection": "settings"},
    ]
    assert sim.status("train") == "succeeded"


def test_the_steps_are_derived_again_after_a_restore():
    sim = Sim(compile_ok(PIPELINE), hold={"train"})
    sim.run()
    held = next(s for s in sim.held if s.path == "train")
    derived = [c for c in sim.engine.in_flight(sim.run_id, skip=set()) if c.path == "train"]
    assert derived and derived[0].run == held.run


def test_a_to_init_param_that_cannot_be_a_step_fails_the_op_naming_it():
    text = PIPELINE.replace("conf: {value: \"x\", toInit: true, connection: settings}", "conf: {value: \"x\", toInit: true}")
    sim = Sim(compile_ok(text))
    sim.run()
    node = sim.node("train")
    assert node.status == "failed" and node.reason == "CompilationFailed"
    assert "param 'conf' has toInit but type `str` and no connection" in node.message
    assert "cannot be turned to an init container automatically" in node.message
    assert not [s for s in sim.started if s.path == "train"]
