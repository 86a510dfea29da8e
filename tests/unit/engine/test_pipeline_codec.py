"""A restored pipeline shares what the submitted one shared (issue 15 §3): a nested DAG's body is
one object again after a restore, not a copy per instance, and equals what a plain decode of the
same bytes gives. The snapshot bytes are unchanged."""

from __future__ import annotations

import msgspec

from flowd.engine.core import Engine
from flowd.engine.messages import OpStatus, StartOp, Submit
from flowd.engine.pipeline_codec import PipelineDecoder
from flowd.engine.state import Snapshot
from flowd.spec.compiled import Component, Dag, Op
from tests.unit.engine.build import IOSpec, Matrix, ParamSpec, dag, job


def _nested(outer: int, inner: int) -> Op:
    body = Component(kind="dag", dag=Dag(ops=[job("i0")] + [job(f"i{j}", upstream=["i0"]) for j in range(1, inner)]))
    sweep = job("sweep", inputs=[IOSpec("lr", type="float")], params={"lr": ParamSpec(value=None, to_env="LR")},
                matrix=Matrix(kind="mapping", values=[{"lr": 0.1}, {"lr": 0.2}]))
    return dag("p", [Op(name=f"d{i}", component=body) for i in range(outer)] + [sweep])


def test_a_restored_nested_pipeline_shares_its_body_and_equals_a_plain_decode():
    engine = Engine()
    out = engine.handle(Submit("r", _nested(4, 3), 0.0, seed=1))
    blob = engine.snapshot()
    restored = Engine.restore(blob)
    pipeline = restored.runs["r"].pipeline
    assert pipeline == msgspec.msgpack.decode(blob, type=Snapshot).runs[0].pipeline == engine.runs["r"].pipeline
    bodies = {id(op.component) for op in pipeline.component.dag.ops if op.name.startswith("d")}
    assert len(bodies) == 1
    assert restored.snapshot() == blob
    # the restored engine goes on exactly as the first one
    for start in (c for c in out if isinstance(c, StartOp)):
        event = OpStatus("r", start.path, start.attempt, "succeeded", 1.0)
        assert restored.handle(event) == engine.handle(event)
    assert restored.snapshot() == engine.snapshot()


def test_a_run_in_parts_restores_sharing_too():
    engine = Engine()
    engine.handle(Submit("r", _nested(3, 2), 0.0))
    parts = list(engine.snapshot_run("r", nodes_per_part=2))
    other = Engine()
    other.restore_run(parts)
    pipeline = other.runs["r"].pipeline
    assert pipeline == engine.runs["r"].pipeline
    assert len({id(op.component) for op in pipeline.component.dag.ops if op.name.startswith("d")}) == 1


def test_equal_parts_are_shared_across_the_pipelines_one_decoder_decodes():
    decoder = PipelineDecoder()
    a = decoder.decode(msgspec.msgpack.encode(_nested(2, 2)))
    b = decoder.decode(msgspec.msgpack.encode(_nested(2, 2)))
    assert a is b
