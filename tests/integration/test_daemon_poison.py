"""Poison records on the real broker: a record whose handling kills the daemon (``kill -9`` of
itself, through the ``FLOWD_TEST_FAULTS=1`` hook) or raises is dead-lettered with its reason,
the partition goes on, and no other run is lost or duplicated. Records nobody can act on (a
submission keyed by something other than its run id, commands for unknown runs) are
dead-lettered too: nothing is dropped silently.

Completion events are counted with a read_committed consumer (EventCollector).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path

import anyio
import pytest
from aiokafka import AIOKafkaProducer

from flowd.daemon import wire
from flowd.daemon.client import publish
from flowd.daemon.config import DaemonConfig
from flowd.daemon.replay import replay
from flowd.daemon.testing import DaemonProcess, EventCollector, read_all, test_config
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
"""

FAULT_SPEC = """
version: 1.1
kind: component
name: poison
inputs: [{name: x, type: str}]
run: {kind: job, container: {image: x, command: [sh, -c, "true"]}}
"""


def submission(run_id: str, fault: str | None = None) -> wire.Submission:
    if fault is None:
        op = compile_text(CHAIN, source="chain.yaml", base_dir=None).op
        return wire.Submission(run_id=run_id, time=time.time(), pipeline=op)
    return wire.Submission(run_id=run_id, time=time.time(), spec=FAULT_SPEC, source="poison.yaml",
                           params={"x": f"flowd-test-fault:{fault}"})


async def produce_all(config: DaemonConfig, messages: list[wire.Submission]) -> dict[str, int]:
    """Publish in order, keyed by run id; returns each run's offset."""
    p = AIOKafkaProducer(bootstrap_servers=config.brokers, enable_idempotence=True)
    await p.start()
    try:
        futures = [(m.run_id, await p.send(config.topics.runs, wire.encode(m), key=m.run_id.encode())) for m in messages]
        return {run_id: (await f).offset for run_id, f in futures}
    finally:
        await p.stop()


async def dead_letters(config: DaemonConfig, n: int, timeout: float = 30.0) -> list[wire.DeadLetter]:
    with anyio.fail_after(timeout):
        while len(dead := [wire.decode_deadletter(r.value) for r in await read_all(config, config.topics.deadletter)]) < n:
            await anyio.sleep(0.2)
    return dead


@pytest.mark.parametrize("poison_at", [(20,), (10, 30)], ids=["one-poison", "two-poisons"])
async def test_a_record_that_kills_the_daemon_is_dead_lettered_after_two_deaths(
        kafka_broker, tmp_path: Path, poison_at: tuple[int, ...]) -> None:
    # one partition: the poison records sit in the middle of the same batch as every other run
    config = test_config(kafka_broker.bootstrap, name="kill-poison", state_dir=str(tmp_path / "state"),
                         instance_id="daemon-1", partitions=1)
    messages = [submission(str(uuid.uuid4())) for _ in range(40)]
    for i in poison_at:
        messages.insert(i, submission("poison-" + uuid.uuid4().hex[:8], fault="kill"))
    poison = [m.run_id for m in messages if m.run_id.startswith("poison-")]
    good = [m.run_id for m in messages if not m.run_id.startswith("poison-")]
    events = EventCollector(config)
    deaths: list[float] = []
    daemon = DaemonProcess(config, log_path=tmp_path / "serve.log", env={"FLOWD_TEST_FAULTS": "1"}).start()
    try:
        await daemon.wait_ready()
        offsets = await produce_all(config, messages)
        async with anyio.create_task_group() as tg:
            await tg.start(events.run)
            t0 = time.monotonic()
            with anyio.fail_after(120):
                # the loop an operator's supervisor runs: restart whatever died
                while not all(events.completions(r) for r in good):
                    assert daemon.proc is not None
                    if daemon.proc.poll() is not None:
                        assert daemon.proc.returncode == -9, f"daemon exited {daemon.proc.returncode}"
                        deaths.append(time.monotonic() - t0)
                        assert len(deaths) <= 1 + len(poison), f"crash loop: {len(deaths)} deaths"
                        daemon = DaemonProcess(config, log_path=tmp_path / "serve.log",
                                               env={"FLOWD_TEST_FAULTS": "1"}).start()
                    await anyio.sleep(0.1)
            went_on = time.monotonic() - t0
            await anyio.sleep(1.5)  # a late duplicate would show up now
            tg.cancel_scope.cancel()
        dead = await dead_letters(config, len(poison))
        print(f"\n{len(poison)} poison record(s) killed the daemon {len(deaths)} times (at "
              f"{', '.join(f'{d:.1f}s' for d in deaths)}); all {len(good)} other runs done {went_on:.1f}s "
              "after the records were published")
        # died in the batch, then on the first poison alone; the next owner dead-letters it and
        # dies alone on the next poison (if any), which its successor dead-letters
        assert len(deaths) == 1 + len(poison)
        assert sorted((d.reason, d.offset, d.key) for d in dead) == sorted(
            ("crashed", offsets[r], r.encode()) for r in poison)
        assert all("died 2 times" in d.error for d in dead)
        assert sorted(wire.decode_runs(d.value or b"").run_id for d in dead) == sorted(poison)
        done = Counter(e.run_id for e in events.completions())
        assert all(done[r] == 1 for r in good), {r: done[r] for r in good if done[r] != 1}
        assert not any(done[r] for r in poison)
        keys = [e.key for e in events.events]
        assert len(keys) == len(set(keys))
        assert daemon.proc is not None and daemon.proc.poll() is None  # still serving
        # the partition's log replayed offline agrees with what was emitted (the poison skipped)
        report = await replay(config, partition=0)
        assert not report.diverged, report
    finally:
        daemon.terminate()


async def test_a_record_whose_handling_raises_is_dead_lettered_and_nothing_else_is_lost(kafka_broker, tmp_path: Path) -> None:
    config = test_config(kafka_broker.bootstrap, name="raise-poison", state_dir=str(tmp_path / "state"), partitions=1)
    before = [submission(str(uuid.uuid4())) for _ in range(10)]
    poison = submission("poison-" + uuid.uuid4().hex[:8], fault="raise")
    after = [submission(str(uuid.uuid4())) for _ in range(10)]
    good = [m.run_id for m in before + after]
    events = EventCollector(config)
    daemon = DaemonProcess(config, log_path=tmp_path / "serve.log", env={"FLOWD_TEST_FAULTS": "1"}).start()
    try:
        await daemon.wait_ready()
        offsets = await produce_all(config, [*before, poison, *after])
        async with anyio.create_task_group() as tg:
            await tg.start(events.run)
            await events.wait_for(lambda: all(events.completions(r) for r in good), timeout=60)
            await anyio.sleep(1.5)
            tg.cancel_scope.cancel()
        [dead] = await dead_letters(config, 1)
        assert (dead.reason, dead.offset) == ("handler_error", offsets[poison.run_id])
        assert "InjectedFault" in dead.error
        done = Counter(e.run_id for e in events.completions())
        assert all(done[r] == 1 for r in good) and done[poison.run_id] == 0
        assert daemon.proc is not None and daemon.proc.poll() is None
        assert "record_failed" in (tmp_path / "serve.log").read_text()
    finally:
        assert daemon.terminate() == 0


async def test_records_nobody_can_act_on_are_dead_lettered_not_dropped(kafka_broker, tmp_path: Path) -> None:
    config = test_config(kafka_broker.bootstrap, name="unknown", state_dir=str(tmp_path / "state"), partitions=3)
    events = EventCollector(config)
    daemon = DaemonProcess(config, log_path=tmp_path / "serve.log").start()
    try:
        await daemon.wait_ready()
        run_id = str(uuid.uuid4())
        held = CHAIN.replace("dependencies: [a],", "dependencies: [a], isApproved: false,")
        op = compile_text(held, source="held.yaml", base_dir=None).op
        # keyed by something else: it would run on the key's partition, where the approve below
        # (correctly keyed) could never find it
        await publish(config, config.topics.runs, "not-the-run-id", wire.Submission(run_id=run_id, time=time.time(), pipeline=op))
        await publish(config, config.topics.runs, run_id, wire.ApproveCommand(run_id=run_id, path="b", time=time.time()))
        ok = str(uuid.uuid4())
        await publish(config, config.topics.runs, ok, wire.Submission(run_id=ok, time=time.time(), pipeline=op))
        await publish(config, config.topics.runs, ok, wire.StopCommand(run_id=ok, path="nope", time=time.time()))
        async with anyio.create_task_group() as tg:
            await tg.start(events.run)
            await events.wait_for(lambda: any(e.reason == "PendingApproval" for e in events.of(ok)), timeout=30)
            await publish(config, config.topics.runs, ok, wire.ApproveCommand(run_id=ok, path="b", time=time.time()))
            assert (await events.wait_done(ok)).status == "succeeded"
            tg.cancel_scope.cancel()
        dead = await dead_letters(config, 3)
        got = sorted((d.reason, wire.decode_runs(d.value or b"").run_id) for d in dead)
        assert got == sorted([("wrong_key", run_id), ("unknown_run", run_id), ("unknown_op", ok)]), got
        assert all(d.error for d in dead)
        assert not events.of(run_id)  # the mis-keyed submission did not run
        metrics = (await _get(daemon.port, "/metrics")).decode()
        for reason in ("wrong_key", "unknown_run", "unknown_op"):
            assert f'reason="{reason}"' in metrics
        log = (tmp_path / "serve.log").read_text()
        assert "key must be the run id" in log and "dead_lettered" in log
    finally:
        assert daemon.terminate() == 0


async def _get(port: int, path: str) -> bytes:
    stream = await anyio.connect_tcp("127.0.0.1", port)
    body = b""
    async with stream:
        await stream.send(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        try:
            while True:
                body += await stream.receive()
        except anyio.EndOfStream:
            pass
    return body
