"""Matrix children share one spec (issue 15 §3): what each child runs with still comes from its
own suggestion over the matrix op's params, with the flags of the matrix op's params."""

from __future__ import annotations

from flowd.engine.core import Engine
from flowd.engine.messages import StartOp, Submit
from tests.unit.engine.build import IOSpec, Matrix, ParamSpec, dag, job


def _start(pipeline) -> tuple[Engine, list[StartOp]]:
    engine = Engine()
    starts = [c for c in engine.handle(Submit("r", pipeline, 0.0, seed=1)) if isinstance(c, StartOp)]
    return engine, starts


def test_children_share_one_spec_and_run_with_their_own_values():
    sweep = job("sweep", inputs=[IOSpec("lr", type="float"), IOSpec("tag", type="str")],
                params={"lr": ParamSpec(value=None, to_env="LR"), "tag": ParamSpec(value="base", to_env="TAG")},
                matrix=Matrix(kind="mapping", values=[{"lr": 0.1}, {"lr": 0.2, "tag": "other"}]))
    engine, starts = _start(dag("p", [sweep]))
    specs = engine._index["r"].specs
    assert specs["sweep[0]"] is specs["sweep[1]"]
    assert specs["sweep[0]"].params == {} and specs["sweep[0]"].matrix is None
    by_path = {s.path: s for s in starts}
    assert by_path["sweep[0]"].params == {"lr": 0.1, "tag": "base"}
    assert by_path["sweep[0]"].env == {"LR": "0.1", "TAG": "base"}
    assert by_path["sweep[1]"].params == {"lr": 0.2, "tag": "other"}
    assert by_path["sweep[1]"].env == {"LR": "0.2", "TAG": "other"}
    # derived again after a restore, as the daemon re-issues attempts in flight
    restored = Engine.restore(engine.snapshot())
    assert sorted(restored.in_flight("r"), key=lambda s: s.path) == sorted(starts, key=lambda s: s.path)


def test_a_coerced_value_is_kept_apart_from_the_suggestion():
    """A child whose params equal its suggestion keeps one dict; one whose input type changed a
    value (``"3"`` for an int) keeps its coerced params and its suggestion as given."""
    sweep = job("sweep", inputs=[IOSpec("n", type="int")],
                matrix=Matrix(kind="mapping", values=[{"n": 2}, {"n": "3"}]))
    engine, starts = _start(dag("p", [sweep]))
    nodes = engine.runs["r"].nodes
    assert nodes["sweep[0]"].params == {"n": 2} and nodes["sweep[0]"].params is nodes["sweep[0]"].suggestion
    assert nodes["sweep[1]"].params == {"n": 3} and nodes["sweep[1]"].suggestion == {"n": "3"}
    assert [s.params for s in sorted(starts, key=lambda s: s.path)] == [{"n": 2}, {"n": 3}]
