from __future__ import annotations

from pathlib import Path

import pytest

from flowd.cli import build_parser
from flowd.daemon.config import load_config
from flowd.daemon.http import route


def test_precedence_file_env_flags(tmp_path: Path) -> None:
    f = tmp_path / "flowd.toml"
    f.write_text('brokers = "file:1"\nprefix = "p."\nsnapshot_interval = 5.0\nexecutor_config = {grace = 2}\n')
    env = {"FLOWD_BROKERS": "env:2", "FLOWD_PARTITIONS": "12", "FLOWD_CREATE_TOPICS": "false"}
    c = load_config(file=str(f), env=env, overrides={"prefix": "flag.", "group_id": None})
    assert (c.brokers, c.prefix, c.partitions, c.snapshot_interval, c.create_topics) == ("env:2", "flag.", 12, 5.0, False)
    assert c.executor_config == {"grace": 2} and c.group_id == "flowd"
    assert c.topics.runs == "flag.runs" and c.topics.snapshots == "flag.snapshots"


def test_unknown_config_keys_are_rejected(tmp_path: Path) -> None:
    f = tmp_path / "flowd.toml"
    f.write_text('brokerz = "x"\n')
    with pytest.raises(Exception, match="brokerz"):
        load_config(file=str(f), env={})


@pytest.mark.parametrize("command", ["serve", "submit", "status", "stop", "events", "replay"])
def test_commands_are_registered(command: str) -> None:
    parser = build_parser()
    argv = {"serve": ["serve"], "submit": ["submit", "f.yaml"], "status": ["status", "r"], "stop": ["stop", "r"],
            "events": ["events"], "replay": ["replay", "--partition", "0"]}[command]
    assert parser.parse_args(argv).command == command


def test_k8s_executor_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import anyio

    from flowd.daemon.executors import ExecutorUnavailable, open_executor

    monkeypatch.setitem(sys.modules, "flowd.k8s.executor", None)  # as if the module were absent

    async def main() -> None:
        async with open_executor("k8s", send=lambda s: None, state_dir=Path(".")):
            pass

    with pytest.raises(ExecutorUnavailable, match=r"flowd\.k8s\.executor"):
        anyio.run(main)


def test_http_routes() -> None:
    from flowd.daemon.metrics import Metrics

    registry = Metrics().registry

    def ready() -> tuple[bool, str]:
        return True, "ready: 2 partition(s)"

    def recovering() -> tuple[bool, str]:
        return False, "not ready: recovering partitions [1]"

    assert route(ready, registry, "/healthz").startswith(b"HTTP/1.0 200")
    assert route(recovering, registry, "/healthz").startswith(b"HTTP/1.0 200")
    answer = route(ready, registry, "/readyz")
    assert answer.startswith(b"HTTP/1.0 200") and answer.endswith(b"ready: 2 partition(s)\n")
    answer = route(recovering, registry, "/readyz")
    assert answer.startswith(b"HTTP/1.0 503") and b"recovering partitions [1]" in answer
    metrics = route(ready, registry, "/metrics")
    assert metrics.startswith(b"HTTP/1.0 200") and b"flowd_transactions_total" in metrics
    assert route(ready, registry, "/nope").startswith(b"HTTP/1.0 404")


def test_the_deployed_configmap_is_a_valid_daemon_config(tmp_path: Path) -> None:
    import yaml

    configmap = Path(__file__).resolve().parents[3] / "deploy" / "base" / "configmap.yaml"
    if not configmap.exists():
        pytest.skip("no deploy/base/configmap.yaml")
    f = tmp_path / "flowd.toml"
    f.write_text(yaml.safe_load(configmap.read_text())["data"]["flowd.toml"])
    c = load_config(file=str(f), env={})
    assert c.executor in ("local", "k8s", "instant")
