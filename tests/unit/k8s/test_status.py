"""Pod JSON -> op status, on pods recorded from the real apiserver + kwok (tests/unit/k8s/pods/)
and on hand-made variations of them for what kwok cannot produce (image pulls, evictions)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from flowd.k8s import naming as N
from flowd.k8s.status import GONE, Observation, identity, kubeflow_observe, observe, parse_time

PODS = Path(__file__).parent / "pods"
NOW = parse_time("2026-11-29T05:00:00Z") or 0.0


def pod(name: str) -> dict[str, Any]:
    return json.loads((PODS / f"{name}.json").read_text())


def test_succeeded_with_outputs() -> None:
    obs = observe(pod("ok"), now=NOW)
    assert obs == Observation("succeeded", exit_code=0, outputs={"loss": 0.25, "path": "s3://b/k"})


def test_succeeded_without_message_has_no_outputs() -> None:
    p = pod("ok")
    del p["status"]["containerStatuses"][0]["state"]["terminated"]["message"]
    assert observe(p, now=NOW) == Observation("succeeded", exit_code=0)


@pytest.mark.parametrize("message", ["not json", "[1, 2]"])
def test_succeeded_with_bad_outputs_fails(message: str) -> None:
    p = pod("ok")
    p["status"]["containerStatuses"][0]["state"]["terminated"]["message"] = message
    obs = observe(p, now=NOW)
    assert (obs.status, obs.reason, obs.exit_code) == ("failed", "InvalidOutputs", 0)


def test_failed_with_exit_code_and_reason() -> None:
    obs = observe(pod("bad"), now=NOW)
    assert (obs.status, obs.reason, obs.exit_code) == ("failed", "OOMKilled", 42)


def test_deadline_exceeded_is_the_pods_reason() -> None:
    p = pod("hang")
    p["status"].update(phase="Failed", reason="DeadlineExceeded",
                       message="Pod was active on the node longer than the specified deadline")
    obs = observe(p, now=NOW)
    assert (obs.status, obs.reason) == ("failed", "DeadlineExceeded")
    assert "deadline" in (obs.message or "")


def test_failed_init_container() -> None:
    p = pod("bad")
    p["status"]["containerStatuses"][0]["state"] = {"waiting": {"reason": "PodInitializing"}}
    p["status"]["initContainerStatuses"] = [{"name": "init-0", "state": {"terminated": {"exitCode": 3, "reason": "Error"}}}]
    obs = observe(p, now=NOW)
    assert (obs.status, obs.reason, obs.exit_code) == ("failed", "InitError", 3)
    assert "init container init-0" in (obs.message or "")


def test_failed_main_container_is_picked_by_annotation() -> None:
    p = pod("bad")
    side = copy.deepcopy(p["status"]["containerStatuses"][0])
    side["name"] = "sidecar"
    side["state"]["terminated"].update(exitCode=0, reason="Completed")
    p["status"]["containerStatuses"].insert(0, side)
    p["metadata"]["annotations"][N.A_MAIN] = "main"
    assert observe(p, now=NOW).exit_code == 42


def test_running_pending_unschedulable() -> None:
    assert observe(pod("hang"), now=NOW).status == "running"
    obs = observe(pod("nowhere"), now=NOW)
    assert (obs.status, obs.reason) == ("unschedulable", "Unschedulable")
    assert "untolerated" in (obs.message or "") or "node(s)" in (obs.message or "")
    p = pod("nowhere")
    p["status"]["conditions"] = []
    assert observe(p, now=NOW).status == "scheduled"
    p["spec"]["nodeName"] = "kwok-node-0"
    assert observe(p, now=NOW).status == "starting"


def test_being_deleted() -> None:
    p = pod("hang-deleting")  # kwok deletes with grace 0
    assert observe(p, now=NOW).status == GONE
    p["metadata"]["deletionGracePeriodSeconds"] = 30
    p["metadata"]["deletionTimestamp"] = "2026-11-29T05:00:30Z"
    assert observe(p, now=NOW).status == "running"  # the kubelet still has time
    assert observe(p, now=NOW + 31).status == GONE
    # a pod that ended while being deleted reports how it ended
    p["status"]["phase"] = "Succeeded"
    p["status"]["containerStatuses"][0]["state"] = {"terminated": {"exitCode": 0}}
    assert observe(p, now=NOW).status == "succeeded"


@pytest.mark.parametrize("reason", ["ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError"])
def test_image_pull_backoff_fails_past_the_threshold(reason: str) -> None:
    p = pod("hang")
    p["status"]["phase"] = "Pending"
    p["status"]["containerStatuses"][0]["state"] = {"waiting": {"reason": reason, "message": "pull access denied"}}
    scheduled = next(c for c in p["status"]["conditions"] if c["type"] == "PodScheduled")
    scheduled["lastTransitionTime"] = "2026-11-29T04:58:00Z"  # 2 min before NOW
    obs = observe(p, now=NOW, stuck_timeout=300)
    assert (obs.status, obs.reason) == ("warning", reason)
    obs = observe(p, now=NOW, stuck_timeout=60)
    assert (obs.status, obs.reason) == ("failed", reason)
    assert "pull access denied" in (obs.message or "")


def test_identity() -> None:
    p = pod("ok")
    assert identity(p) is None  # not one of flowd's
    p["metadata"]["annotations"].update({N.A_RUN_ID: "r", N.A_OP_PATH: "a/b", N.A_ATTEMPT: "2", N.A_KEY: "r/a/b#2"})
    assert identity(p) == ("r", "a/b", 2, "r/a/b#2")


def cond(type_: str, at: str, reason: str = "", message: str = "") -> dict[str, str]:
    return {"type": type_, "status": "True", "lastTransitionTime": at, "reason": reason, "message": message}


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        pytest.param([], ("scheduled", None), id="new"),
        pytest.param([cond("Created", "2026-01-01T00:00:00Z", "TFJobCreated")], ("scheduled", None), id="created"),
        pytest.param([cond("Created", "2026-01-01T00:00:00Z"), cond("Running", "2026-01-01T00:00:05Z", "JobRunning")],
                     ("running", "JobRunning"), id="running"),
        pytest.param([cond("Running", "2026-01-01T00:00:05Z"), cond("Restarting", "2026-01-01T00:00:09Z", "Restarting")],
                     ("running", "Restarting"), id="restarting"),
        pytest.param([cond("Running", "2026-01-01T00:00:05Z"), cond("Succeeded", "2026-01-01T00:01:00Z", "JobSucceeded")],
                     ("succeeded", "JobSucceeded"), id="succeeded"),
        pytest.param([cond("Running", "2026-01-01T00:00:05Z"),
                      cond("Failed", "2026-01-01T00:01:00Z", "JobFailed", "worker 1 exited 2")],
                     ("failed", "JobFailed"), id="failed"),
    ],
)
def test_kubeflow_conditions(conditions: list[dict[str, str]], expected: tuple[str, str | None]) -> None:
    job = {"metadata": {"name": "j"}, "status": {"conditions": conditions}}
    obs = kubeflow_observe(job)
    assert (obs.status, obs.reason) == expected
