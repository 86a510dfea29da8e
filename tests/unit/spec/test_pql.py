"""The PQL subset of joins (POLYFLOW §8.4): parsing, errors, evaluation and sorting."""

from __future__ import annotations

import pytest

from flowd.spec.pql import PqlError, parse_query, parse_sort, sort_records

RUNS = [
    {"uuid": "u1", "name": "tune-1", "status": "succeeded", "tags": ["a", "b"], "created_at": 100.0,
     "inputs": {"lr": 0.1}, "outputs": {"loss": 0.5}, "metrics": {"loss": 0.5}, "meta_values": {"iteration": 0}},
    {"uuid": "u2", "name": "tune-2", "status": "failed", "tags": ["b"], "created_at": 200.0,
     "inputs": {"lr": 0.01}, "outputs": {}, "metrics": {}, "meta_values": {"iteration": 1}},
    {"uuid": "u3", "name": "other", "status": "succeeded", "tags": [], "created_at": 300.0,
     "inputs": {"lr": 0.001}, "outputs": {"loss": 0.2}, "metrics": {"loss": 0.2}, "meta_values": {"iteration": 2}},
]


def select(query: str) -> list[str]:
    q = parse_query(query)
    return [r["uuid"] for r in RUNS if q.match(r)]


@pytest.mark.parametrize(("query", "expected"), [
    ("status: succeeded", ["u1", "u3"]),
    ("status: ~succeeded", ["u2"]),
    ("status: succeeded, metrics.loss: <0.3", ["u3"]),
    ("status: succeeded AND metrics.loss: >=0.5", ["u1"]),
    ("metrics.loss: ~nil", ["u1", "u3"]),
    ("metrics.loss: nil", ["u2"]),
    ("status: failed OR metrics.loss: <=0.2", ["u2", "u3"]),
    ("(status: failed OR name: other), inputs.lr: <0.1", ["u2", "u3"]),
    ("name: tune%", ["u1", "u2"]),
    ("name: %her", ["u3"]),
    ("name: %un%", ["u1", "u2"]),
    ("uuid: u1|u3", ["u1", "u3"]),
    ("uuid: ~u1|u3", ["u2"]),
    ("meta_values.iteration: 1..2", ["u2", "u3"]),
    ("created_at: 1970-01-01T00:02:00..1970-01-01T00:06:00", ["u2", "u3"]),
    ("created_at: >150", ["u2", "u3"]),
    ("tags: a", ["u1"]),
    ("tags: b", ["u1", "u2"]),
    ("outputs.nothing: 3", []),
])
def test_conditions_select_the_matching_runs(query: str, expected: list[str]) -> None:
    assert select(query) == expected


@pytest.mark.parametrize(("query", "message"), [
    ("", "empty"),
    ("status", "expected `:` after field `status`"),
    ("status: ", "has no value"),
    ("status: ok, (name: a", "without a matching `)`"),
    ("status: ok)", "unexpected `)`"),
    ("hub.name: x", "unknown field `hub.name`"),
    ("metrics.loss: ~", "`~` must be followed"),
    ("metrics.loss: 1..", "a range is `a..b`"),
    ("uuid: a||b", "empty choice"),
    ("status: ok,", "missing at the end"),
])
def test_bad_queries_say_what_is_wrong(query: str, message: str) -> None:
    with pytest.raises(PqlError, match=None) as info:
        parse_query(query)
    assert message in str(info.value)


def test_unknown_fields_pass_when_not_strict() -> None:
    assert parse_query("hub.name: x", strict_fields=False).fields == ["hub.name"]


def test_sort_orders_by_fields_with_missing_values_last() -> None:
    order = parse_sort("metrics.loss")
    assert [r["uuid"] for r in sort_records(RUNS, order)] == ["u3", "u1", "u2"]
    assert [r["uuid"] for r in sort_records(RUNS, parse_sort("-metrics.loss"))] == ["u1", "u3", "u2"]
    assert [r["uuid"] for r in sort_records(RUNS, parse_sort("status, -created_at"))] == ["u2", "u3", "u1"]
    with pytest.raises(PqlError, match="unknown field `bogus`"):
        parse_sort("bogus")
    with pytest.raises(PqlError, match="not a field name"):
        parse_sort("metrics.loss, ,")


def test_flowd_check_reports_bad_join_queries_at_their_location() -> None:
    import textwrap

    from flowd.spec import compile_text

    text = textwrap.dedent("""
    kind: component
    name: p
    run:
      kind: dag
      operations:
        - {name: a, component: {run: {kind: job, container: {image: x, command: [echo]}}}}
        - name: reduce
          dependencies: [a]
          params: {u: {ref: ops.a, value: globals.uuid, contextOnly: true}}
          joins:
            - {query: "pipeline: {{ u }}, (status: ok", params: {xs: {value: outputs.loss}}}
            - {query: "hub.name: x", sort: "-metrics.loss, nope", params: {ys: {value: outputs.loss}}}
            - {query: "pipeline: {{ u }}, metrics.loss: <{{ 0.5 }}", sort: "-metrics.loss"}
          component:
            inputs: [{name: xs, type: float, isList: true}, {name: ys, type: float, isList: true}]
            run: {kind: job, container: {image: x, command: [echo]}}
    """)
    result = compile_text(text, source="t.yaml")
    # the reference accepts any query at submission (the op fails when it runs): warnings only
    assert result.valid and result.errors == []
    warnings = sorted((w.location, w.message) for w in result.warnings)
    assert [loc.rsplit(".", 2)[-2:] for loc, _ in warnings] == [["joins[0]", "query"], ["joins[1]", "query"],
                                                                 ["joins[1]", "sort"]]
    assert "without a matching `)`" in warnings[0][1] and "the op will fail when it runs" in warnings[0][1]
    assert "unknown field `hub.name`" in warnings[1][1] and "unknown field `nope`" in warnings[2][1]
