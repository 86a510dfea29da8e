"""The compacted per-run status view (topic ``status``) against the real broker: written with
the events, read by ``flowd runs --daemon`` and ``flowd status``."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from flowd.daemon.client import run_summaries
from flowd.daemon.testing import test_config
from tests.integration.test_daemon_inprocess import compiled, serving, submit

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.asyncio(loop_scope="session")]


async def test_status_view_holds_one_latest_summary_per_run(kafka_broker, tmp_path: Path, capfd) -> None:
    from flowd.cli import main

    config = test_config(kafka_broker.bootstrap, name="view", state_dir=str(tmp_path))
    bus = ["--brokers", config.brokers, "--prefix", config.prefix]
    async with serving(config) as (_daemon, events):
        run_ids = [await submit(config, compiled()) for _ in range(3)]
        for run_id in run_ids:
            await events.wait_done(run_id)
        # the summary is committed with the run's final events
        summaries = await run_summaries(config)
        assert set(summaries) == set(run_ids)
        one = (await run_summaries(config, run_id=run_ids[0]))[run_ids[0]]
        assert one.status == "succeeded" and one.pipeline == "chain" and one.finished_at is not None
        assert {p: o.status for p, o in one.ops.items()} == {"a": "succeeded", "b": "succeeded", "c": "succeeded"}
        assert one.counts == {"succeeded": 3}
        capfd.readouterr()
        assert await anyio.to_thread.run_sync(main, ["runs", "--daemon", "--output", "json", *bus]) == 0
        listed = json.loads(capfd.readouterr().out)["runs"]
        assert {r["run_id"] for r in listed} == set(run_ids) and {r["status"] for r in listed} == {"succeeded"}
        assert await anyio.to_thread.run_sync(main, ["runs", "--daemon", "--status", "failed", "-o", "json", *bus]) == 0
        assert json.loads(capfd.readouterr().out)["runs"] == []
        assert await anyio.to_thread.run_sync(main, ["status", run_ids[1], "--output", "json", *bus]) == 0
        view = json.loads(capfd.readouterr().out)
        assert view["status"] == "succeeded" and view["done"] and view["ops"]["c"]["status"] == "succeeded"
