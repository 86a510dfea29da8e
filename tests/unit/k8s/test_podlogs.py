"""Pure parts of reading pods' logs: timestamps, the no-repeat rule across reconnects, metric
lines, and which pods the executor follows for metrics."""

from __future__ import annotations

from typing import Any

from flowd.k8s.metriclogs import MetricFollowers, parse_metric_line
from flowd.k8s.podlogs import PodLog, main_container, pod_done


def podlog() -> PodLog:
    return PodLog(None, namespace="ns", name="p", container="main")  # type: ignore[arg-type]


def test_a_reconnect_from_since_time_repeats_nothing() -> None:
    log = podlog()
    first = [b"2026-12-05T10:00:00.5Z a", b"2026-12-05T10:00:01Z b", b"2026-12-05T10:00:01Z c"]
    assert [log._fresh(x) for x in first] == [b"a", b"b", b"c"]
    q = log._query(follow=True)
    assert q["sinceTime"] == "2026-12-05T10:00:01.000000000Z" and q["follow"] == "true" and q["timestamps"] == "true"
    # the apiserver cuts sinceTime to seconds: the server sends b and c again, then d
    again = [b"2026-12-05T10:00:01Z b", b"2026-12-05T10:00:01Z c", b"2026-12-05T10:00:01Z d",
             b"2026-12-05T10:00:01.25Z e"]
    assert [log._fresh(x) for x in again] == [None, None, b"d", b"e"]


def test_stamps_compare_as_numbers_not_strings() -> None:
    log = podlog()
    # RFC3339Nano drops trailing zeros: ".5" is later than ".25" and than ".123456789"
    assert log._fresh(b"2026-12-05T10:00:00.5Z x") == b"x"
    assert log._fresh(b"2026-12-05T10:00:00.25Z old") is None
    assert log._fresh(b"2026-12-05T10:00:00.500000001Z y") == b"y"
    assert log._fresh(b"no stamp at all") == b"no stamp at all"


def test_metric_lines() -> None:
    assert parse_metric_line('FLOWD_METRIC {"step": 1, "loss": 0.5}') == {"step": 1, "loss": 0.5}
    assert parse_metric_line('{"step": 1}') is None  # a plain print of JSON is not a metric
    assert parse_metric_line("FLOWD_METRIC [1, 2]") is None
    assert parse_metric_line("FLOWD_METRIC not json") is None
    assert parse_metric_line('MY {"a": 1}', prefix="MY ") == {"a": 1}


def test_which_pods_are_followed() -> None:
    refused: list[int] = []
    f = MetricFollowers(send=lambda key, points: None, limit=1, on_refused=lambda: refused.append(1))
    assert not f.wants(key="r/train#1", path="train", resource="pods")  # not a matrix child
    assert not f.wants(key="r/m[0]#1", path="m[0]", resource="tfjobs")
    assert f.wants(key="r/m[0]#1", path="m[0]", resource="pods")
    f._ended["r/m[0]#1"] = None  # type: ignore[assignment]  # one followed: the bound is reached
    assert not f.wants(key="r/m[1]#1", path="m[1]", resource="pods") and refused == [1]
    assert MetricFollowers(send=lambda k, p: None, mode="all").wants(key="k", path="train", resource="pods")
    assert not MetricFollowers(send=lambda k, p: None, mode="off").wants(key="k", path="m[0]", resource="pods")


def test_pod_helpers() -> None:
    pod: dict[str, Any] = {"metadata": {"annotations": {"flowd.io/main-container": "trainer"}},
                           "spec": {"containers": [{"name": "sidecar"}, {"name": "trainer"}]}, "status": {"phase": "Running"}}
    assert main_container(pod) == "trainer" and not pod_done(pod)
    assert main_container({"spec": {"containers": [{"name": "only"}]}}) == "only"
    assert pod_done({"status": {"phase": "Failed"}}) and pod_done(None)
