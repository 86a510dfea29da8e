"""The public API and the compiled tree it produces (what the engine consumes)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

import flowd.spec as spec
from flowd.spec import compile_path, compile_text, load_text
from flowd.spec import compiled as c

ROOT = Path(__file__).resolve().parents[3]
HUB = ROOT / "examples" / "hub"


def test_public_names() -> None:
    assert set(spec.__all__) == {
        "CompileResult", "CoercionError", "Diagnostic", "YamlSyntaxError", "coerce", "coerce_value",
        "compile_path", "compile_text", "dump_text", "is_template", "load_text",
    }
    for name in spec.__all__:
        assert hasattr(spec, name)


def test_founding_example_tree() -> None:
    result = compile_path(ROOT / "examples" / "founding" / "pipeline.yaml", hub=str(HUB))
    assert result.valid and not result.warnings
    root = result.op
    assert root.name == "test-pipeline" and root.component.kind == "dag" and root.params == {}
    job1, exp = root.component.dag.ops
    assert job1.component.kind == "job" and job1.component.name == "job-template"
    assert job1.component.run["environment"] == {"nodeSelector": {"polyaxon": "experiments"},
                                                 "serviceAccountName": "my-service"}
    assert job1.component.run["container"]["image"] == "busybox:1.36"
    assert job1.params == {"input-bucket": c.ParamSpec(value="s3://bucket-with-data")}
    assert exp.upstream == ["job1"] and exp.params["lr"].value == 0.05
    assert [o.name for o in exp.component.outputs] == ["loss", "accuracy"]
    assert exp.component.source == "hubRef deep-wide-model"
    # the tree round-trips through msgspec (the engine may persist it)
    raw = msgspec.json.encode(root)
    assert msgspec.json.decode(raw, type=c.Op) == root


def test_submission_params_are_coerced_and_checked() -> None:
    path = HUB / "deep-wide-model.yaml"
    result = compile_path(path, params={"lr": "0.05"})
    assert result.valid
    assert result.op.name == "deep-wide-model" and result.op.params["lr"].value == 0.05
    bad = compile_path(path, params={"lr": "fast"})
    assert not bad.valid and bad.op is None
    assert bad.errors[0].location == "--param lr" and bad.errors[0].line is None
    missing = compile_path(path)
    assert "non optional inputs/outputs (`lr`)" in missing.errors[0].message


def test_operation_params_and_cli_params_merge() -> None:
    text = """
kind: operation
name: run-it
params: {a: 1, b: 2}
component:
  inputs: [{name: a, type: int}, {name: b, type: int}, {name: c, type: "List[int]", value: []}]
  run: {kind: job, container: {image: busybox}}
"""
    result = compile_text(text, params={"b": "5", "c": "[1, 2]"})
    assert result.valid, result.errors
    assert {k: p.value for k, p in result.op.params.items()} == {"a": 1, "b": 5, "c": [1, 2]}
    assert result.op.name == "run-it"


def test_nameless_root_takes_the_file_stem(tmp_path: Path) -> None:
    path = tmp_path / "my pipeline.yaml"
    path.write_text("run: {kind: job, container: {image: busybox}}\n")
    assert compile_path(path).op.name == "my-pipeline"
    assert compile_text("run: {kind: job, container: {image: busybox}}").op.name == "string"


def test_edges_events_and_trigger() -> None:
    text = """
kind: component
ops:
  - {name: a, component: {outputs: [{name: o, type: int}], run: {kind: job, container: {image: busybox}}}}
  - {name: b, component: {run: {kind: job, container: {image: busybox}}}}
  - name: c
    dependencies: [b]
    trigger: one_failed
    params:
      x: {ref: ops.a, value: outputs.o}
      y: "{{ ops.b.status }}"
    events: [{ref: ops.a, kinds: [run_status_running, run_status_failed, run_status_done]}]
    conditions: "{{ x > 1 }}"
    component:
      inputs: [{name: x, type: int}, {name: y, type: str}]
      run: {kind: job, container: {image: busybox}}
"""
    result = compile_text(text)
    assert result.valid, result.errors
    op = result.op.component.dag.ops[2]
    assert op.upstream == ["b", "a"]  # dependencies first, then refs, events, templates
    assert op.event_edges == {"a": ["running"]}
    assert op.trigger == "one_failed" and op.conditions == "{{ x > 1 }}"


def test_termination_and_cache_pass_down() -> None:
    text = """
kind: component
termination: {maxRetries: 3, timeout: 60, backoff: {base: 2, factor: 3}}
cache: {disable: true}
run:
  kind: dag
  operations:
    - {name: a, dagRef: t}
    - {name: b, dagRef: t, termination: {timeout: 5}, cache: {ttl: 10}}
  components:
    - {name: t, termination: {maxRetries: 1}, run: {kind: job, container: {image: busybox}}}
"""
    result = compile_text(text)
    assert result.valid, result.errors
    a, b = result.op.component.dag.ops
    assert a.termination == c.Termination(max_retries=1, timeout=60, backoff=c.Backoff(base=2, factor=3))
    assert b.termination.max_retries == 1 and b.termination.timeout == 5
    assert a.cache == {"disable": True} and b.cache == {"disable": True, "ttl": 10}
    assert result.op.termination.max_retries == 3


def test_nested_dag_is_compiled_with_deferred_errors() -> None:
    text = """
kind: component
ops:
  - name: inner
    component:
      ops:
        - {name: x, dependencies: [y], component: {run: {kind: job, container: {image: busybox}}}}
        - {name: y, dependencies: [x], component: {run: {kind: job, container: {image: busybox}}}}
"""
    result = compile_text(text)
    assert result.valid
    inner = result.op.component.dag.ops[0]
    assert inner.component.kind == "dag"
    assert inner.component.dag.errors == ["DAG is not acyclic: x -> y -> x"]
    assert [w.location for w in result.warnings] == ["ops[0].component.ops[0].dependencies"]


def test_matrix_compiled() -> None:
    text = """
kind: operation
matrix:
  kind: hyperband
  concurrency: "2"
  maxIterations: 81
  eta: 3
  resource: {name: steps, type: int}
  metric: {name: loss, optimization: minimize}
  params: {lr: {kind: loguniform, value: "0:1"}}
  earlyStopping: [{kind: failure_early_stopping, percent: 50}]
component: {inputs: [{name: lr, type: float}], run: {kind: job, container: {image: busybox}}}
"""
    result = compile_text(text)
    assert result.valid, result.errors
    mx = result.op.matrix
    assert mx.kind == "hyperband" and mx.concurrency == 2
    assert mx.params == {"lr": c.HpParam(kind="loguniform", value="0:1")}
    assert mx.extra == {"maxIterations": 81, "eta": 3, "resource": {"name": "steps", "type": "int"},
                        "metric": {"name": "loss", "optimization": "minimize"}}
    assert mx.early_stopping == [c.EarlyStopping(kind="failure_early_stopping", percent=50)]


def test_schedule_hooks_joins_are_carried() -> None:
    text = """
kind: operation
schedule: {kind: cron, cron: "0 2 * * *", maxRuns: 3}
hooks: [{hubRef: notify, trigger: failed}]
component: {run: {kind: job, container: {image: busybox}}}
"""
    op = compile_text(text).op
    assert op.schedule == {"kind": "cron", "cron": "0 2 * * *", "maxRuns": 3}
    # without a hub the hook cannot be compiled: it keeps why, and fails when it fires
    assert [(h.hub_ref, h.trigger, h.op) for h in op.hooks] == [("notify", "failed", None)]
    assert "no component hub is configured" in (op.hooks[0].error or "")


def test_dag_passdown_fields() -> None:
    text = """
kind: component
run:
  kind: dag
  concurrency: 2
  environment: {nodeSelector: {pool: a}}
  connections: [s3]
  volumes: [{name: v, emptyDir: {}}]
  earlyStopping: [{kind: metric_early_stopping, metric: loss, value: 0.1, optimization: minimize}]
  operations: [{name: a, run: {kind: job, container: {image: busybox}}}]
"""
    dag = compile_text(text).op.component.dag
    assert dag.concurrency == 2 and dag.environment == {"nodeSelector": {"pool": "a"}}
    assert dag.connections == ["s3"] and dag.volumes == [{"name": "v", "emptyDir": {}}]
    assert dag.early_stopping[0].metric == "loss" and dag.errors == []


def test_never_raises_on_garbage() -> None:
    for text in ["", "\x00", "[", "a: [", "- 1", "kind: 3", "{{", "run: !!python/object:os.system x",
                 "kind: component\nrun: {kind: dag, operations: [1, 2, null]}", ":::", "? a\n: b"]:
        result = compile_text(text)
        assert not result.valid and result.errors


def test_json_input_and_load_text() -> None:
    assert load_text('{"a": [1, 2]}') == {"a": [1, 2]}
    result = compile_text('{"kind": "component", "run": {"kind": "job", "container": {"image": "x"}}}')
    assert result.valid


def test_ops_shorthand_equals_run_dag() -> None:
    short = compile_text("kind: component\nname: p\nops: [{name: a, dagRef: t}]\n"
                         "components: [{name: t, run: {kind: job, container: {image: b}}}]\n")
    long = compile_text("kind: component\nname: p\nrun:\n  kind: dag\n  operations: [{name: a, dagRef: t}]\n"
                        "  components: [{name: t, run: {kind: job, container: {image: b}}}]\n")
    assert short.valid and short.op == long.op


@pytest.mark.parametrize("version", ["1", "1.1", "1.0"])
def test_versions_accepted_silently(version: str) -> None:
    result = compile_text(f"version: {version}\nrun: {{kind: job, container: {{image: b}}}}")
    assert result.valid and not result.warnings


def test_other_versions_warn() -> None:
    result = compile_text("version: 0.4\nrun: {kind: job, container: {image: b}}")
    assert result.valid
    assert result.warnings[0].location == "version" and "not supported" in result.warnings[0].message
