"""Nothing accepted silently: every field flowd parses but does not act on is warned about, and
`presets` are applied from a presets folder."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from flowd.spec import compile_text
from flowd.spec.unsupported import (
    IGNORED_FIELDS,
)

JOB = "{kind: job, container: {image: busybox, command: [echo]}}"


def warnings_of(text: str, **kw) -> list[str]:
    result = compile_text(textwrap.dedent(text), source="t.yaml", **kw)
    assert result.valid, [e.message for e in result.errors]
    return [f"{w.location}: {w.message}" for w in result.warnings]


# a value for each field of the list; a field that lands leaves the list (and this table)
SAMPLES = {"plugins": "{docker: true}", "build": "{hubRef: kaniko}", "queue": "gpu", "cost": "2.5", "mount": "[./data]"}


def test_every_ignored_field_has_a_sample():
    assert set(SAMPLES) == set(IGNORED_FIELDS)


@pytest.mark.parametrize("field", sorted(IGNORED_FIELDS))
def test_each_ignored_field_is_named_in_a_warning(field, tmp_path):
    value = SAMPLES[field]
    (tmp_path / "slack.yaml").write_text(f"kind: component\nname: slack\nrun: {JOB}\n")
    found = warnings_of(f"""
    kind: component
    name: p
    run:
      kind: dag
      operations:
        - name: a
          {field}: {value}
          component: {{run: {JOB}}}
    """, hub=str(tmp_path))
    assert any(f"`{field}` is accepted but not acted on" in w and f"operations[0].{field}" in w for w in found), found


def test_tuner_kinds_and_stopping_policies_run_so_they_are_not_warned_about():
    found = warnings_of(f"""
    kind: component
    name: p
    run:
      kind: dag
      earlyStopping:
        - {{kind: metric_early_stopping, metric: loss, value: 0.1, optimization: minimize,
           policy: {{kind: truncation, percent: 50, evaluationInterval: 1}}}}
      operations:
        - name: b
          matrix:
            kind: bayes
            numInitialRuns: 2
            maxIterations: 3
            metric: {{name: loss, optimization: minimize}}
            params: {{lr: {{kind: uniform, value: [0, 1]}}}}
          component:
            inputs: [{{name: lr, type: float}}]
            run: {JOB}
    """)
    assert not any("bayes" in w or "truncation" in w or "not acted on" in w for w in found), found


PRESETS = f"""
kind: component
name: p
run:
  kind: dag
  operations:
    - name: a
      presets: [slow, retry]
      component: {{run: {JOB}}}
    - name: b
      presets: [retry]
      termination: {{maxRetries: 0}}
      component: {{run: {JOB}}}
"""


def presets_dir(tmp_path: Path) -> str:
    (tmp_path / "retry.yaml").write_text("isPreset: true\ntermination: {maxRetries: 2}\n")
    (tmp_path / "slow.yaml").write_text("isPreset: true\npatchStrategy: post_merge\ntermination: {timeout: 60, maxRetries: 5}\n")
    return str(tmp_path)


def test_presets_are_applied_in_order_with_their_patch_strategy(tmp_path):
    result = compile_text(textwrap.dedent(PRESETS), source="t.yaml", presets=presets_dir(tmp_path))
    assert result.valid and not result.warnings, [w.message for w in result.warnings]
    a, b = result.op.component.dag.ops
    # slow (post_merge) sets 5; retry (pre_merge) does not override what is already set
    assert (a.termination.max_retries, a.termination.timeout) == (5, 60)
    assert b.termination.max_retries == 0  # the op's own value wins over a pre_merge preset


def test_presets_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWD_PRESETS", presets_dir(tmp_path))
    result = compile_text(textwrap.dedent(PRESETS).replace("[slow, retry]", "[retry]"), source="t.yaml")
    assert result.op.component.dag.ops[0].termination.max_retries == 2


def test_a_missing_preset_is_an_error_and_no_folder_a_warning(tmp_path, monkeypatch):
    monkeypatch.delenv("FLOWD_PRESETS", raising=False)
    found = warnings_of(PRESETS)
    assert any("are not applied: no presets folder" in w for w in found)
    result = compile_text(textwrap.dedent(PRESETS).replace("[retry]", "[nope]"), source="t.yaml",
                          presets=presets_dir(tmp_path))
    assert not result.valid and "preset `nope` could not be resolved" in result.errors[0].message


def test_a_hooks_hub_ref_is_resolved_by_check(tmp_path):
    (tmp_path / "notify.yaml").write_text(f"kind: component\nname: notify\nrun: {JOB}\n")
    text = f"""
    kind: component
    name: p
    run:
      kind: dag
      operations:
        - name: a
          hooks: [{{hubRef: notify, trigger: succeeded}}, {{hubRef: no-such-component}}]
          component: {{run: {JOB}}}
    """
    result = compile_text(textwrap.dedent(text), source="t.yaml", hub=str(tmp_path))
    assert [e.location for e in result.errors] == ["run.operations[0].hooks[1].hubRef"]
    assert "no-such-component" in result.errors[0].message


def test_joins_and_cache_are_honoured_so_they_are_not_warned_about():
    found = warnings_of(f"""
    kind: component
    name: p
    run:
      kind: dag
      operations:
        - name: a
          cache: {{disable: false, ttl: 60}}
          component: {{run: {JOB}}}
        - name: b
          dependencies: [a]
          joins: [{{query: "name: a", params: {{xs: {{value: outputs.loss}}}}}}]
          component: {{run: {JOB}}}
    """)
    assert found == []


def test_a_hooks_params_are_typed_against_its_component(tmp_path):
    (tmp_path / "notify.yaml").write_text(
        "kind: component\nname: notify\ninputs: [{name: status, type: str}, {name: n, type: int, value: 1}]\n"
        f"run: {JOB}\n")
    text = f"""
    kind: component
    name: p
    run:
      kind: dag
      operations:
        - name: a
          hooks:
            - {{hubRef: notify, params: {{n: {{value: many}}}}}}
            - {{hubRef: notify}}
            - {{hubRef: notify, disableDefaults: true}}
          component: {{run: {JOB}}}
    """
    result = compile_text(textwrap.dedent(text), source="t.yaml", hub=str(tmp_path))
    # `status` comes from the finished run (a default hook param) unless disableDefaults
    assert [e.location for e in result.errors] == ["run.operations[0].hooks[0].params.n",
                                                   "run.operations[0].hooks[2].params"]
    assert "hook `notify`" in result.errors[0].message
