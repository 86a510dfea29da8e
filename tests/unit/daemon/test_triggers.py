from __future__ import annotations

from flowd.daemon import wire
from flowd.daemon.triggers import derived_run_id, matches
from flowd.spec.compiled import Component, Op

SUB = wire.Subscription(
    id="sub1", time=0.0, pipeline=Op(name="p", component=Component(kind="job")),
    events=[{"ref": "connections.repo", "kinds": ["connection_git_commit"]},
            {"ref": "pipelines.train", "kinds": ["run_status_done"]},
            {"ref": "runs.r9", "kinds": ["run_status_running"]}],
)


def status(run_id: str, pipeline: str, st: str, path: str = "") -> wire.StatusEvent:
    return wire.StatusEvent(run_id=run_id, pipeline=pipeline, path=path, status=st, time=1.0, key=f"{run_id}/{path}:{st}")


def test_matching_rules() -> None:
    ext = wire.ExternalEvent(ref="connections.repo", kind="connection_git_commit", key="abc", time=1.0)
    assert matches(SUB, ext) == "external:connections.repo:abc"
    assert matches(SUB, wire.ExternalEvent(ref="connections.repo", kind="alert_info", key="k", time=1.0)) is None
    assert matches(SUB, wire.ExternalEvent(ref="connections.other", kind="connection_git_commit", key="k", time=1.0)) is None
    assert matches(SUB, status("x", "train", "failed")) == "x/:failed"  # run_status_done: any terminal status
    assert matches(SUB, status("x", "train", "running")) is None
    assert matches(SUB, status("x", "train", "failed", path="op")) is None  # ops never match
    assert matches(SUB, status("r9", "any", "running")) == "r9/:running"
    assert matches(SUB, status("sub1", "train", "succeeded")) is None  # never itself
    old = wire.ExternalEvent(ref="connections.repo", kind="connection_git_commit", key="abc", time=-1.0)
    assert matches(SUB, old) is None  # older than the subscription


def test_derived_run_ids_are_stable_and_distinct() -> None:
    assert derived_run_id("s", "k") == derived_run_id("s", "k")
    assert len({derived_run_id("s", "k"), derived_run_id("s", "k2"), derived_run_id("s2", "k")}) == 3


def test_routed_partitions_cover_every_partition_once_across_owners() -> None:
    from flowd.daemon.triggers import routed_partitions

    counts = {"events": 6, "external": 4}
    shares = [routed_partitions({p}, runs=3, counts=counts) for p in range(3)]
    union = set().union(*shares)
    assert union == {(t, q) for t, n in counts.items() for q in range(n)}
    assert sum(len(s) for s in shares) == len(union)  # no partition routed by two owners
    assert routed_partitions({0}, runs=3, counts=counts) == {("events", 0), ("events", 3), ("external", 0), ("external", 3)}
    assert routed_partitions(set(), runs=3, counts=counts) == set()
