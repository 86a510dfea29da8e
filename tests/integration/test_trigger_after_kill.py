"""An event-triggered run does not stall after a ``kill -9`` of the daemon (real broker).

A daemon with a subscription to ``pipelines.src`` is killed with ``kill -9`` and restarted with
the same instance id (the session timeout is the production default, 10 s); a ``src`` run then
completes, and the subscriber run it triggers must start at once. Before the router followed
the daemon's partition ownership it had a consumer group of its own, which waited out the dead
member's session: 10-17 s. The delay (from the source's ``done`` event to the triggered run's
``created`` event, both stamped by the daemon's clock) is printed for docs/daemon.md.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import anyio
import pytest

from flowd.daemon import wire
from flowd.daemon.client import publish
from flowd.daemon.testing import DaemonProcess, EventCollector, test_config
from flowd.daemon.triggers import derived_run_id
from flowd.spec import compile_text

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.asyncio(loop_scope="session")]

SOURCE = """
version: 1.1
kind: component
name: src
run: {kind: job, container: {image: x, command: [sh, -c, "true"]}}
"""

SUBSCRIBER = """
version: 1.1
kind: component
name: follower
events:
  - {ref: pipelines.src, kinds: [run_status_succeeded]}
run: {kind: job, container: {image: x, command: [sh, -c, "true"]}}
"""

BOUND = 5.0  # generous: the target is under 2 s


async def submit(config, text: str) -> str:
    run_id = str(uuid.uuid4())
    op = compile_text(text, source="x.yaml", base_dir=None).op
    await publish(config, config.topics.runs, run_id, wire.Submission(run_id=run_id, time=time.time(), pipeline=op))
    return run_id


async def trigger_delay(events: EventCollector, sub_id: str, src: str) -> float:
    done = await events.wait_done(src, timeout=60)
    assert done.status == "succeeded", done.message
    key = next(e.key for e in events.of(src) if isinstance(e, wire.StatusEvent) and e.path == ""
               and e.status == "succeeded")
    triggered = derived_run_id(sub_id, key)
    created = await events.wait_for(lambda: [e for e in events.of(triggered) if isinstance(e, wire.StatusEvent)
                                             and e.path == "" and e.status == "created"], timeout=60)
    return created[0].time - done.time


async def test_a_triggered_run_starts_at_once_after_kill_9_and_restart(kafka_broker, tmp_path: Path) -> None:
    config = test_config(kafka_broker.bootstrap, name="trigkill", state_dir=str(tmp_path / "state"),
                         executor="local", instance_id="trig-1", partitions=2, snapshot_interval=0.5,
                         session_timeout_ms=10000, heartbeat_interval_ms=2000)
    events = EventCollector(config)
    first = DaemonProcess(config, log_path=tmp_path / "serve-1.log").start()
    second = DaemonProcess(config, log_path=tmp_path / "serve-2.log")
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(events.run)
            await first.wait_ready()
            sub_id = await submit(config, SUBSCRIBER)
            await events.wait_for(lambda: [e for e in events.of(sub_id) if getattr(e, "reason", None) == "Subscribed"])
            warm = await trigger_delay(events, sub_id, await submit(config, SOURCE))
            first.kill9()
            during = await submit(config, SOURCE)  # submitted while no daemon runs
            second.start()
            await second.wait_ready()
            delays = [await trigger_delay(events, sub_id, during)]
            delays += [await trigger_delay(events, sub_id, await submit(config, SOURCE)) for _ in range(3)]
            tg.cancel_scope.cancel()
        print(f"\ntrigger delay before the kill {warm:.2f}s; after kill -9 and restart: "
              + ", ".join(f"{d:.2f}s" for d in delays))
        assert max(delays) < BOUND, f"triggered runs started {delays} s after their source completed"
    finally:
        first.terminate()
        code = second.terminate() if second.proc is not None else 0
    assert code == 0
