from __future__ import annotations

from flowd.artifacts.outputs import bind_outputs
from flowd.engine.resolve import run_artifacts
from flowd.engine.state import Node

LOC = "s3://b/p/run-1/train"


def test_declared_outputs_named_like_files_become_store_paths():
    out = bind_outputs({"loss": 0.1}, ["model", "missing", "loss"], {"model", "other"}, staging="/st", location=LOC)
    assert out == {"loss": 0.1, "model": f"{LOC}/model"}


def test_reported_paths_inside_the_staging_dir_are_rebased():
    out = bind_outputs({"a": "/st/x/y.bin", "b": "$FLOWD_ARTIFACTS/z", "c": "/elsewhere", "d": "plain"}, [], set(),
                       staging="/st", location=LOC)
    assert out == {"a": f"{LOC}/x/y.bin", "b": f"{LOC}/z", "c": "/elsewhere", "d": "plain"}


def test_artifacts_values_get_their_entries_prefixed():
    out = bind_outputs({"arts": {"files": ["a.txt", "/abs"], "dirs": ["d"]}}, [], set(), staging="/st", location=LOC)
    assert out == {"arts": {"files": [f"{LOC}/a.txt", "/abs"], "dirs": [f"{LOC}/d"]}}


def test_the_artifacts_section_of_an_op_and_of_a_cache_hit():
    node = Node(path="train", parent="", name="train", index=0, kind="job", status="succeeded",
                outputs={"model": "s3://b/p/run-1/train/model", "loss": 1})
    assert run_artifacts("run-1", node, {}) is None  # no store named by the adapter
    assert run_artifacts("run-1", node, {"artifacts_store": "s3://b/p"}) == {
        "base": LOC, "outputs": LOC, "model": f"{LOC}/model"}
    hit = Node(path="train", parent="", name="train", index=0, kind="job", status="succeeded", reason="CacheHit",
               message="cache hit: outputs of run-0/train", outputs={"model": "s3://b/p/run-0/train/model"})
    assert run_artifacts("run-1", hit, {"artifacts_store": "s3://b/p"})["base"] == "s3://b/p/run-0/train"


def test_gc_plan():
    from flowd.artifacts.gc import collectable, references

    stored = ["r1", "r2", "r3", "r4"]
    # r1 going and unreferenced; r2 going but referenced; r3 kept; r4 an orphan (its run was removed)
    assert collectable(stored, going={"r1", "r2"}, kept={"r3"}, referenced={"r2"}) == ["r1", "r4"]
    blob = b"\x92\xa5/st/r2/op/model\xa3abc /st/r11/x"
    assert references(blob, "/st", ["r1", "r2", "r11"]) == {"r2", "r11"}
    assert references(b"nothing", "/st", ["r1"]) == set()
