"""Init steps as init containers (flowd.k8s.pod over flowd.initsteps.plan): the flowd image runs
the built-in steps with Polyaxon's paths; the main container mounts the same context volumes;
a step's connection brings its secret to that init container only."""

from __future__ import annotations

import json
from typing import Any

from flowd.engine import StartOp
from flowd.initsteps.plan import Step
from flowd.k8s.config import Connection, ConnectionResource, Settings
from flowd.k8s.pod import build_pod


def op(run: dict[str, Any]) -> StartOp:
    return StartOp(run_id="run-1", path="train", attempt=1, key="run-1/train/1", kind="job", params={}, run=run)


SETTINGS = Settings(init_image="flowd:test", connections={
    "repo": Connection(kind="git", schema={"url": "http://git.local/repo.git", "revision": "main"},
                       secret=ConnectionResource(name="git-creds", items=["POLYAXON_GIT_CREDENTIALS"])),
    "data": Connection(kind="volume_claim", schema={"volumeClaim": "datasets", "mountPath": "/datasets"}),
})


def step_of(container: dict[str, Any]) -> Step:
    import msgspec

    assert container["command"] == ["python", "-m", "flowd.initsteps"] and container["args"][0] == "step"
    return msgspec.json.decode(container["args"][1].encode(), type=Step)


def test_built_in_steps_run_in_the_flowd_image_with_polyaxon_paths() -> None:
    run = {
        "container": {"image": "trainer:1", "command": ["python", "/plx-context/artifacts/repo/train.py"]},
        "init": [
            {"connection": "repo", "git": {"revision": "v2"}},
            {"file": {"filename": "run.sh", "chmod": "+x", "content": "echo hi"}},
            {"dockerfile": {"image": "python:3.12", "run": ["pip install x"]}, "path": "/build"},
            {"connection": "data", "artifacts": {"dirs": ["train"]}, "container": {"resources": {"limits": {"cpu": "1"}}}},
            {"container": {"name": "custom", "image": "busybox", "command": ["true"]}},
        ],
    }
    spec = build_pod(op(run), SETTINGS)["spec"]
    inits = spec["initContainers"]
    assert [c["name"] for c in inits] == ["init-0-git-repo", "init-1-file", "init-2-dockerfile",
                                          "init-3-artifacts-data", "custom"]
    assert all(c["image"] == "flowd:test" for c in inits[:4])
    git, file, docker, arts = (step_of(c) for c in inits[:4])
    assert (git.url, git.revision, git.dest) == ("http://git.local/repo.git", "v2", "/plx-context/artifacts/repo")
    assert (file.dest, file.chmod, file.content) == ("/plx-context/artifacts/run.sh", "+x", "echo hi")
    assert docker.dest == "/build/Dockerfile" and docker.content is not None
    assert docker.content.startswith("FROM python:3.12\n") and "RUN pip install x" in docker.content
    assert (arts.dest, arts.source, arts.copies) == ("/plx-context/artifacts/data", "/datasets", [["train", "train", "dir"]])
    # the git step's secret reaches its init container only, by reference (never a value)
    env = {e["name"]: e for e in inits[0]["env"]}
    assert env["POLYAXON_GIT_CREDENTIALS"] == {"name": "POLYAXON_GIT_CREDENTIALS", "valueFrom": {
        "secretKeyRef": {"name": "git-creds", "key": "POLYAXON_GIT_CREDENTIALS"}}}
    main = spec["containers"][0]
    assert "POLYAXON_GIT_CREDENTIALS" not in {e["name"] for e in main["env"]}
    assert {e["name"]: e.get("value") for e in main["env"]}["FLOWD_CONTEXT"] == "/plx-context"
    # context volumes: emptyDirs, mounted by the steps that write them and by the main container
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["artifacts-context"] == {"name": "artifacts-context", "emptyDir": {}}
    build = [name for name in volumes if name.startswith("connections-context-")]
    assert len(build) == 1
    mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
    assert mounts == {"/plx-context/artifacts": "artifacts-context", "/build": build[0]}
    assert {m["mountPath"] for m in inits[0]["volumeMounts"]} == {"/plx-context/artifacts"}
    # the volume connection is mounted where the artifacts step reads it; the patch applies
    assert {m["mountPath"] for m in inits[3]["volumeMounts"]} == {"/plx-context/artifacts", "/datasets"}
    assert inits[3]["resources"] == {"limits": {"cpu": "1"}}
    assert volumes["c-v-data"]["persistentVolumeClaim"]["claimName"] == "datasets"
    # a user's container step sees every context volume
    assert {m["mountPath"] for m in inits[4]["volumeMounts"]} == {"/plx-context/artifacts", "/build"}
    # failures carry the step's message to the pod status
    assert all(c["terminationMessagePolicy"] == "FallbackToLogsOnError" for c in inits[:4])
    json.dumps(spec)  # plain JSON


def test_inline_git_url_names_the_folder_and_the_step() -> None:
    spec = build_pod(op({"container": {"image": "x"}, "init": [{"git": {"url": "https://github.com/org/models.git"}}]}),
                     SETTINGS)["spec"]
    c = spec["initContainers"][0]
    assert c["name"] == "init-0-git-models"
    assert step_of(c).dest == "/plx-context/artifacts/models"
    assert "env" not in c  # no connection, no secret


def test_no_init_no_context_volume() -> None:
    spec = build_pod(op({"container": {"image": "x"}}), SETTINGS)["spec"]
    assert "initContainers" not in spec and "volumes" not in spec
