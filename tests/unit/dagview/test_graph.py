"""Graphs of compiled pipelines and runs: the model, the three text formats and the layout."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from flowd.dagview import build_graph, layout, render
from flowd.engine import Engine, OpStatus, StartOp, Submit
from flowd.spec import compile_path

ROOT = Path(__file__).resolve().parents[3]


def compiled(name: str):
    result = compile_path(ROOT / "examples" / "features" / name)
    assert result.valid and result.op is not None
    return result.op


def test_nested_dag_is_a_group_with_its_ops_and_edges() -> None:
    graph = build_graph(compiled("nested-dag.yaml"))
    assert set(graph.nodes) == {"etl", "etl/extract", "etl/load", "publish"}
    assert graph.nodes["etl"].children == ["etl/extract", "etl/load"]
    assert ("etl/extract", "etl/load") in graph.edges and ("etl", "publish") in graph.edges
    mermaid = render(graph, "mermaid")
    assert mermaid.startswith("flowchart LR") and 'subgraph n0 ["etl (dag)"]' in mermaid and "n0 --> n3" in mermaid
    text = render(graph, "text")
    assert text.splitlines()[0] == "pipeline nested-dag"
    assert any(line.split() == ["publish", "job", "after", "etl"] for line in text.splitlines())


def run_matrix() -> tuple[object, object]:
    op = compiled("matrix-grid.yaml")
    engine = Engine()
    commands = engine.handle(Submit(run_id="r", pipeline=op, time=1.0, seed=1))
    starts = [c for c in commands if isinstance(c, StartOp)]
    for c in starts[:1]:
        engine.handle(OpStatus(run_id="r", path=c.path, attempt=c.attempt, status="succeeded", time=2.0, outputs={"score": 0.2}))
    return op, engine.view("r")


def test_a_run_adds_matrix_children_and_statuses() -> None:
    op, view = run_matrix()
    graph = build_graph(op, view)  # type: ignore[arg-type]
    assert graph.nodes["tune"].kind == "matrix"
    assert graph.nodes["tune"].children == [f"tune[{i}]" for i in range(4)]
    assert graph.nodes["tune[0]"].status == "succeeded" and graph.nodes["tune[0]"].outputs == {"score": 0.2}
    assert graph.nodes["tune[0]"].params is not None and "lr" in graph.nodes["tune[0]"].params
    assert "tune[0]  job     succeeded" in render(graph, "text")
    assert "class n1 succeeded" in render(graph, "mermaid")
    assert 'fillcolor="#d8f5d0"' in render(graph, "dot")
    assert "... 2 more" in render(graph, "text", max_children=2)


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed")
def test_dot_output_is_read_by_graphviz() -> None:
    op, view = run_matrix()
    for graph in (build_graph(compiled("nested-dag.yaml")), build_graph(op, view)):  # type: ignore[arg-type]
        proc = subprocess.run(["dot", "-Tsvg"], input=render(graph, "dot"), capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr


def overlaps(a: dict, b: dict) -> bool:
    return a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]


def test_layout_places_every_node_left_to_right_without_overlaps() -> None:
    graph = build_graph(compiled("nested-dag.yaml"))
    drawn = layout(graph)
    boxes = {b["path"]: b for b in drawn["boxes"]}
    assert set(boxes) == set(graph.nodes)
    for up, down in graph.edges:
        assert boxes[up]["x"] + boxes[up]["w"] <= boxes[down]["x"]
    siblings = [(a, b) for a in boxes.values() for b in boxes.values()
                if a["path"] < b["path"] and graph.nodes[a["path"]].parent == graph.nodes[b["path"]].parent]
    assert not any(overlaps(a, b) for a, b in siblings)
    etl = boxes["etl"]
    for inner in ("etl/extract", "etl/load"):  # inside its group
        b = boxes[inner]
        assert etl["x"] < b["x"] and b["x"] + b["w"] < etl["x"] + etl["w"] and etl["y"] < b["y"] < etl["y"] + etl["h"]
    collapsed = layout(graph, collapsed=frozenset({"etl"}))
    assert {b["path"] for b in collapsed["boxes"]} == {"etl", "publish"}
    assert len(collapsed["edges"]) == 1
