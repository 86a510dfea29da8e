"""PodTemplates: a stamped copy must be exactly the pod build_pod makes for that attempt."""

from __future__ import annotations

from typing import Any

import pytest

from flowd.engine.messages import StartOp
from flowd.k8s.config import Connection, ConnectionResource, Settings
from flowd.k8s.pod import ConversionError, build_pod
from flowd.k8s.templates import PodTemplates
from flowd.spec.compiled import Termination

CONNECTIONS = {
    "s3": Connection(kind="s3", secret=ConnectionResource(name="aws", items=["AWS_KEY"]),
                     env=[{"name": "BUCKET", "value": "s3://b"}]),
    "cfg": Connection(config_map=ConnectionResource(name="settings", mount_path="/etc/cfg")),
    "raw": Connection(secret=ConnectionResource(name="all-keys")),
}

FULL = {
    "container": {
        "name": "trainer", "image": "img:1", "command": "python -m train", "args": ["--lr", 0.1],
        "env": [{"name": "A", "value": 1}, {"name": "LR", "value": "from-container"}],
        "resources": {"limits": {"cpu": "2"}}, "ports": [8080],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    },
    "environment": {
        "labels": {"team": "ml", "flowd.io/run": "not-mine"}, "annotations": {"note": "x", "n": 3},
        "nodeSelector": {"gpu": "true"}, "securityContext": {"runAsUser": 1000}, "schedulerName": "s",
    },
    "init": [{"git": {"url": "https://github.com/org/models.git"}},
             {"container": {"image": "busybox", "command": ["sh", "-c", "echo init"]}}],
    "sidecars": [{"image": "envoy:1", "name": "proxy"}],
    "volumes": [{"name": "data", "emptyDir": {}}],
    "connections": ["s3", "cfg", "raw"],
}

BODIES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("minimal", {"container": {"image": "python:3.12"}}, {}),
    ("full", FULL, {"env": {"LR": "0.5", "EPOCHS": "3"}, "namespace": "ml",
                    "termination": Termination(timeout=90.5, ttl=60)}),
    ("service", {"container": {"image": "nginx"}, "ports": [80, {"port": 443, "targetPort": 8443}]},
     {"kind": "service"}),
]

SETTINGS = Settings(connections=CONNECTIONS, allowed_namespaces=["ml", "default"], partition_count=12,
                    image_pull_policy="IfNotPresent", extra_labels={"env": "prod"}, default_ttl=30)


def attempt(run: dict[str, Any], i: int, **fields: Any) -> StartOp:
    """The i-th attempt of a fan-out: another run, op and attempt number each time."""
    env = {k: f"{v}-{i}" for k, v in fields.pop("env", {}).items()}
    return StartOp(run_id=f"run-{i % 3}", path=f"outer/fan-{i}", attempt=1 + i % 2, key=f"run-{i % 3}/outer/fan-{i}#{1 + i % 2}",
                   kind=fields.pop("kind", "job"), params={}, run=run, env=env, **fields)


@pytest.mark.parametrize(("name", "run", "fields"), BODIES, ids=[b[0] for b in BODIES])
def test_a_stamped_pod_is_the_pod_build_pod_makes(name: str, run: dict[str, Any], fields: dict[str, Any]) -> None:
    templates = PodTemplates(SETTINGS)
    for i in range(6):
        cmd = attempt(run, i, **dict(fields))
        assert templates.build(cmd) == build_pod(cmd, SETTINGS)
    assert templates.stats == {"builds": 1, "hits": 5}


def test_building_a_pod_leaves_the_runtime_body_alone() -> None:
    """The body is the engine's (StartOp.run); hardening used to fill its securityContexts in."""
    import copy

    run = copy.deepcopy(FULL)
    run["container"]["securityContext"] = {"runAsUser": 1000, "capabilities": {"add": []}}
    before = copy.deepcopy(run)
    build_pod(attempt(run, 0), SETTINGS)
    assert run == before


def test_each_pod_is_its_own_copy() -> None:
    templates = PodTemplates(SETTINGS)
    first = templates.build(attempt(FULL, 0))
    first["spec"]["containers"][0]["env"].clear()
    first["metadata"]["labels"]["x"] = "y"
    cmd = attempt(FULL, 1)
    assert templates.build(cmd) == build_pod(cmd, SETTINGS)


def test_other_bodies_other_templates() -> None:
    templates = PodTemplates(SETTINGS)
    for image in ("a", "b", "a"):
        cmd = attempt({"container": {"image": image}}, 0)
        assert templates.build(cmd)["spec"]["containers"][0]["image"] == image
    # env names are part of the key (their positions are); their values are stamped
    cmd = attempt({"container": {"image": "a"}}, 1, env={"X": "1"})
    assert templates.build(cmd) == build_pod(cmd, SETTINGS)
    assert templates.stats == {"builds": 3, "hits": 1}


@pytest.mark.parametrize("name", ["FLOWD_RUN_ID", "FLOWD_CONTEXT"])
def test_env_a_later_merge_overrides_is_never_stamped(name: str) -> None:
    """A toEnv param named like flowd's own env: the pod keeps flowd's value, so a template
    would stamp the wrong one; such bodies are built in full every time."""
    run = {"container": {"image": "x"}, "init": [{"git": {"url": "https://github.com/org/m.git"}}]}
    templates = PodTemplates(SETTINGS)
    for i in range(3):
        cmd = attempt(run, i, env={name: "mine"})
        assert templates.build(cmd) == build_pod(cmd, SETTINGS)
    assert templates.stats == {"builds": 3, "hits": 0}


def test_pods_with_the_artifact_store_are_built_in_full() -> None:
    """The upload sidecar's prefix names the run and the op."""
    settings = Settings(artifacts_store="s3://bucket/team")
    templates = PodTemplates(settings)
    run = {"container": {"image": "x", "command": ["train"]}}
    pods = [templates.build(attempt(run, i)) for i in range(3)]
    assert pods == [build_pod(attempt(run, i), settings) for i in range(3)]
    assert not templates.enabled and templates.stats == {"builds": 0, "hits": 0}


def test_a_bad_body_fails_every_attempt() -> None:
    templates = PodTemplates(SETTINGS)
    run = {"container": {"image": "x", "securityContext": {"privileged": True}}}
    for i in range(2):
        with pytest.raises(ConversionError, match="privileged"):
            templates.build(attempt(run, i))


def test_at_most_size_templates() -> None:
    templates = PodTemplates(SETTINGS, size=2)
    for image in ("a", "b", "c", "a"):
        templates.build(attempt({"container": {"image": image}}, 0))
    assert templates.stats == {"builds": 4, "hits": 0}  # "a" went first
    assert len(templates._cache) == 2
