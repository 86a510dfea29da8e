"""Artifacts on pods (flowd.k8s.artifacts): with an S3 store in the settings, a job runs through
the exit-code wrapper next to the ``flowd-artifacts`` uploader; store locations in its command
are downloaded by ``flowd-inputs`` and rewritten to local paths; credentials come from the
artifacts connection's secret, never argv. The processes themselves are tested against a real
S3 server in tests/integration/test_artifacts_pod.py; the apiserver's acceptance in
tests/integration/test_k8s_artifacts.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flowd.artifacts.podside import WRAPPER
from flowd.engine import StartOp
from flowd.engine import status as S
from flowd.k8s.config import Connection, ConnectionResource, Settings
from flowd.k8s.pod import ConversionError, build_pod
from flowd.k8s.status import observe, with_report

STORE = "s3://bucket/team"
SETTINGS = Settings(init_image="flowd:test", artifacts_store=STORE, artifacts_endpoint="http://s3.local:9000",
                    artifacts_connection="s3", connections={
                        "s3": Connection(kind="s3", schema={"bucket": "s3://bucket"},
                                         secret=ConnectionResource(name="s3-creds",
                                                                   items=["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]))})


def op(run: dict[str, Any], *, outputs: list[str] | None = None, env: dict[str, str] | None = None,
       kind: str = "job") -> StartOp:
    return StartOp(run_id="run-1", path="eval", attempt=2, key="run-1/eval/2", kind=kind, params={}, run=run,
                   outputs=outputs or [], env=env or {})


def by_name(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {i["name"]: i for i in items}


def test_a_job_runs_through_the_wrapper_next_to_the_uploader() -> None:
    pod = build_pod(op({"container": {"image": "trainer:1", "command": ["python", "train.py"], "args": ["--x", "1"]}},
                       outputs=["model"]), SETTINGS)
    spec = pod["spec"]
    main, up = spec["containers"]
    assert main["command"] == ["/bin/sh", "-c", WRAPPER, "flowd-wrap", "python", "train.py", "--x", "1"]
    assert "args" not in main
    env = {e["name"]: e.get("value") for e in main["env"]}
    assert env["FLOWD_ARTIFACTS"] == "/flowd/artifacts/out"
    assert up["name"] == "flowd-artifacts" and up["image"] == "flowd:test"
    assert up["command"] == ["python", "-m", "flowd.artifacts.podside", "upload"]
    upenv = by_name(up["env"])
    assert upenv["FLOWD_ARTIFACTS_PREFIX"]["value"] == "run-1/eval"
    assert upenv["FLOWD_ARTIFACTS_STORE"]["value"] == STORE
    assert json.loads(upenv["FLOWD_DECLARED_OUTPUTS"]["value"]) == ["model"]
    # credentials: secret references on flowd's container only, never values, never argv
    assert upenv["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "s3-creds",
                                                                            "key": "AWS_SECRET_ACCESS_KEY"}
    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert {"name": "flowd-artifacts", "emptyDir": {}} in spec["volumes"]
    assert {m["mountPath"] for m in main["volumeMounts"]} == {"/flowd/artifacts"}
    assert up["securityContext"]["allowPrivilegeEscalation"] is False


def test_store_locations_in_the_command_are_downloaded_and_rewritten() -> None:
    run = {"container": {"image": "eval:1", "command": ["python", "eval.py", f"--model={STORE}/run-0/train/model"],
                         "env": [{"name": "BASE", "value": f"{STORE}/run-0/outer/inner"}]}}
    pod = build_pod(op(run, env={"DATA": f"{STORE}/run-0/prep/data.csv"}), SETTINGS)
    spec = pod["spec"]
    (fetch,) = [c for c in spec["initContainers"] if c["name"] == "flowd-inputs"]
    pairs = json.loads(by_name(fetch["env"])["FLOWD_FETCH"]["value"])
    assert pairs == [["run-0/train/model", "/flowd/inputs/run-0/train/model"],
                     ["run-0/outer/inner", "/flowd/inputs/run-0/outer/inner"],
                     ["run-0/prep/data.csv", "/flowd/inputs/run-0/prep/data.csv"]]
    main = spec["containers"][0]
    assert main["command"][-1] == "--model=/flowd/inputs/run-0/train/model"
    env = {e["name"]: e.get("value") for e in main["env"]}
    assert (env["BASE"], env["DATA"]) == ("/flowd/inputs/run-0/outer/inner", "/flowd/inputs/run-0/prep/data.csv")
    assert {"name": "flowd-inputs", "emptyDir": {}} in spec["volumes"]
    assert "AWS_ACCESS_KEY_ID" in by_name(fetch["env"])


def test_without_a_store_pods_are_unchanged_and_a_folder_store_is_refused() -> None:
    run = {"container": {"image": "t:1", "command": ["true"]}}
    plain = build_pod(op(run), Settings())
    assert [c["name"] for c in plain["spec"]["containers"]] == ["main"] and plain["spec"]["containers"][0]["command"] == ["true"]
    with pytest.raises(ConversionError, match="s3://bucket/prefix"):
        build_pod(op(run), Settings(artifacts_store="/srv/artifacts"))


def test_no_command_or_a_service_gets_no_uploader() -> None:
    image_entrypoint = build_pod(op({"container": {"image": "t:1"}}), SETTINGS)
    assert [c["name"] for c in image_entrypoint["spec"]["containers"]] == ["main"]
    service = build_pod(op({"container": {"image": "t:1", "command": ["serve"]}}, kind="service"), SETTINGS)
    assert [c["name"] for c in service["spec"]["containers"]] == ["main"]


def test_the_default_store_artifacts_step_gets_the_store_settings_or_a_clear_error() -> None:
    run = {"container": {"image": "t:1", "command": ["true"]}, "init": [{"artifacts": {"dirs": ["run-0/train"]}}]}
    pod = build_pod(op(run), SETTINGS)
    (step,) = [c for c in pod["spec"]["initContainers"] if c["name"].startswith("init-0")]
    env = by_name(step["env"])
    assert env["FLOWD_ARTIFACTS_STORE"]["value"] == STORE and "secretKeyRef" in env["AWS_ACCESS_KEY_ID"]["valueFrom"]
    with pytest.raises(ConversionError, match="set artifacts_store"):
        build_pod(op(run), Settings())


def _pod_status(pod: dict[str, Any], phase: str, main: dict[str, Any], uploader: dict[str, Any]) -> dict[str, Any]:
    pod["status"] = {"phase": phase, "containerStatuses": [
        {"name": "main", "state": {"terminated": main}},
        {"name": "flowd-artifacts", "state": {"terminated": uploader} if uploader else {"running": {}}}]}
    return pod


def test_a_succeeded_pod_reports_its_file_outputs_as_store_locations() -> None:
    pod = build_pod(op({"container": {"image": "t:1", "command": ["train"]}}, outputs=["model", "score"]), SETTINGS)
    _pod_status(pod, "Succeeded",
                {"exitCode": 0, "message": json.dumps({"score": 0.9, "log": "/flowd/artifacts/out/logs/a.txt"})},
                {"exitCode": 0, "message": json.dumps({"location": f"{STORE}/run-1/eval", "present": ["logs", "model"]})})
    obs = observe(pod, now=0)
    assert obs.status == S.SUCCEEDED
    assert obs.outputs == {"score": 0.9, "log": f"{STORE}/run-1/eval/logs/a.txt", "model": f"{STORE}/run-1/eval/model"}


def test_the_op_writes_its_outputs_next_to_the_uploader_which_carries_them() -> None:
    pod = build_pod(op({"container": {"image": "t:1", "command": ["train"]}}, outputs=["model"]), SETTINGS)
    main, up = pod["spec"]["containers"]
    env, upenv = {e["name"]: e.get("value") for e in main["env"]}, by_name(up["env"])
    # not the 4 KiB termination message: a file the sidecar reads, checks and hands on
    assert env["FLOWD_OUTPUTS"] == upenv["FLOWD_OUTPUTS"]["value"] == "/flowd/artifacts/outputs.json"
    assert [e["name"] for e in main["env"]].count("FLOWD_OUTPUTS") == 1
    assert upenv["FLOWD_ARTIFACTS_REPORT"]["value"] == "run-1/eval/.flowd/2"  # per attempt
    assert upenv["FLOWD_MAX_OUTPUTS_BYTES"]["value"] == str(1 << 20)
    # the same kwok/kubelet message on both containers: the uploader's report wins
    told = {"location": f"{STORE}/run-1/eval", "present": ["model"], "outputs": {"score": 0.5}}
    _pod_status(pod, "Succeeded", {"exitCode": 0, "message": json.dumps(told)},
                {"exitCode": 0, "message": json.dumps(told)})
    obs = observe(pod, now=0)
    assert (obs.status, obs.outputs) == (S.SUCCEEDED, {"score": 0.5, "model": f"{STORE}/run-1/eval/model"})


def test_a_pointer_to_a_stored_report_is_followed_before_the_success_is_reported() -> None:
    pod = build_pod(op({"container": {"image": "t:1", "command": ["train"]}}, outputs=["model"]), SETTINGS)
    pointer = {"location": f"{STORE}/run-1/eval",
               "report": {"at": f"{STORE}/run-1/eval/.flowd/2/report.json", "bytes": 9000, "sha256": "ab"}}
    _pod_status(pod, "Succeeded", {"exitCode": 0, "message": json.dumps(pointer)},
                {"exitCode": 0, "message": json.dumps(pointer)})
    obs = observe(pod, now=0)
    assert (obs.status, obs.outputs, obs.report) == (S.SUCCEEDED, None, pointer["report"])
    big = {"rows": list(range(2000))}
    done = with_report(pod, {"location": f"{STORE}/run-1/eval", "present": ["model"], "outputs": big})
    assert done.status == S.SUCCEEDED and done.outputs == {**big, "model": f"{STORE}/run-1/eval/model"}
    bad = with_report(pod, {"location": f"{STORE}/run-1/eval", "present": [], "outputs": [1]})
    assert (bad.status, bad.reason) == (S.FAILED, "InvalidOutputs")


def test_a_failed_main_container_fails_the_op_while_the_uploader_still_runs() -> None:
    pod = build_pod(op({"container": {"image": "t:1", "command": ["train"]}}), SETTINGS)
    _pod_status(pod, "Running", {"exitCode": 128, "reason": "StartError",
                                 "message": "exec: \"/bin/sh\": no such file"}, {})
    obs = observe(pod, now=0)
    assert (obs.status, obs.reason, obs.exit_code) == (S.FAILED, "StartError", 128)
    assert (obs.message or "").startswith("image 't:1' has no /bin/sh, which flowd's artifacts wrapper needs")
    # another start error is passed on as the runtime worded it
    _pod_status(pod, "Running", {"exitCode": 128, "reason": "StartError", "message": "permission denied"}, {})
    assert observe(pod, now=0).message == "permission denied"


def test_a_failed_upload_fails_the_pod_with_its_reason() -> None:
    pod = build_pod(op({"container": {"image": "t:1", "command": ["train"]}}), SETTINGS)
    _pod_status(pod, "Failed", {"exitCode": 0}, {"exitCode": 1, "message": "cannot upload the artifacts: denied"})
    obs = observe(pod, now=0)
    assert obs.status == S.FAILED and "flowd-artifacts: cannot upload the artifacts: denied" in (obs.message or "")


def _factory_args(**kw: Any) -> Any:
    import argparse

    base = {"executor": "k8s", "executor_config": None, "kubeconfig": None, "namespace": None, "artifacts_store": None}
    return argparse.Namespace(**{**base, **kw})


def test_flowd_run_on_k8s_takes_an_s3_store_from_the_environment_and_refuses_a_folder(monkeypatch) -> None:
    from flowd.cli.run import _pods_store, executor_factory

    monkeypatch.setenv("FLOWD_ARTIFACTS_STORE", "s3://b/p/")
    monkeypatch.setenv("FLOWD_ARTIFACTS_ENDPOINT", "http://127.0.0.1:9000")
    factory = executor_factory(_factory_args())
    assert (factory.settings.artifacts_store, factory.settings.artifacts_endpoint) == ("s3://b/p/", "http://127.0.0.1:9000")
    assert _pods_store(factory) == "s3://b/p"
    monkeypatch.setenv("FLOWD_ARTIFACTS_STORE", "/srv/folder")  # a folder of this machine: not for pods
    assert _pods_store(executor_factory(_factory_args())) is None
    with pytest.raises(ValueError, match="pods reach only S3"):
        executor_factory(_factory_args(executor_config='{"artifacts_store": "/srv/folder"}'))
