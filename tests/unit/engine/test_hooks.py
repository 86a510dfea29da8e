"""Hooks (POLYFLOW §8.3) in the engine: which fire, with what params, as what command."""

from __future__ import annotations

import textwrap

import pytest

from flowd.engine import Engine, OpStatus, PipelineDone, StartHook, StartOp, Submit
from flowd.spec import compile_text

NOTIFY = """
kind: component
name: notify
inputs: [{name: status, type: str}, {name: who, type: str, value: team}]
run: {kind: job, container: {image: busybox, command: [echo, "{{ name }} {{ status }} {{ who }}"]}}
"""


@pytest.fixture
def hub(tmp_path):
    (tmp_path / "notify.yaml").write_text(NOTIFY)
    return str(tmp_path)


def pipeline(hub: str, hooks_a: str, *, top: str = "", b: bool = False):
    text = f"""
    version: 1.1
    kind: component
    name: p
    {top}
    run:
      kind: dag
      operations:
        - name: a
          hooks: {hooks_a}
          component:
            inputs: [{{name: lr, type: float, value: 0.1}}]
            outputs: [{{name: loss, type: float}}]
            run: {{kind: job, container: {{image: x, command: [train]}}}}
    """
    if b:
        text += """
        - name: b
          dependencies: [a]
          component: {run: {kind: job, container: {image: x, command: [b]}}}
    """
    result = compile_text(textwrap.dedent(text), source="p.yaml", hub=hub)
    assert result.valid, [e.message for e in result.errors]
    return result.op


def hooks_of(commands):
    return [c for c in commands if isinstance(c, StartHook)]


def finish_a(engine, status="succeeded", outputs=None):
    return engine.handle(OpStatus(run_id="r", path="a", attempt=1, status=status, time=10.0,
                                  outputs=outputs if outputs is not None else {"loss": 0.25}))


def test_a_succeeded_op_fires_matching_hooks_with_the_default_params(hub):
    engine = Engine()
    engine.handle(Submit(run_id="r", pipeline=pipeline(hub, "[{hubRef: notify, trigger: succeeded}, "
                                                            "{hubRef: notify, trigger: failed}, {hubRef: notify}]"),
                         time=1.0))
    commands = finish_a(engine)
    started = hooks_of(commands)
    assert [(h.source.index, h.status) for h in started] == [(0, "created"), (2, "created")]
    h = started[0]
    assert (h.source.run_id, h.source.path, h.source.attempt, h.source.status) == ("r", "a", 1, "succeeded")
    params = {k: p.value for k, p in h.pipeline.params.items()}
    assert params["name"] == "a" and params["status"] == "succeeded" and params["kind"] == "job"
    assert params["runtime"] == "job" and params["outputs"] == {"loss": 0.25} and params["inputs"] == {"lr": 0.1}
    assert params["condition"]["type"] == "succeeded" and params["duration"] is not None
    # declared by the hook's component: a real input; the others are context-only
    assert h.pipeline.params["status"].context_only is None and h.pipeline.params["outputs"].context_only
    # the pipeline ends as if the hooks did not exist
    done = [c for c in commands if isinstance(c, PipelineDone)]
    assert done and done[0].status == "succeeded"
    assert [x["status"] for x in engine.view("r").hooks] == ["created", "created"]


def test_a_hook_run_is_a_separate_run_linked_to_its_source(hub):
    engine = Engine()
    engine.handle(Submit(run_id="r", pipeline=pipeline(hub, "[{hubRef: notify}]"), time=1.0))
    h = hooks_of(finish_a(engine, "failed", outputs={}))[0]
    commands = engine.handle(Submit(run_id=h.hook_run_id, pipeline=h.pipeline, time=11.0, hook_of=h.source))
    start = next(c for c in commands if isinstance(c, StartOp))
    assert start.run_id == h.hook_run_id and start.run["container"]["command"] == ["echo", "a failed team"]
    assert engine.view(h.hook_run_id).hook_of["run_id"] == "r"
    # a failing hook run does not touch the source run
    engine.handle(OpStatus(run_id=h.hook_run_id, path="", attempt=1, status="failed", time=12.0))
    assert engine.view(h.hook_run_id).status == "failed" and engine.view("r").status == "failed"
    # the same submission again (redelivered) starts nothing
    assert engine.handle(Submit(run_id=h.hook_run_id, pipeline=h.pipeline, time=13.0, hook_of=h.source)) == []


def test_hook_run_ids_are_derived_so_a_replay_asks_for_the_same_runs(hub):
    op = pipeline(hub, "[{hubRef: notify}, {hubRef: notify, params: {who: {value: ml}}}]")
    first, second = Engine(), Engine()
    for engine in (first, second):
        engine.handle(Submit(run_id="r", pipeline=op, time=1.0))
    snap = Engine.restore(second.snapshot())
    ids = [h.hook_run_id for h in hooks_of(finish_a(first))]
    assert ids == [h.hook_run_id for h in hooks_of(finish_a(snap))]
    assert len(set(ids)) == 2
    # a redelivered report of the finished attempt fires nothing again
    assert hooks_of(finish_a(first)) == []


def test_conditions_decide_with_the_ops_outputs(hub):
    engine = Engine()
    engine.handle(Submit(run_id="r", pipeline=pipeline(
        hub, '[{hubRef: notify, conditions: "{{ outputs.loss < 0.1 }}"}, '
             '{hubRef: notify, conditions: "{{ outputs.loss < 1 }}"}, '
             '{hubRef: notify, conditions: "{{ \'maybe\' }}"}]'), time=1.0))
    started = hooks_of(finish_a(engine))
    assert [h.status for h in started] == ["skipped", "created", "failed"]
    assert started[0].pipeline is None and "evaluated to false" in started[0].message
    assert "maybe" in started[2].message


def test_disable_defaults_passes_only_the_hooks_params(hub):
    engine = Engine()
    engine.handle(Submit(run_id="r", pipeline=pipeline(
        hub, "[{hubRef: notify, disableDefaults: true, params: {status: {value: custom}}}]"), time=1.0))
    h = hooks_of(finish_a(engine))[0]
    assert {k: p.value for k, p in h.pipeline.params.items()} == {"status": "custom"}


def test_an_unresolved_hook_fails_when_it_fires_and_starts_nothing(hub):
    # a file compiled without a hub: the hook keeps why it cannot run
    text = textwrap.dedent("""
    kind: component
    name: p
    run:
      kind: dag
      operations:
        - name: a
          hooks: [{hubRef: notify}]
          component: {run: {kind: job, container: {image: x, command: [a]}}}
    """)
    op = compile_text(text, source="p.yaml").op
    engine = Engine()
    engine.handle(Submit(run_id="r", pipeline=op, time=1.0))
    h = hooks_of(finish_a(engine))[0]
    assert h.status == "failed" and h.pipeline is None and "hub" in h.message


def test_pipeline_hooks_fire_when_the_dag_ends_and_skipped_ops_fire_theirs(hub):
    engine = Engine()
    op = pipeline(hub, "[{hubRef: notify, trigger: upstream_failed}]", top="hooks: [{hubRef: notify, trigger: failed}]",
                  b=True)
    # a fails, so b ends upstream_failed (a's hook is for upstream_failed: it does not fire) and
    # the DAG fails: its own hook fires
    engine.handle(Submit(run_id="r", pipeline=op, time=1.0))
    started = hooks_of(finish_a(engine, "failed", outputs={}))
    assert [(h.source.path, h.source.status) for h in started] == [("", "failed")]


def test_matrix_children_carry_no_hooks_the_matrix_fires_once(hub):
    text = textwrap.dedent("""
    kind: component
    name: p
    run:
      kind: dag
      operations:
        - name: m
          hooks: [{hubRef: notify}]
          matrix: {kind: mapping, values: [{x: 1}, {x: 2}]}
          component:
            inputs: [{name: x, type: int}]
            run: {kind: job, container: {image: x, command: [a]}}
    """)
    op = compile_text(text, source="p.yaml", hub=hub).op
    engine = Engine()
    engine.handle(Submit(run_id="r", pipeline=op, time=1.0))
    first = engine.handle(OpStatus(run_id="r", path="m[0]", attempt=1, status="succeeded", time=2.0))
    assert hooks_of(first) == []
    last = engine.handle(OpStatus(run_id="r", path="m[1]", attempt=1, status="succeeded", time=3.0))
    assert [h.source.path for h in hooks_of(last)] == ["m"]
