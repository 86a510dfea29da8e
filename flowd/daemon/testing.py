"""Helpers for tests and benchmarks of the daemon against a real broker (never a mock one).

* :func:`test_config` -- a config with its own topic prefix and group, small and fast
* :class:`DaemonProcess` -- ``flowd serve`` as a subprocess (to ``kill -9`` it)
* :class:`EventCollector` -- a read_committed consumer of ``events`` in the background
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from aiokafka import TopicPartition

from flowd.daemon import wire
from flowd.daemon.config import DaemonConfig, load_config
from flowd.daemon.kafka import consumer, stop_consumer

__all__ = ["test_config", "DaemonProcess", "EventCollector", "free_port", "read_all", "restart_after_crashes"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_config(brokers: str, *, name: str = "t", **overrides: Any) -> DaemonConfig:
    prefix = f"{name}-{uuid.uuid4().hex[:8]}."
    values: dict[str, Any] = dict(brokers=brokers, prefix=prefix, group_id=prefix + "g", partitions=3,
                                  metrics_port=0, session_timeout_ms=3000, heartbeat_interval_ms=500,
                                  snapshot_interval=2.0, executor="instant",
                                  # tests count the starts of ops that are often identical (same
                                  # pipeline submitted again): the cache tests turn it on
                                  cache=False)
    values.update(overrides)
    return load_config(env={}, overrides=values)


test_config.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


class DaemonProcess:
    """``python -m flowd serve`` with this config; logs to ``log_path``."""

    def __init__(self, config: DaemonConfig, *, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.log_path = log_path
        self.env = env or {}
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DaemonProcess:
        c = self.config
        args = [sys.executable, "-m", "flowd", "serve", "--brokers", c.brokers, "--prefix", c.prefix,
                "--group-id", c.group_id, "--executor", c.executor, "--state-dir", c.state_dir,
                "--metrics-port", str(self.port), "--partitions", str(c.partitions),
                "--session-timeout-ms", str(c.session_timeout_ms),
                "--snapshot-interval", str(c.snapshot_interval)]
        if c.instance_id:
            args += ["--instance-id", c.instance_id]
        args += ["--cache", "true" if c.cache else "false"]
        env = {**os.environ, **self.env, "FLOWD_HEARTBEAT_INTERVAL_MS": str(c.heartbeat_interval_ms)}
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()
        return self

    async def wait_ready(self, timeout: float = 30.0) -> None:
        with anyio.fail_after(timeout):
            while True:
                assert self.proc is not None and self.proc.poll() is None, f"daemon exited; see {self.log_path}"
                try:
                    stream = await anyio.connect_tcp("127.0.0.1", self.port)
                    async with stream:
                        await stream.send(b"GET /readyz HTTP/1.0\r\n\r\n")
                        data = await stream.receive()
                    if data.startswith(b"HTTP/1.0 200"):
                        return
                except OSError:
                    pass
                await anyio.sleep(0.1)

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


async def restart_after_crashes(daemons: list[DaemonProcess], done: Callable[[], bool], *, log_dir: Path,
                                poll: float = 0.05) -> int:
    """Until ``done()``: whenever the newest daemon of ``daemons`` died at its crash point (the
    SIGKILL a ``FLOWD_TEST_CRASH_AT`` point sends), start the next one with the same config and
    environment, logging to ``log_dir/serve-N.log``. Returns how many died."""
    kills = 0
    while not done():
        last = daemons[-1]
        assert last.proc is not None
        if last.proc.poll() is not None:
            assert last.proc.returncode == -9, f"daemon exited {last.proc.returncode}, not by its crash point"
            kills += 1
            daemons.append(DaemonProcess(last.config, log_path=log_dir / f"serve-{len(daemons)}.log",
                                         env=last.env).start())
        await anyio.sleep(poll)
    return kills


class EventCollector:
    """Collects every event of ``events`` (read_committed) from the beginning, in a task."""

    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.events: list[wire.EventsMessage] = []
        self._changed = anyio.Event()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        topic = self.config.topics.events
        c = consumer(self.config, group_id=None)
        await c.start()
        try:
            while not c.partitions_for_topic(topic):
                await c._client.force_metadata_update()  # noqa: SLF001
                await anyio.sleep(0.2)
            tps = [TopicPartition(topic, p) for p in c.partitions_for_topic(topic)]
            c.assign(tps)
            await c.seek_to_beginning(*tps)
            task_status.started()
            while True:
                batches = await c.getmany(timeout_ms=100)
                for records in batches.values():
                    for rec in records:
                        self.events.append(wire.decode_events(rec.value))
                if batches:
                    self._changed.set()
                    self._changed = anyio.Event()
        finally:
            with anyio.CancelScope(shield=True):
                await stop_consumer(c)

    def of(self, run_id: str) -> list[wire.EventsMessage]:
        return [e for e in self.events if e.run_id == run_id]

    def completions(self, run_id: str | None = None) -> list[wire.CompletionEvent]:
        return [e for e in self.events if isinstance(e, wire.CompletionEvent) and (run_id is None or e.run_id == run_id)]

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
        with anyio.fail_after(timeout):
            while True:
                result = predicate()
                if result:
                    return result
                with anyio.move_on_after(0.2):
                    await self._changed.wait()

    async def wait_done(self, run_id: str, timeout: float = 30.0) -> wire.CompletionEvent:
        done = await self.wait_for(lambda: self.completions(run_id), timeout)
        return done[0]


async def read_all(config: DaemonConfig, topic: str) -> list[Any]:
    """Every committed record of ``topic`` as of now."""
    c = consumer(config, group_id=None)
    await c.start()
    try:
        await c._client.force_metadata_update()  # noqa: SLF001
        tps = [TopicPartition(topic, p) for p in (c.partitions_for_topic(topic) or ())]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        ends = await c.end_offsets(tps)
        out = []
        while [tp for tp in tps if await c.position(tp) < ends[tp]]:
            for records in (await c.getmany(timeout_ms=500)).values():
                out.extend(records)
        return out
    finally:
        await stop_consumer(c)
