"""Init steps on the real apiserver (kwok runs no containers): the pod flowd creates for an op
with git, file, artifacts and container init steps is accepted by the apiserver's validation and
read back with the init containers, context volumes and secret references flowd meant; the op
then runs to its end through kwok like any other. What the steps do inside a container is the
same code ``flowd run`` runs (tests/integration/test_init_local.py)."""

from __future__ import annotations

import asyncio
import json

import pytest
from kubernetes_asyncio import client

from flowd.k8s import naming as N
from flowd.k8s.harness import Harness
from tests.integration.k8s_helpers import dag, executor, job, outcome, submit, untaint_nodes

pytestmark = [pytest.mark.integration, pytest.mark.k8s, pytest.mark.asyncio(loop_scope="session")]

CONNECTIONS = {
    "models": {"kind": "git", "schema": {"url": "http://git.example.invalid/models.git", "revision": "v2"},
               "secret": {"name": "git-creds", "items": ["POLYAXON_GIT_CREDENTIALS"]}},
    # (a host path: the test cluster has no volume controller to bind a claim)
    "data": {"kind": "host_path", "schema": {"hostPath": "/srv/datasets", "mountPath": "/datasets"}},
}


@pytest.fixture(autouse=True)
def _schedulable(k8s_cluster):
    untaint_nodes(k8s_cluster)


async def test_init_steps_become_init_containers_the_apiserver_accepts(k8s_cluster, k8s_namespace, k8s_api):
    run = {
        "container": {"image": "trainer:1", "command": ["python", "train.py"], "workingDir": "/plx-context/artifacts/models"},
        "init": [
            {"connection": "models"},
            {"file": {"filename": "run.sh", "chmod": "+x", "content": "echo hi"}},
            {"connection": "data", "artifacts": {"dirs": ["train"]}, "path": "/data"},
            {"container": {"name": "warm", "image": "busybox:1.36", "command": ["true"]}},
        ],
    }
    pipeline = dag("init", [job("train", annotations=outcome(), run=run)])
    h = Harness()
    v1 = client.CoreV1Api(k8s_api)
    async with executor(k8s_cluster, k8s_namespace, h, default_ttl=None, init_image="flowd:it",
                        connections=CONNECTIONS) as ex:
        views = await asyncio.wait_for(h.run(ex, submit("r-init", pipeline)), 60)
        assert views["r-init"].ops["train"].status == "succeeded"
        pod = await v1.read_namespaced_pod(N.pod_name("r-init", "train", 1), k8s_namespace)
    inits = pod.spec.init_containers
    assert [c.name for c in inits] == ["init-0-git-models", "init-1-file", "init-2-artifacts-data", "warm"]
    assert [c.image for c in inits] == ["flowd:it"] * 3 + ["busybox:1.36"]
    step = json.loads(inits[0].args[1])
    assert (inits[0].command, inits[0].args[0]) == (["python", "-m", "flowd.initsteps"], "step")
    assert (step["url"], step["revision"], step["dest"]) == ("http://git.example.invalid/models.git", "v2",
                                                             "/plx-context/artifacts/models")
    (cred,) = [e for e in inits[0].env if e.name == "POLYAXON_GIT_CREDENTIALS"]
    assert (cred.value, cred.value_from.secret_key_ref.name) == (None, "git-creds")
    volumes = {v.name: v for v in pod.spec.volumes}
    assert volumes["artifacts-context"].empty_dir is not None
    assert volumes["c-v-data"].host_path.path == "/srv/datasets"
    main = pod.spec.containers[0]
    assert {m.mount_path for m in main.volume_mounts} == {"/plx-context/artifacts", "/data"}
    assert "POLYAXON_GIT_CREDENTIALS" not in {e.name for e in main.env}
    assert {m.mount_path for m in inits[2].volume_mounts} == {"/data", "/datasets"}
    # flowd's init containers run as the restricted pod policy asks, like every container
    assert all(c.security_context.allow_privilege_escalation is False for c in inits[:3])


async def test_an_init_step_flowd_cannot_run_fails_the_op_before_any_pod(k8s_cluster, k8s_namespace, k8s_api):
    pipeline = dag("bad-init", [job("train", annotations=outcome(), run={"init": [{"connection": "nope"}]})])
    h = Harness()
    async with executor(k8s_cluster, k8s_namespace, h, connections=CONNECTIONS) as ex:
        views = await asyncio.wait_for(h.run(ex, submit("r-bad-init", pipeline)), 30)
    op = views["r-bad-init"].ops["train"]
    assert op.status == "failed"
    assert "run.init[0]: unknown connection 'nope' (known: data, models)" in (op.message or "")
