"""The init plan (pure): Polyaxon's paths and names per step kind, and the errors that name the step."""

from __future__ import annotations

from typing import Any

import pytest

from flowd.connections import Connection, ConnectionResource, named
from flowd.initsteps.paths import PathMap
from flowd.initsteps.plan import ARTIFACTS_MOUNT, MAX_STEPS, InitError, dockerfile_text, plan_init

CATALOG = named({
    "repo": Connection(kind="git", schema={"url": "https://git.example/org/repo.git", "revision": "main",
                                           "flags": ["--depth 1"]},
                       secret=ConnectionResource(name="creds", items=["POLYAXON_GIT_CREDENTIALS"])),
    "s3": Connection(kind="s3", schema={"bucket": "s3://datasets"}),
    "nfs": Connection(kind="host_path", schema={"hostPath": "/mnt/nfs", "mountPath": "/nfs"}),
    "api": Connection(kind="custom"),
})


def one(step: dict[str, Any]) -> Any:
    (s,) = plan_init([step], CATALOG).steps
    return s


def test_git_from_a_connection_with_the_step_overriding_revision() -> None:
    s = one({"connection": "repo", "git": {"revision": "v2"}})
    assert (s.kind, s.dest, s.url, s.revision, s.flags) == ("git", f"{ARTIFACTS_MOUNT}/repo",
                                                           "https://git.example/org/repo.git", "v2", ["--depth 1"])
    assert s.connection == "repo" and s.label == "init[0] git 'repo'"


def test_connection_alone_picks_the_handler_by_kind() -> None:
    assert one({"connection": "repo"}).kind == "git"
    s3 = one({"connection": "s3"})
    assert (s3.kind, s3.store, s3.source, s3.dest, s3.copies) == ("artifacts", "s3", "s3://datasets",
                                                                  f"{ARTIFACTS_MOUNT}/s3", [["", "", "dir"]])
    with pytest.raises(InitError, match="connection 'api' of kind 'custom' has no built-in init step"):
        one({"connection": "api"})
    custom = one({"connection": "api", "container": {"image": "tool", "command": ["sync"]}})
    assert (custom.kind, custom.connection, custom.mount) == ("container", "api", ARTIFACTS_MOUNT)


def test_inline_git_url_names_the_folder_and_path_moves_the_volume() -> None:
    s = one({"git": {"url": "https://github.com/org/models.git"}, "path": "/code"})
    assert (s.mount, s.dest, s.connection) == ("/code", "/code/models", None)


def test_file_and_dockerfile_names() -> None:
    assert one({"file": {"content": "x"}}).dest == f"{ARTIFACTS_MOUNT}/file"
    assert one({"file": {"content": "x", "filename": "a.sh", "chmod": "+x"}}).dest == f"{ARTIFACTS_MOUNT}/a.sh"
    assert one({"dockerfile": {"image": "i"}}).dest == f"{ARTIFACTS_MOUNT}/Dockerfile"
    with pytest.raises(InitError, match=r"run.init\[0\].file.filename must be a plain file name"):
        one({"file": {"content": "x", "filename": "../x"}})


def test_artifacts_pairs_and_escapes() -> None:
    s = one({"connection": "nfs", "artifacts": {"files": ["a.csv", ["b/c.csv", "in/c.csv"]], "dirs": ["imgs"]},
             "path": "/data"})
    assert (s.mount, s.dest, s.source) == ("/data", "/data", "/nfs")
    assert s.copies == [["a.csv", "a.csv", "file"], ["b/c.csv", "in/c.csv", "file"], ["imgs", "imgs", "dir"]]
    default = one({"artifacts": {"dirs": ["x"]}})
    assert (default.store, default.dest, default.connection) == ("", ARTIFACTS_MOUNT, None)
    with pytest.raises(InitError, match=r"'\.\./etc' leaves its folder"):
        one({"artifacts": {"dirs": ["../etc"]}})


@pytest.mark.parametrize(("init", "message"), [
    ("x", "run.init must be a list"),
    ([{"git": {"url": "u"}, "dockerfile": {"image": "i"}}], r"init\[0\]: one handler per step, got git, dockerfile"),
    ([{"modelRef": "m:1"}], "model registry references need Polyaxon's API"),
    ([{"git": {}}], r"init\[0\].git: a url is required"),
    ([{"connection": "s3", "git": {}}], "connection 's3' is of kind 's3', not git"),
    ([{"connection": "repo", "artifacts": {}}], "artifacts come from"),
    ([{"file": {"content": "x"}, "path": "rel"}], "path must be an absolute path"),
    ([{}], "a step needs a handler"),
    ([{"file": {"content": "x"}}] * (MAX_STEPS + 1), f"at most {MAX_STEPS}"),
])
def test_errors_name_the_step(init: Any, message: str) -> None:
    with pytest.raises(InitError, match=message):
        plan_init(init, CATALOG)


def test_mounts_are_the_distinct_context_volumes() -> None:
    plan = plan_init([{"file": {"content": "x"}}, {"git": {"url": "u/r"}, "path": "/code"},
                      {"dockerfile": {"image": "i"}}, {"container": {"image": "c"}}], CATALOG)
    assert plan.mounts == [ARTIFACTS_MOUNT, "/code"]


def test_dockerfile_text_has_polyaxons_instructions_in_order() -> None:
    text = dockerfile_text({"image": "python:3.12", "env": {"A": 1}, "path": ["/opt/bin"], "copy": ["req.txt"],
                            "run": ["pip install -r req.txt"], "langEnv": "en_US.UTF-8", "uid": 1000, "gid": 1000})
    lines = [ln for ln in text.splitlines() if ln]
    assert lines == [
        "FROM python:3.12", "ENV LC_ALL en_US.UTF-8", "ENV LANG en_US.UTF-8", "ENV LANGUAGE en_US.UTF-8",
        "ENV SHELL /bin/bash", 'ENV PATH="${PATH}:/opt/bin"', "ENV A 1", "WORKDIR /code", "COPY req.txt /code",
        "RUN pip install -r req.txt", "# Drop root user and use Polyaxon user",
        "RUN groupadd -g 1000 -r polyaxon && useradd -r -m -g polyaxon -u 1000 polyaxon",
    ]


def test_path_map_rewrites_whole_components_only() -> None:
    m = PathMap({"/plx-context": "/tmp/a/ctx", "/data": "/srv/d", "/data/raw": "/mnt/raw"})
    assert m.rewrite("python /plx-context/artifacts/repo/t.py --in=/data/x") == \
        "python /tmp/a/ctx/artifacts/repo/t.py --in=/srv/d/x"
    assert m.rewrite("/data/raw/f /data") == "/mnt/raw/f /srv/d"  # longest prefix wins
    assert m.rewrite("/database /x/data data/y") == "/database /x/data data/y"
    assert PathMap({}).rewrite("/plx-context") == "/plx-context"
