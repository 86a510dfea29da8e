"""deploy/monitoring against the metrics a live daemon (real broker) exposes, with promtool built
from the Go module proxy (`python -m tests.infra build promtool`): the scrape passes
`promtool check metrics`; every metric the alert rules and the Grafana dashboard name is in the
scrape; the rules pass `promtool check rules` and their unit tests (`promtool test rules`)."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
from pathlib import Path

import anyio
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from flowd.daemon.testing import test_config
from tests.infra import promtool
from tests.integration.test_daemon_inprocess import compiled, serving, submit

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.asyncio(loop_scope="session")]

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
# PromQL words that are not metric names
PROMQL = {"sum", "by", "rate", "increase", "histogram_quantile", "max", "min", "count", "avg", "without",
          "on", "ignoring", "and", "or", "unless", "le", "bool", "offset"}


@pytest.fixture(scope="module")
def promtool_bin() -> Path:
    if promtool.missing():
        pytest.skip(f"promtool missing: run `python -m tests.infra build promtool` ({promtool.promtool_bin()})")
    return promtool.promtool_bin()


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers outside label matchers and strings."""
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", " ", expr)
    bare = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", bare)
    return {w for w in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", bare) if w not in PROMQL}


def rule_exprs() -> list[str]:
    rules = yaml.safe_load((MONITORING / "flowd-alerts.yaml").read_text())
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


def dashboard_exprs() -> list[str]:
    dash = json.loads((MONITORING / "flowd-dashboard.json").read_text())
    return [t["expr"] for p in dash["panels"] for t in p["targets"]]


async def test_metric_names_are_read_from_promql() -> None:  # async: the module-wide asyncio mark
    assert metric_names('sum by (partition) (rate(flowd_x_total{a="b"}[5m])) / on (i) flowd_y > 0.5') == {
        "flowd_x_total", "flowd_y"}


async def scrape(port: int) -> str:
    stream = await anyio.connect_tcp("127.0.0.1", port)
    body = b""
    async with stream:
        await stream.send(b"GET /metrics HTTP/1.0\r\n\r\n")
        with contextlib.suppress(anyio.EndOfStream):
            while True:
                body += await stream.receive()
    return body.split(b"\r\n\r\n", 1)[1].decode()


async def test_rules_and_dashboard_match_a_live_daemon(kafka_broker, tmp_path: Path, promtool_bin: Path) -> None:
    config = test_config(kafka_broker.bootstrap, name="monitoring", state_dir=str(tmp_path))
    async with serving(config) as (daemon, events):
        run_id = await submit(config, compiled())
        assert (await events.wait_done(run_id)).status == "succeeded"
        text = await scrape(daemon.http_port)

    check = subprocess.run([str(promtool_bin), "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), check.stdout + check.stderr

    exposed = {s.name for fam in text_string_to_metric_families(text) for s in fam.samples}
    used = set().union(*(metric_names(e) for e in rule_exprs() + dashboard_exprs()))
    assert used, "no metric found in the rules and the dashboard"
    assert sorted(used - exposed) == [], "names the rules/dashboard use that the daemon does not expose"

    rules = subprocess.run([str(promtool_bin), "check", "rules", "flowd-alerts.yaml"], cwd=MONITORING,
                           capture_output=True, text=True)
    assert rules.returncode == 0, rules.stdout + rules.stderr
    tested = subprocess.run([str(promtool_bin), "test", "rules", "flowd-alerts.test.yaml"], cwd=MONITORING,
                            capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr
