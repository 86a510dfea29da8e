"""Limits on what a Polyaxonfile can make the compiler build (docs/limits.md): each limit is hit,
the error names the place, the measured size and the setting, and the refusal happens before
the work (asserted on what was built, never on time)."""

from __future__ import annotations

import textwrap
import tracemalloc
from pathlib import Path

import pytest

from flowd.spec import compile_path, compile_text
from flowd.spec.expansion import Counter
from flowd.spec.limits import Limits, limits_from, parse_size
from flowd.spec.yamlio import YamlLimitError, YamlSyntaxError, load_text


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """The "billion laughs": each level is ``width`` aliases of the level below."""
    lines = ['a0: &a0 ["lol"' + ', "lol"' * (width - 1) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


GRID = """
version: 1.1
kind: component
name: big-grid
run:
  kind: dag
  operations:
    - name: sweep
      matrix:
        kind: grid
        params:
          a: {kind: range, value: [0, 1000, 1]}
          b: {kind: range, value: "0:1000:1"}
          c: {kind: range, value: {start: 0, stop: 1000, step: 1}}
      component:
        run: {kind: job, container: {image: busybox, command: ["true"]}}
"""


def errors(text: str, limits: Limits | None = None, **kw) -> list[str]:
    result = compile_text(textwrap.dedent(text), source="t.yaml", limits=limits, **kw)
    return [d.format() for d in result.errors]


def peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# -- YAML ---------------------------------------------------------------------------------------


def test_alias_bomb_is_refused_while_reading_with_little_memory() -> None:
    text = alias_bomb()
    with pytest.raises(YamlLimitError) as info:
        load_text(text, Limits())
    assert info.value.error.setting == "max_yaml_expanded_bytes"
    # refused at the 7th anchor (9^7 laughs), the last two lines were never read
    assert info.value.line == 7
    assert "the limit is 16,777,216 (setting max_yaml_expanded_bytes)" in info.value.message
    result = []
    peak = peak_bytes(lambda: result.append(compile_text(text, source="bomb.yaml")))
    assert peak < 5_000_000, peak  # a handful of lists; expanded it would be gigabytes
    [err] = result[0].errors
    assert (err.path, err.line, err.column) == ("bomb.yaml", 7, 30)
    assert err.message.startswith("with its aliases written out, the YAML document is at least ")


def test_alias_count_is_limited() -> None:
    text = "x: &x 1\ny: [" + ", ".join(["*x"] * 101) + "]\n"
    with pytest.raises(YamlLimitError, match=r"uses at least 101 aliases; the limit is 100 \(setting max_yaml_aliases\)"):
        load_text(text, Limits(max_yaml_aliases=100))
    assert load_text(text, Limits(max_yaml_aliases=101))["y"] == [1] * 101


def test_expanded_size_counts_each_alias_as_a_full_copy() -> None:
    text = "x: &x '" + "a" * 1000 + "'\ny: [*x, *x, *x]\n"
    with pytest.raises(YamlLimitError, match="max_yaml_expanded_bytes"):
        load_text(text, Limits(max_yaml_expanded_bytes=3000))
    assert len(load_text(text, Limits(max_yaml_expanded_bytes=5000))["y"]) == 3


def test_a_recursive_alias_is_refused() -> None:
    with pytest.raises(YamlSyntaxError, match=r"alias \*a refers to a node that contains it"):
        load_text("a: &a [1, *a]\n", Limits())


@pytest.mark.parametrize("text", [
    "a: " + "[" * 70 + "]" * 70 + "\n",  # YAML, fast path
    '{"a": ' + "[" * 70 + "]" * 70 + "}",  # JSON
    "x: &x 1\na: " + "[" * 70 + "*x" + "]" * 70 + "\n",  # with an alias: the general path
], ids=["yaml", "json", "yaml-with-alias"])
def test_yaml_depth_is_limited(text: str) -> None:
    with pytest.raises(YamlLimitError, match=r"nesting depth is at least 65 levels; the limit is 64 \(setting max_yaml_depth\)"):
        load_text(text, Limits())
    load_text(text, Limits(max_yaml_depth=80))


def test_a_very_deep_document_is_an_error_not_a_crash() -> None:
    block = "".join("  " * i + "- \n" for i in range(200))  # block style: our check, with its setting
    [err] = errors("a:\n" + block)
    assert "nesting depth is at least 65 levels; the limit is 64 (setting max_yaml_depth)" in err
    [err] = errors("a: " + "[" * 5000 + "]" * 5000 + "\n")  # flow style: libyaml's own bound comes first
    assert "nesting depth" in err


# -- spec size ----------------------------------------------------------------------------------


def test_spec_size_is_checked_before_parsing(tmp_path: Path) -> None:
    text = "version: 1.1\nkind: component\nrun: {kind: job, container: {image: x}}\n# " + "x" * 500 + "\n"
    [err] = errors(text, Limits(max_spec_bytes=200))
    assert err == f"t.yaml: error: the file is {len(text.encode()):,} bytes; the limit is 200 (setting max_spec_bytes)"
    big = tmp_path / "big.yaml"
    big.write_text(text)
    [diag] = compile_path(big, limits=Limits(max_spec_bytes=200)).errors
    assert diag.message == f"the file is {len(text):,} bytes; the limit is 200 (setting max_spec_bytes)"
    assert compile_path(big, limits=Limits(max_spec_bytes=1000)).valid


def test_a_referenced_file_over_the_size_limit_is_not_read(tmp_path: Path) -> None:
    (tmp_path / "comp.yaml").write_text("version: 1.1\nkind: component\nrun: {kind: job, container: {image: x}}\n"
                                        + "#" * 1000 + "\n")  # 1,070 bytes
    main = tmp_path / "main.yaml"
    main.write_text("version: 1.1\nkind: operation\npathRef: comp.yaml\n")
    result = compile_path(main, limits=Limits(max_spec_bytes=500))
    [err] = result.errors
    assert (err.location, err.line) == ("pathRef", 3)
    assert err.message.endswith("comp.yaml`: the file is 1,070 bytes; the limit is 500 (setting max_spec_bytes)")


# -- ops after expansion ------------------------------------------------------------------------


def test_the_1000_cubed_grid_is_refused_without_enumerating_it() -> None:
    result = []
    peak = peak_bytes(lambda: result.append(compile_text(textwrap.dedent(GRID), source="grid.yaml")))
    assert peak < 5_000_000, peak  # a billion suggestions would need hundreds of GB
    [err] = result[0].errors
    assert err.location == "run.operations[0].matrix"
    assert err.message == "this matrix expands to 1,000,000,000 runs; the limit is 250,000 (setting max_ops)"
    assert err.line == 9


def test_max_ops_setting_moves_the_limit() -> None:
    assert errors(GRID, Limits(max_ops=1_000_000_002)) == []  # the runs, the matrix and the DAG
    small = GRID.replace("1000", "10")  # 10^3 runs + the DAG + the matrix node
    assert errors(small, Limits(max_ops=1002)) == []
    [err] = errors(small, Limits(max_ops=999))
    assert "this matrix expands to 1,000 runs; the limit is 999 (setting max_ops)" in err


@pytest.mark.parametrize("matrix, runs", [
    ("{kind: random, numRuns: 5000, params: {x: {kind: uniform, value: [0, 1]}}}", 5000),
    ("{kind: random, numRuns: 5000, params: {x: {kind: choice, value: [1, 2, 3]}}}", None),  # capped by the space
    ("{kind: grid, numRuns: 5000, params: {x: {kind: linspace, value: [0, 1, 1000000]}}}", 5000),
    ("{kind: grid, params: {d: {kind: daterange, value: ['2020-01-01', '2030-01-01', 1]}}}", 3653),
    ("{kind: mapping, values: [" + ", ".join(["{x: 1}"] * 3000) + "]}", 3000),
], ids=["random", "random-discrete", "grid-numRuns", "daterange", "mapping"])
def test_matrix_sizes_of_every_kind(matrix: str, runs: int | None) -> None:
    text = f"""
    version: 1.1
    kind: component
    run:
      kind: dag
      operations:
        - name: m
          matrix: {matrix}
          component:
            inputs: [{{name: x, type: float, isOptional: true}}, {{name: d, type: date, isOptional: true}}]
            run: {{kind: job, container: {{image: x}}}}
    """
    found = errors(text, Limits(max_ops=1000))
    if runs is None:
        assert found == []
    else:
        assert len(found) == 1 and f"this matrix expands to {runs:,} runs; the limit is 1,000 (setting max_ops)" in found[0]


NESTED = """
version: 1.1
kind: component
run:
  kind: dag
  operations:
    - name: outer
      matrix: {kind: grid, params: {i: {kind: range, value: [0, 600, 1]}}}
      component:
        inputs: [{name: i, type: int}]
        run:
          kind: dag
          operations:
            - name: inner
              matrix: {kind: grid, params: {j: {kind: range, value: [0, 600, 1]}}}
              component:
                inputs: [{name: j, type: int}]
                run: {kind: job, container: {image: x}}
"""


def test_nested_matrices_multiply_along_the_path() -> None:
    [err] = errors(NESTED)
    assert "run.operations[0].component.run.operations[0].matrix: this matrix expands to 600 runs, and inside the " \
           "matrices around it to 360,000 runs; the limit is 250,000 (setting max_ops)" in err
    assert errors(NESTED, Limits(max_ops=400_000)) == []


def test_a_wide_shared_component_tree_is_counted_not_walked() -> None:
    """Six levels of ten ops that each use the level below: 10^6 ops from a 1 KiB file."""
    comps = ["{name: l0, run: {kind: job, container: {image: x}}}"]
    for i in range(1, 6):
        ops = ", ".join(f"{{name: o{k}, dagRef: l{i - 1}}}" for k in range(10))
        comps.append(f"{{name: l{i}, run: {{kind: dag, operations: [{ops}], components: [{comps[-1]}]}}}}")
    ops = ", ".join(f"{{name: o{k}, dagRef: l5}}" for k in range(10))
    text = f"version: 1.1\nkind: component\nrun: {{kind: dag, operations: [{ops}], components: [{comps[-1]}]}}\n"
    found = errors(text)
    assert found and all("setting max_ops" in e for e in found)


def test_templated_matrix_values_are_left_to_run_time() -> None:
    text = """
    version: 1.1
    kind: component
    inputs: [{name: rows, type: list}]
    run:
      kind: dag
      operations:
        - name: m
          matrix: {kind: mapping, values: "{{ dag.inputs.rows }}"}
          component: {inputs: [{name: x, type: int}], run: {kind: job, container: {image: x}}}
    """
    assert errors(text, Limits(max_ops=3), params={"rows": "[]"}) == []


def test_pipeline_with_too_many_ops_stops_compiling_early() -> None:
    ops = "\n".join(f"    - {{name: op{i}, component: {{run: {{kind: job, container: {{image: x}}}}}}}}" for i in range(50))
    text = f"version: 1.1\nkind: component\nrun:\n  kind: dag\n  operations:\n{ops}\n"
    [err] = errors(text, Limits(max_ops=20))
    assert "the pipeline expands to at least 21 ops; the limit is 20 (setting max_ops)" in err


# -- nested DAG depth -----------------------------------------------------------------------------


def nested_dags(depth: int) -> str:
    body = "{kind: job, container: {image: x}}"
    for _ in range(depth):
        body = f"{{kind: dag, operations: [{{name: n, component: {{run: {body}}}}}]}}"
    return f"version: 1.1\nkind: component\nrun: {body}\n"


def test_nested_dag_depth_is_limited() -> None:
    assert errors(nested_dags(4), Limits(max_dag_depth=4)) == []
    found = errors(nested_dags(5), Limits(max_dag_depth=4))
    assert any("DAGs are nested 5 levels deep; the limit is 4 (setting max_dag_depth)" in e for e in found)


# -- params ---------------------------------------------------------------------------------------


def test_submission_params_size_is_limited() -> None:
    text = """
    version: 1.1
    kind: component
    inputs: [{name: blob, type: str}]
    run: {kind: job, container: {image: x}}
    """
    assert errors(text, params={"blob": "x" * 1000}) == []
    [err] = errors(text, Limits(max_params_bytes=500), params={"blob": "x" * 1000})
    assert "the submission params (--param) are 1,011 bytes as JSON; the limit is 500 (setting max_params_bytes)" in err


# -- settings -------------------------------------------------------------------------------------


def test_settings_layer_table_then_env_then_flags() -> None:
    limits = limits_from(table={"max_ops": 10, "max_dag_depth": 3},
                         env={"FLOWD_MAX_OPS": "20", "FLOWD_MAX_SPEC_BYTES": "1MiB", "FLOWD_HUB": "x"},
                         items=["max_ops=30_000"])
    assert (limits.max_ops, limits.max_dag_depth, limits.max_spec_bytes) == (30_000, 3, 1024 * 1024)
    assert limits.max_yaml_aliases == Limits().max_yaml_aliases
    assert parse_size("64k") == 64_000 and parse_size("2GiB") == 2 * 1024**3


@pytest.mark.parametrize("kw, message", [
    ({"items": ["max_opz=3"]}, "unknown limit 'max_opz'"),
    ({"items": ["max_ops"]}, "--limit expects NAME=VALUE"),
    ({"items": ["max_ops=0"]}, "must be greater than 0"),
    ({"env": {"FLOWD_MAX_OPS": "lots"}}, "FLOWD_MAX_OPS: expected a number"),
    ({"table": {"max_ops": True}}, "expected a number"),
])
def test_bad_settings_name_the_setting(kw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        limits_from(**kw)


def patched_tree(levels: int) -> str:
    """``levels`` levels of ten ops using the level below, each patching `description`."""
    comps = ["{name: l0, run: {kind: job, container: {image: x}}}"]
    for i in range(1, levels):
        ops = ", ".join(f"{{name: o{k}, dagRef: l{i - 1}, description: d{k}}}" for k in range(10))
        comps.append(f"{{name: l{i}, run: {{kind: dag, operations: [{ops}], components: [{comps[-1]}]}}}}")
    ops = ", ".join(f"{{name: o{k}, dagRef: l{levels - 1}, description: d{k}}}" for k in range(10))
    return f"version: 1.1\nkind: component\nrun: {{kind: dag, operations: [{ops}], components: [{comps[-1]}]}}\n"


def test_patched_uses_of_a_shared_component_compile_it_once() -> None:
    """No two ops share an effective component (each patches `description`), but their DAG
    bodies are compiled once: 10^7 ops from 4 KB are counted, not compiled (it was 70 s, 675 MB)."""
    result = []
    peak = peak_bytes(lambda: result.append(compile_text(patched_tree(8), source="t.yaml")))
    assert peak < 20_000_000, peak
    messages = [d.message for d in result[0].errors]
    assert messages and messages[0] == "this op expands to 1,111,111 ops; the limit is 250,000 (setting max_ops)"
    small = compile_text(patched_tree(3), source="t.yaml")
    assert small.valid and small.op is not None
    assert Counter().op(small.op) == 1 + 10 * (1 + 10 * (1 + 10))  # 1,111 ops, expanded by the engine
