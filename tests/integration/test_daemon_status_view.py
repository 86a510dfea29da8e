"""The compacted per-run status view (topic ``status``) against the real broker: written with
the events, read by ``flowd runs --daemon`` and ``flowd status``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

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
        # the run's DAG with its statuses, drawn from the status view
        assert await anyio.to_thread.run_sync(main, ["graph", run_ids[0], "--daemon", *bus]) == 0
        assert [line.split() for line in capfd.readouterr().out.splitlines()] == [
            ["pipeline", "chain:", "succeeded"], ["a", "job", "succeeded"], ["b", "job", "succeeded", "after", "a"],
            ["c", "job", "succeeded", "after", "b"]]
        assert await anyio.to_thread.run_sync(main, ["graph", "no-such-run", "--daemon", *bus]) == 1
        assert "no run 'no-such-run'" in capfd.readouterr().err
        # --pipeline globs as for local runs
        for pattern, found in (("ch?in", 3), ("*ai*", 3), ("cha", 0), ("other,c*", 3)):
            assert await anyio.to_thread.run_sync(main, ["runs", "--daemon", "--pipeline", pattern, "-o", "json", *bus]) == 0
            assert len(json.loads(capfd.readouterr().out)["runs"]) == found, pattern
        # text: the local table, CREATED with its UTC offset
        assert await anyio.to_thread.run_sync(main, ["runs", "--daemon", *bus]) == 0
        table = capfd.readouterr().out.splitlines()
        assert table[0].split() == ["RUN", "STATUS", "PIPELINE", "CREATED", "TOOK", "OPS"] and len(table) == 4
        assert all(re.search(r"  succeeded +chain +\S+ \S+ [+-]\d\d:\d\d  ", row) for row in table[1:]), table
        assert await anyio.to_thread.run_sync(main, ["status", run_ids[1], "--output", "json", *bus]) == 0
        view = json.loads(capfd.readouterr().out)
        assert view["status"] == "succeeded" and view["done"] and view["ops"]["c"]["status"] == "succeeded"


async def test_the_ui_over_kafka_lists_runs_shows_ops_and_stops_a_run(kafka_broker, tmp_path: Path) -> None:
    import threading
    import urllib.request

    from flowd.ui.kafka import KafkaBackend
    from flowd.ui.server import make_server
    from tests.integration.test_daemon_inprocess import CHAIN

    config = test_config(kafka_broker.bootstrap, name="uiview", state_dir=str(tmp_path))
    held = CHAIN.replace("name: chain", "name: held").replace("{name: a, component:", "{name: a, isApproved: false, component:")
    server = make_server(KafkaBackend(config), "127.0.0.1", 0, token="t0ken")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"

    def get(path: str, method: str = "GET") -> Any:
        request = urllib.request.Request(base + path, method=method, data=b"" if method == "POST" else None,
                                         headers={"Authorization": "Bearer t0ken"})
        with urllib.request.urlopen(request, timeout=30) as resp:
            return json.loads(resp.read())

    try:
        async with serving(config) as (_daemon, events):
            done_id = await submit(config, compiled())
            await events.wait_done(done_id)
            held_id = await submit(config, compiled(held))
            await events.wait_for(lambda: [e for e in events.of(held_id) if e.path == "" and e.status == "running"])
            runs = await anyio.to_thread.run_sync(get, "/api/runs")
            assert {r["run_id"]: r["status"] for r in runs["runs"]} == {done_id: "succeeded", held_id: "running"}
            detail = await anyio.to_thread.run_sync(get, f"/api/runs/{done_id}")
            assert {n["path"]: n["status"] for n in detail["graph"]["nodes"]} == {"a": "succeeded", "b": "succeeded",
                                                                                 "c": "succeeded"}
            assert {b["path"] for b in detail["layout"]["boxes"]} == {"a", "b", "c"}
            await anyio.to_thread.run_sync(get, f"/api/runs/{held_id}/stop", "POST")
            assert (await events.wait_done(held_id)).status == "stopped"
    finally:
        server.shutdown()
        server.server_close()


async def test_gc_daemon_forgets_finished_runs_beyond_the_retention(kafka_broker, tmp_path: Path, capfd) -> None:
    """``flowd gc --daemon``: tombstones for the finished runs past the retention, the latest of
    each pipeline kept; ``--dry-run`` forgets nothing."""
    from flowd.cli import main

    config = test_config(kafka_broker.bootstrap, name="gcview", state_dir=str(tmp_path))
    bus = ["--brokers", config.brokers, "--prefix", config.prefix]
    async with serving(config) as (_daemon, events):
        run_ids = []
        for _ in range(3):
            run_ids.append(await submit(config, compiled()))
            await events.wait_done(run_ids[-1])
        capfd.readouterr()
        gc = ["gc", "--daemon", "--keep-days", "0", "--keep-last", "1", *bus]
        assert await anyio.to_thread.run_sync(main, [*gc, "--dry-run"]) == 0
        assert sorted(ln.split()[-1] for ln in capfd.readouterr().out.splitlines()) == sorted(run_ids[:2])
        assert set(await run_summaries(config)) == set(run_ids)
        assert await anyio.to_thread.run_sync(main, gc) == 0
        out = capfd.readouterr()
        assert "2 daemon run(s) forgotten" in out.err
        assert set(await run_summaries(config)) == {run_ids[2]}
        assert await anyio.to_thread.run_sync(main, ["runs", "--daemon", "--output", "json", *bus]) == 0
        assert [r["run_id"] for r in json.loads(capfd.readouterr().out)["runs"]] == [run_ids[2]]
