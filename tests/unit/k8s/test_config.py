"""The executor's settings as the daemon passes them (its TOML ``[executor_config]`` table)."""

from __future__ import annotations

import tomllib

import msgspec
import pytest

from flowd.k8s.config import Settings

TOML = """
[executor_config]
namespace = "ml"
watch_namespaces = ["ml", "ml-gpu"]
qps = 50.0
burst = 100
default_ttl = 600.0

[executor_config.connections.s3]
kind = "s3"
secret = {name = "aws", items = ["AWS_ACCESS_KEY_ID"]}
env = [{name = "BUCKET", value = "s3://b"}]

[executor_config.connections.data]
kind = "volume_claim"
schema = {volumeClaim = "pvc", mountPath = "/data"}
configMap = {name = "cfg", mountPath = "/etc/cfg"}
"""


def test_from_daemon_toml() -> None:
    settings = Settings.from_config(tomllib.loads(TOML)["executor_config"])
    assert settings.namespace == "ml" and settings.watch_namespaces == ["ml", "ml-gpu"]
    assert (settings.qps, settings.burst, settings.default_ttl) == (50.0, 100, 600.0)
    s3 = settings.connections["s3"]
    assert s3.secret is not None and s3.secret.items == ["AWS_ACCESS_KEY_ID"]
    data = settings.connections["data"]
    assert data.schema == {"volumeClaim": "pvc", "mountPath": "/data"}
    assert data.config_map is not None and data.config_map.mount_path == "/etc/cfg"


def test_unknown_keys_are_errors() -> None:
    with pytest.raises(msgspec.ValidationError, match="qsp"):
        Settings.from_config({"qsp": 10})


def test_deploy_configmap_is_valid() -> None:
    """deploy/base/configmap.yaml's flowd.toml parses and its executor_config is accepted."""
    from pathlib import Path

    import yaml

    cm = yaml.safe_load((Path(__file__).resolve().parents[3] / "deploy/base/configmap.yaml").read_text())
    doc = tomllib.loads(cm["data"]["flowd.toml"])
    assert doc["executor"] == "k8s"
    Settings.from_config(doc["executor_config"])
    try:
        from flowd.daemon.config import DaemonConfig
    except ImportError:  # the daemon is developed alongside
        return
    msgspec.convert(doc, DaemonConfig)
