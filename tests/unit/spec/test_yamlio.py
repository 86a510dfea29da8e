"""YAML reading: same values as PyYAML's safe loader, positions on demand, clean syntax errors."""

from __future__ import annotations

import datetime as dt

import pytest
import yaml

from flowd.spec.yamlio import YamlSyntaxError, dump_text, load_text, positions

SAMPLES = [
    "a: 1\nb: [1, 2.5, 'x', null, true, ~, yes, off]\nc: {d: 2019-06-24, e: 2019-06-24T21:20:07+00:00}\n",
    "- a\n- {b: 0x1f, c: 1e3, d: .inf, e: 010, f: '010'}\n",
    "x: &anchor {k: 1, l: [1, 2]}\ny: *anchor\nz:\n  <<: *anchor\n  k: 2\n",
    "text: |\n  line one\n  line two\nfolded: >\n  a\n  b\n",
    "---\nkey: value\n...\n",
    "!!str 3",
    "",
]


@pytest.mark.parametrize("text", SAMPLES)
def test_same_values_as_pyyaml(text: str) -> None:
    assert load_text(text) == yaml.safe_load(text)


def test_json_fast_path() -> None:
    assert load_text('{"a": {"b": [1, 2]}}') == {"a": {"b": [1, 2]}}
    assert load_text("{a: 1, b: [x]}") == {"a": 1, "b": ["x"]}  # flow YAML, not JSON


@pytest.mark.parametrize(
    ("text", "line", "column", "fragment"),
    [
        ("a: [1, 2\n", 2, 1, "did not find expected ',' or ']'"),
        ("a: b: c\n", 1, 5, "mapping values are not allowed"),
        ("a: 1\n---\nb: 2\n", 2, 1, "expected a single document"),
        ("a: *nope\n", 1, 4, "undefined alias"),
        ("a: !!int x\n", 1, 4, "cannot read 'x'"),
        ("a: !custom 1\n", 1, 4, "unsupported YAML tag"),
        ("a:\n\t- b\n", 2, 1, "tab"),
    ],
)
def test_syntax_errors_have_positions(text: str, line: int, column: int, fragment: str) -> None:
    with pytest.raises(YamlSyntaxError) as info:
        load_text(text)
    err = info.value
    assert (err.line, err.column) == (line, column)
    assert fragment in err.message


def test_positions_of_keys_and_items() -> None:
    text = "run:\n  kind: dag\n  operations:\n    - name: a\n      params: {lr: 0.1}\n    - name: b\n"
    marks = positions(text)
    assert marks[("run",)] == (1, 1)
    assert marks[("run", "operations")] == (3, 3)
    assert marks[("run", "operations", 1)] == (6, 7)
    assert marks[("run", "operations", 0, "params", "lr")] == (5, 16)


def test_dump_round_trip() -> None:
    data = {"b": 1, "a": [{"x": "{{ y }}"}, None, True], "when": dt.date(2020, 1, 2)}
    text = dump_text(data)
    assert text.startswith("b: 1\n")  # keeps key order
    assert load_text(text) == data
