"""Local subprocess executor for the daemon: attempts that outlive a daemon crash, never run twice.

It wraps :class:`flowd.runtime.executor.LocalExecutor` (one per run, under
``<state_dir>/runs/<run_id>/``) and adds what a daemon needs that ``flowd run`` does not:

* **A claim before the start, and a start the process records itself.** ``launch.<g>`` is
  claimed (exclusively) before the process is spawned; the op command runs under a tiny ``sh``
  shim (:data:`flowd.daemon.launch.SHIM`) that records its own pid and start time in
  ``started.<g>`` before it runs the command, and the exit code after it. Neither record needs
  the daemon to be alive, so whatever step a ``kill -9`` of the daemon interrupts, the attempt
  directory says what happened. :mod:`flowd.daemon.launch` holds the state machine of these
  files.
* **Adoption.** A ``StartOp`` for a claimed attempt (re-issued after a restore, or by the daemon
  that took this partition over) is judged by :func:`flowd.daemon.launch.inspect`: a recorded
  result is reported again; an exit code becomes the report (outputs read from
  ``outputs.json``); a live process (same pid *and* start time) is polled until it ends; a launch
  that provably never started (voided, so that its shim can no longer start) is launched again;
  only a process that vanished without an exit code is reported ``failed`` with reason ``Lost``.
  While an adopted process runs, its ``$FLOWD_METRICS`` file is read as the LocalExecutor reads
  it (from the start: the engine ignores points whose step it already has), and what is left
  is read before its terminal report, so early-stopping policies keep acting across a crash.

Processes lead their own session, so a ``kill -9`` of the daemon leaves them running. Leaving the
context stops the processes of this daemon (LocalExecutor's contract); ``flowd serve`` exits
before that on a graceful stop (``local_detach``, default on) so the next daemon adopts them as
after a crash. Daemons of one group must share ``--state-dir``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import msgspec
import structlog

from flowd.connections import Connection
from flowd.daemon import launch
from flowd.daemon.launch import Found
from flowd.engine import OpStatus, StartOp, StopOp
from flowd.executor import Send
from flowd.faults import crash_point
from flowd.initsteps.envsources import secrets_dir_default
from flowd.outputs import DEFAULT_MAX_BYTES as DEFAULT_MAX_OUTPUTS
from flowd.runtime.connections import LocalConnections
from flowd.runtime.executor import METRICS_POLL, LocalExecutor, attempt_dir_name, read_metric_points

__all__ = ["DaemonLocalExecutor"]

POLL_SECONDS = 0.2
log = structlog.get_logger("flowd.daemon")


def _argv_part(value: Any, *, split: bool) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value) if split else [value]
    return [v if isinstance(v, str) else json.dumps(v) for v in value]


class DaemonLocalExecutor:
    def __init__(self, *, send: Send, state_dir: Path, clock: Callable[[], float] = time.time, grace: float = 5.0,
                 max_outputs_bytes: int = DEFAULT_MAX_OUTPUTS, connections: dict[str, Any] | None = None,
                 secrets_dir: str | None = None) -> None:
        self.send = send
        # the connection catalog (the k8s executor's shape) and the local secrets folder
        # (flowd.runtime.connections; default $FLOWD_SECRETS_DIR, else ~/.config/flowd/secrets)
        catalog = msgspec.convert(connections or {}, type=dict[str, Connection])
        secrets = secrets_dir or os.environ.get("FLOWD_SECRETS_DIR") or secrets_dir_default()
        self.connections = LocalConnections(catalog, secrets_dir=Path(secrets), volumes_dir=Path(state_dir) / "volumes")
        self.max_outputs_bytes = max_outputs_bytes
        self.state_dir = Path(state_dir)
        self.clock = clock
        self.grace = grace
        self._executors: dict[str, LocalExecutor] = {}
        self._done: dict[str, anyio.Event] = {}
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._started: set[str] = set()
        # attempts this daemon watches without owning their process (started by a dead daemon)
        self._adopted: set[str] = set()
        self._stopping: set[str] = set()
        # (run id, op path, attempt) -> launch generation this daemon spawned
        self._launches: dict[tuple[str, str, int], int] = {}
        self._tg: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> DaemonLocalExecutor:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        """Stops every process of this daemon (LocalExecutor's contract). ``flowd serve`` exits
        before this on a graceful stop, to leave them to the next daemon (``local_detach``)."""
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        for scope in list(self._scopes.values()):
            scope.cancel()
        return await self._tg.__aexit__(*exc_info)

    def run_dir(self, run_id: str) -> Path:
        return self.state_dir / "runs" / run_id

    def attempt_dir(self, cmd: StartOp | StopOp) -> Path:
        return self.run_dir(cmd.run_id) / "attempts" / attempt_dir_name(cmd.path, cmd.attempt)

    async def _executor(self, run_id: str) -> LocalExecutor:
        ex = self._executors.get(run_id)
        if ex is None:
            # entered and exited by a host task of our own group: callers run in short-lived
            # tasks, and a task group must be left by the task that entered it
            assert self._tg is not None
            ex = self._executors[run_id] = await self._tg.start(self._host, run_id)
        return ex

    async def _host(self, run_id: str, *, task_status: anyio.abc.TaskStatus[LocalExecutor]) -> None:
        done = self._done[run_id] = anyio.Event()
        # shielded: a cancellation of the daemon must not reach the LocalExecutor's watch tasks
        # (they kill their process when cancelled); only __aexit__ ends it, by this scope
        scope = self._scopes[run_id] = anyio.CancelScope(shield=True)
        with scope:
            async with LocalExecutor(run_dir=self.run_dir(run_id), send=self._relay, clock=self.clock,
                                     grace=self.grace, max_outputs_bytes=self.max_outputs_bytes,
                                     use_cache=False, connections=self.connections) as ex:
                task_status.started(ex)
                await done.wait()
                while ex.active:  # the engine stops what is left; wait for it to go
                    await anyio.sleep(0.5)
        self._executors.pop(run_id, None)
        self._done.pop(run_id, None)
        self._scopes.pop(run_id, None)

    def forget_run(self, run_id: str) -> None:
        """The run is finished: release its LocalExecutor once its processes are gone."""
        done = self._done.get(run_id)
        if done is not None:
            done.set()

    async def start(self, cmd: StartOp) -> None:
        if cmd.key in self._started:
            return
        self._started.add(cmd.key)
        directory = self.attempt_dir(cmd)
        for _ in range(8):  # each pass loses a race to another owner at most once
            judged = launch.inspect(directory)
            if judged.found not in (Found.FRESH, Found.UNSTARTED):
                self._adopt(cmd, directory, judged)
                return
            generation = judged.launch + 1
            if judged.found is Found.UNSTARTED:
                log.info("relaunching_unstarted_attempt", key=cmd.key, voided_launch=judged.launch)
            if launch.claim(directory, cmd.key, generation):
                break
        else:
            raise RuntimeError(f"cannot claim attempt {cmd.key}: other owners keep claiming it")
        crash_point("local.claimed", cmd.key)
        self._launches[(cmd.run_id, cmd.path, cmd.attempt)] = generation
        ex = await self._executor(cmd.run_id)
        await ex.start(self._wrapped(cmd, directory, generation))

    async def stop(self, cmd: StopOp) -> None:
        ex = self._executors.get(cmd.run_id)
        if ex is not None and (cmd.run_id, cmd.path, cmd.attempt) in self._launches:
            await ex.stop(cmd)
            return
        self._started.add(cmd.key)  # stopped: never (re)launch it after this
        self._stopping.add(cmd.key)
        directory = self.attempt_dir(cmd)
        if cmd.key in self._adopted:  # its watcher reports how it ends
            judged = launch.inspect(directory, void=False)
            if judged.found is Found.RUNNING and judged.pid is not None:
                self._kill_group(judged.pid)
            return
        judged = launch.inspect(directory)  # voids a launch that has not started: it never will
        if judged.found in (Found.FRESH, Found.UNSTARTED):
            self.send(OpStatus(run_id=cmd.run_id, path=cmd.path, attempt=cmd.attempt, status="stopped",
                               time=self.clock(), reason=cmd.reason or "Stopped", message="not running"))
            return
        self._adopt(cmd, directory, judged)
        if judged.found is Found.RUNNING and judged.pid is not None:
            self._kill_group(judged.pid)

    @staticmethod
    def _kill_group(pid: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, 15)

    # ---------------------------------------------------------------------------- internals

    def _relay(self, status: OpStatus) -> None:
        """The LocalExecutor's reports, with the crash points of the steps they follow, minus the
        report of a launch another owner voided before it started (that owner runs the op)."""
        key = f"{status.run_id}/{status.path}#{status.attempt}"
        if status.status == "running":
            crash_point("local.pid_recorded", key)
        elif status.exit_code == launch.VOID_EXIT:
            directory = self.run_dir(status.run_id) / "attempts" / attempt_dir_name(status.path, status.attempt)
            generation = self._launches.get((status.run_id, status.path, status.attempt))
            if generation is not None and launch.is_void(directory, generation):
                log.warning("launch_voided_by_another_owner", run_id=status.run_id, op_path=status.path,
                            attempt=status.attempt, launch=generation)
                return
        elif status.status in ("succeeded", "failed", "stopped"):
            crash_point("local.result_recorded", key)
        self.send(status)

    def _wrapped(self, cmd: StartOp, directory: Path, generation: int) -> StartOp:
        container = dict(cmd.run.get("container") or {})
        if not container.get("command"):
            return cmd  # LocalExecutor reports why it cannot start
        container["command"] = ["sh", "-c", launch.SHIM, "flowd-attempt", str(generation),
                                *_argv_part(container["command"], split=True)]
        env = dict(cmd.env)
        env["FLOWD_ATTEMPT_DIR"] = str(directory)
        return msgspec.structs.replace(cmd, run={**cmd.run, "container": container}, env=env)

    def _adopt(self, cmd: StartOp | StopOp, directory: Path, judged: launch.Judgement) -> None:
        assert self._tg is not None
        self._adopted.add(cmd.key)
        log.info("adopting_attempt", key=cmd.key, found=judged.found.value, launch=judged.launch, pid=judged.pid)
        self._tg.start_soon(self._watch_orphan, cmd, directory, judged, name=f"adopt {cmd.key}")

    async def _watch_orphan(self, cmd: StartOp | StopOp, directory: Path, judged: launch.Judgement) -> None:
        offset = 0
        next_metrics = 0.0
        while judged.found is Found.RUNNING:
            await anyio.sleep(POLL_SECONDS)
            judged = launch.inspect(directory, void=False)
            if judged.found is Found.RUNNING and anyio.current_time() >= next_metrics:
                next_metrics = anyio.current_time() + METRICS_POLL
                offset = self._relay_metrics(cmd, directory, offset)
        if cmd.key not in self._stopping:
            self._relay_metrics(cmd, directory, offset, rest=True)
        report = self._recorded(cmd, directory)
        if report is None and cmd.key in self._stopping:
            report = OpStatus(run_id=cmd.run_id, path=cmd.path, attempt=cmd.attempt, status="stopped",
                              time=self.clock(), reason="Stopped", message="process stopped")
        self.send(report or OpStatus(
            run_id=cmd.run_id, path=cmd.path, attempt=cmd.attempt, status="failed", time=self.clock(),
            reason="Lost", message="the attempt's process ended while no flowd daemon watched it "
            f"and left no exit code ({directory})"))

    def _relay_metrics(self, cmd: StartOp | StopOp, directory: Path, offset: int, *, rest: bool = False) -> int:
        """Report the metric points an adopted process appended since ``offset`` (``rest``:
        all that is left, before its terminal report)."""
        while True:
            new_offset, points = read_metric_points(directory / "metrics.jsonl", offset)
            if points:
                self.send(OpStatus(run_id=cmd.run_id, path=cmd.path, attempt=cmd.attempt, status="running",
                                   time=self.clock(), metrics=points))
            if not rest or new_offset == offset:
                return new_offset
            offset = new_offset

    def _recorded(self, cmd: StartOp | StopOp, directory: Path) -> OpStatus | None:
        data = launch.recorded_result(directory)
        if data is not None:
            with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                return msgspec.json.decode(data, type=OpStatus)
        try:
            rc = int((directory / "exit_code").read_text().strip())
        except (OSError, ValueError):
            return None
        outputs, error = LocalExecutor._read_outputs(directory / "outputs.json", self.max_outputs_bytes)  # noqa: SLF001
        fields: dict[str, Any]
        if rc == 0 and error is None:
            fields = {"status": "succeeded", "exit_code": 0}
        elif rc == 0:
            fields = {"status": "failed", "exit_code": 0, "reason": "InvalidOutputs", "message": error}
        else:
            fields = {"status": "failed", "exit_code": rc, "reason": "Error", "message": f"exit code {rc} (logs: {directory})"}
        if outputs and error is None:
            fields["outputs"] = outputs
        return OpStatus(run_id=cmd.run_id, path=cmd.path, attempt=cmd.attempt, time=self.clock(), **fields)
