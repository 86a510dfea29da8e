"""The daemon in this process against the real broker: flow, dead letters, invalid submissions,
event triggers, metrics/readiness. Crash and scale-out tests (subprocesses) are in
test_daemon_recovery.py."""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from aiokafka import AIOKafkaProducer

from flowd.daemon import wire
from flowd.daemon.client import publish, run_status
from flowd.daemon.config import DaemonConfig
from flowd.daemon.serve import Daemon
from flowd.daemon.testing import EventCollector, read_all, test_config
from flowd.daemon.triggers import derived_run_id
from flowd.spec import compile_text

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.asyncio(loop_scope="session")]

CHAIN = """
version: 1.1
kind: component
name: chain
run:
  kind: dag
  operations:
    - {name: a, component: {run: {kind: job, container: {image: x, command: [sh, -c, "true"]}}}}
    - {name: b, dependencies: [a], component: {run: {kind: job, container: {image: x, command: [sh, -c, "true"]}}}}
    - {name: c, dependencies: [b], component: {run: {kind: job, container: {image: x, command: [sh, -c, "true"]}}}}
"""


def uuids(text: str) -> list[str]:
    """Run ids printed by a command (the daemon's own log lines share stdout in tests)."""
    return re.findall(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", text, re.M)


def compiled(text: str = CHAIN):
    result = compile_text(text, source="test.yaml", base_dir=None)
    assert result.valid, result.errors
    return result.op


@contextlib.asynccontextmanager
async def serving(config: DaemonConfig) -> AsyncIterator[tuple[Daemon, EventCollector]]:
    daemon = Daemon(config)
    events = EventCollector(config)
    async with anyio.create_task_group() as tg:
        await tg.start(daemon.run)
        with anyio.fail_after(30):
            await daemon.wait_ready()
        await tg.start(events.run)
        try:
            yield daemon, events
        finally:
            tg.cancel_scope.cancel()


async def submit(config: DaemonConfig, pipeline=None, *, spec: str | None = None, run_id: str | None = None) -> str:
    run_id = run_id or str(uuid.uuid4())
    msg = wire.Submission(run_id=run_id, time=time.time(), pipeline=pipeline, spec=spec, source="test.yaml")
    await publish(config, config.topics.runs, run_id, msg)
    return run_id


async def test_pipeline_completes_with_one_completion_event(kafka_broker, tmp_path: Path) -> None:
    config = test_config(kafka_broker.bootstrap, name="flow", state_dir=str(tmp_path))
    async with serving(config) as (daemon, events):
        run_ids = [await submit(config, compiled()) for _ in range(5)]
        for run_id in run_ids:
            done = await events.wait_done(run_id)
            assert done.status == "succeeded" and done.pipeline == "chain"
            ops = {e.path: e.status for e in events.of(run_id) if isinstance(e, wire.StatusEvent) and e.path}
            assert ops == {"a": "succeeded", "b": "succeeded", "c": "succeeded"}
        keys = [e.key for e in events.events]
        assert len(keys) == len(set(keys)), "an event key was emitted twice"
        view = await run_status(config, run_ids[0])
        assert view is not None and view["status"] == "succeeded" and view["done"]
        # /metrics and /readyz answer
        stream = await anyio.connect_tcp("127.0.0.1", daemon.http_port)
        async with stream:
            await stream.send(b"GET /metrics HTTP/1.0\r\n\r\n")
            body = b""
            with contextlib.suppress(anyio.EndOfStream):
                while True:
                    body += await stream.receive()
        assert b"flowd_transitions_total" in body and b"flowd_transactions_total" in body
        assert b'flowd_runs{phase="succeeded"} 5.0' in body
        assert b"run_id" not in body
        # phases and outcomes at 0, durations, process metrics, build info, real HELP texts
        assert b'flowd_runs{phase="failed"} 0.0' in body and b'flowd_transactions_total{outcome="aborted"} 0.0' in body
        assert b'flowd_run_duration_seconds_count{status="succeeded"} 5.0' in body
        # the instant executor reports ops done without a running phase: no op start, no duration
        assert b"# TYPE flowd_op_duration_seconds histogram" in body
        assert b"process_resident_memory_bytes" in body and b"python_gc_collections_total" in body
        assert b'flowd_build_info{version="' in body
        assert b"# HELP flowd_runs Pipeline runs held" in body


async def test_poison_message_is_dead_lettered_and_the_partition_keeps_flowing(kafka_broker, tmp_path: Path) -> None:
    config = test_config(kafka_broker.bootstrap, name="poison", state_dir=str(tmp_path), partitions=1)
    async with serving(config) as (_daemon, events):
        producer = AIOKafkaProducer(bootstrap_servers=config.brokers)
        await producer.start()
        try:
            bad = await producer.send_and_wait(config.topics.runs, b"\x00not json{", key=b"junk")
            invalid = await producer.send_and_wait(config.topics.runs, b'{"type": "submit", "time": "soon"}', key=b"x")
        finally:
            await producer.stop()
        run_id = await submit(config, compiled())
        assert (await events.wait_done(run_id)).status == "succeeded"
        producer = AIOKafkaProducer(bootstrap_servers=config.brokers)
        await producer.start()
        try:
            ext = await producer.send_and_wait(config.topics.external, b"[1, 2", key=b"connections.x")
        finally:
            await producer.stop()
        with anyio.fail_after(20):
            while len(dead := [wire.decode_deadletter(r.value)
                               for r in await read_all(config, config.topics.deadletter)]) < 3:
                await anyio.sleep(0.2)
        runs_dead = sorted((d for d in dead if d.topic == config.topics.runs), key=lambda d: d.offset)
        assert [(d.reason, d.offset, d.value) for d in runs_dead] == [
            ("undecodable", bad.offset, b"\x00not json{"),
            ("invalid", invalid.offset, b'{"type": "submit", "time": "soon"}'),
        ]
        assert all(d.partition == 0 and d.error for d in runs_dead)
        [ext_dead] = [d for d in dead if d.topic == config.topics.external]
        assert (ext_dead.offset, ext_dead.value, ext_dead.key) == (ext.offset, b"[1, 2", b"connections.x")


async def test_invalid_submission_fails_with_check_messages(kafka_broker, tmp_path: Path) -> None:
    config = test_config(kafka_broker.bootstrap, name="invalid", state_dir=str(tmp_path))
    spec = CHAIN.replace("dependencies: [b]", "dependencies: [nope]")
    async with serving(config) as (_daemon, events):
        run_id = await submit(config, spec=spec)
        done = await events.wait_done(run_id)
        assert done.status == "failed"
        assert done.diagnostics and any("nope" in d.message for d in done.diagnostics)
        assert "nope" in (done.message or "")
        # a valid spec sent as text is compiled by the daemon and runs
        ok = await submit(config, spec=CHAIN)
        assert (await events.wait_done(ok)).status == "succeeded"


SUBSCRIBED = """
version: 1.1
kind: component
name: on-commit
events:
  - {ref: connections.repo, kinds: [connection_git_commit]}
  - {ref: pipelines.chain, kinds: [run_status_succeeded]}
run: {kind: job, container: {image: x, command: [sh, -c, "true"]}}
"""


async def test_event_trigger_fires_exactly_once_per_source_event(kafka_broker, tmp_path: Path) -> None:
    config = test_config(kafka_broker.bootstrap, name="trig", state_dir=str(tmp_path))
    async with serving(config) as (_daemon, events):
        sub_id = await submit(config, compiled(SUBSCRIBED))
        await events.wait_for(lambda: [e for e in events.of(sub_id) if getattr(e, "reason", None) == "Subscribed"])
        for key in ("c1", "c1", "c2"):  # c1 delivered twice by its producer
            ev = wire.ExternalEvent(ref="connections.repo", kind="connection_git_commit", key=key, time=time.time())
            await publish(config, config.topics.external, ev.ref, ev)
        other = wire.ExternalEvent(ref="connections.repo", kind="connection_dataset_version", key="c3", time=time.time())
        await publish(config, config.topics.external, other.ref, other)
        chain_run = await submit(config, compiled())
        chain_done = await events.wait_done(chain_run)
        expected = {
            derived_run_id(sub_id, "external:connections.repo:c1"),
            derived_run_id(sub_id, "external:connections.repo:c2"),
        }
        chain_key = next(e.key for e in events.of(chain_run) if isinstance(e, wire.StatusEvent)
                         and e.path == "" and e.status == "succeeded")
        expected.add(derived_run_id(sub_id, chain_key))
        for run_id in expected:
            assert (await events.wait_done(run_id)).status == "succeeded"
        assert chain_done.status == "succeeded"
        await anyio.sleep(1.5)  # nothing else is triggered
        triggered = {e.run_id for e in events.completions() if e.pipeline == "on-commit"}
        assert triggered == expected
        assert all(len(events.completions(r)) == 1 for r in expected)
        # stopping the subscription ends it
        await publish(config, config.topics.runs, sub_id, wire.StopCommand(run_id=sub_id, time=time.time()))
        assert (await events.wait_done(sub_id)).status == "stopped"


async def test_user_commands_submit_status_stop_events(kafka_broker, tmp_path: Path, capfd) -> None:
    from flowd.cli import main

    config = test_config(kafka_broker.bootstrap, name="cli", state_dir=str(tmp_path))
    spec = tmp_path / "chain.yaml"
    spec.write_text(CHAIN)
    slow = tmp_path / "slow.yaml"
    slow.write_text(CHAIN.replace("name: chain", "name: slow").replace(
        "{name: a, component: {run:", "{name: a, isApproved: false, component: {run:"))
    bus = ["--brokers", config.brokers, "--prefix", config.prefix]

    def cli(*argv: str) -> int:
        return main(list(argv))

    async with serving(config) as (_daemon, events):
        assert await anyio.to_thread.run_sync(cli, "submit", str(spec), "--wait", *bus) == 0
        run_id = uuids(capfd.readouterr().out)[0]
        assert (await events.wait_done(run_id)).status == "succeeded"
        assert await anyio.to_thread.run_sync(cli, "status", run_id, *bus) == 0
        out = capfd.readouterr().out
        assert f"chain {run_id}: succeeded" in out and "  c: succeeded" in out
        # an op waiting for approval keeps the run alive until it is stopped
        assert await anyio.to_thread.run_sync(cli, "submit", str(slow), *bus) == 0
        slow_id = uuids(capfd.readouterr().out)[0]
        await events.wait_for(lambda: [e for e in events.of(slow_id) if e.path == "" and e.status == "running"])
        assert await anyio.to_thread.run_sync(cli, "stop", slow_id, *bus) == 0
        assert (await events.wait_done(slow_id)).status == "stopped"
        capfd.readouterr()
        assert await anyio.to_thread.run_sync(cli, "events", "--run", run_id, *bus) == 0
        lines = [ln for ln in capfd.readouterr().out.splitlines() if ln.startswith("{")]
        assert lines and all(f'"run_id":"{run_id}"' in line for line in lines) and '"type":"done"' in lines[-1]
        assert await anyio.to_thread.run_sync(cli, "status", "no-such-run", *bus) == 1
        assert await anyio.to_thread.run_sync(cli, "replay", "--run", run_id, "--group-id", config.group_id, *bus) == 0


SCHEDULED = """
version: 1.1
kind: operation
name: ticker
schedule: {kind: interval, frequency: 1, maxRuns: 4}
component:
  name: ticker
  run: {kind: job, container: {image: x, command: [sh, -c, "true"]}}
"""


async def test_schedule_timers_survive_a_restart_and_catch_up(kafka_broker, tmp_path: Path) -> None:
    """Timers live in the engine state: a new daemon re-arms them from the snapshot; ticks missed
    while no daemon ran fire at once, one child each, none twice (run id + tick path)."""
    config = test_config(kafka_broker.bootstrap, name="sched", state_dir=str(tmp_path), partitions=1)
    async with serving(config) as (_daemon, events):
        run_id = await submit(config, compiled(SCHEDULED))
        await events.wait_for(lambda: [e for e in events.of(run_id) if e.path == "tick-0" and e.status == "succeeded"])
    await anyio.sleep(2.5)  # downtime: ticks 1 and 2 become overdue
    async with serving(config) as (_daemon, events):
        done = await events.wait_done(run_id, timeout=20)
        assert done.status == "succeeded"
        queued = [e.path for e in events.of(run_id) if isinstance(e, wire.StatusEvent) and e.status == "queued"]
        assert sorted(queued) == ["tick-0", "tick-1", "tick-2", "tick-3"]
        assert len({e.key for e in events.events}) == len(events.events)


async def test_tuned_matrices_run_under_serve(kafka_broker, tmp_path: Path) -> None:
    """hyperband and tpe through the daemon: the engine's tuners run in the partition's engine
    step, so the children are those of ``flowd run`` (real processes: the local executor, whose
    outputs carry the metric hyperband ranks by)."""
    root = Path(__file__).resolve().parents[2] / "examples" / "features"
    config = test_config(kafka_broker.bootstrap, name="tuned", state_dir=str(tmp_path), executor="local")
    async with serving(config) as (_daemon, events):
        hb = await submit(config, compiled((root / "matrix-hyperband.yaml").read_text()))
        tpe = await submit(config, compiled((root / "matrix-tpe.yaml").read_text()))
        policies = await submit(config, compiled((root / "early-stopping-policies.yaml").read_text()))
        for run_id, children in ((hb, 22), (tpe, 12)):
            with anyio.fail_after(120):
                done = await events.wait_done(run_id)
            assert done.status == "succeeded"
            view = await run_status(config, run_id)
            assert view is not None and view["status"] == "succeeded"
            trials = {path: op["status"] for path, op in view["ops"].items() if path.startswith("tune[")}
            assert len(trials) == children and set(trials.values()) == {"succeeded"}, trials
        # intermediate metrics ($FLOWD_METRICS) reach the engine through the op_status records
        with anyio.fail_after(120):
            assert (await events.wait_done(policies)).status == "succeeded"
        view = await run_status(config, policies)
        assert view is not None
        for kind in ("median", "truncation", "diff"):
            assert view["ops"][f"{kind}[0]"]["status"] == "succeeded"
            assert view["ops"][f"{kind}[3]"]["status"] == "stopped"
