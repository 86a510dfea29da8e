"""Local subprocess executor for the daemon: attempts that outlive a daemon crash, never run twice.

It wraps :class:`flowd.runtime.executor.LocalExecutor` (one per run, under
``<state_dir>/runs/<run_id>/``) and adds what a daemon needs that ``flowd run`` does not:

* **A claim before the start.** ``attempts/<op>@<n>/claimed`` is written before the process is
  spawned. A ``StartOp`` whose attempt is already claimed (re-issued after a restore, or by the
  daemon that adopted this partition) is *adopted*, never started again.
* **An exit-code file.** The op's command runs under a tiny ``sh`` wrapper that writes
  ``exit_code`` when the command ends. Processes lead their own session, so a ``kill -9`` of the
  daemon leaves them running; the wrapper still records how they ended.
* **Adoption:** a recorded ``result.json`` is reported again; else an ``exit_code`` file becomes
  the report (outputs read from ``outputs.json``); else a live process is polled until it ends;
  else the attempt is reported ``failed`` with reason ``Lost`` (the engine's retry policy decides).

Leaving the context stops the processes of this daemon (LocalExecutor's contract); ``flowd serve``
exits before that on a graceful stop (``local_detach``, default on) so the next daemon adopts them
as after a crash. Daemons of one group must share ``--state-dir``.
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

from flowd.engine import OpStatus, StartOp, StopOp
from flowd.executor import Send
from flowd.outputs import DEFAULT_MAX_BYTES as DEFAULT_MAX_OUTPUTS
from flowd.runtime.executor import LocalExecutor, attempt_dir_name

__all__ = ["DaemonLocalExecutor", "WRAPPER"]

# runs "$@", then records its exit code atomically next to $FLOWD_OUTPUTS
WRAPPER = '"$@"; rc=$?; printf %s "$rc" > "$FLOWD_EXIT_FILE.tmp" && mv -f "$FLOWD_EXIT_FILE.tmp" "$FLOWD_EXIT_FILE"; exit $rc'
POLL_SECONDS = 0.2


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _argv_part(value: Any, *, split: bool) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value) if split else [value]
    return [v if isinstance(v, str) else json.dumps(v) for v in value]


class DaemonLocalExecutor:
    def __init__(self, *, send: Send, state_dir: Path, clock: Callable[[], float] = time.time, grace: float = 5.0,
                 max_outputs_bytes: int = DEFAULT_MAX_OUTPUTS) -> None:
        self.send = send
        self.max_outputs_bytes = max_outputs_bytes
        self.state_dir = Path(state_dir)
        self.clock = clock
        self.grace = grace
        self._executors: dict[str, LocalExecutor] = {}
        self._done: dict[str, anyio.Event] = {}
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._started: set[str] = set()
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
            async with LocalExecutor(run_dir=self.run_dir(run_id), send=self.send, clock=self.clock,
                                     grace=self.grace, max_outputs_bytes=self.max_outputs_bytes) as ex:
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
        claim = directory / "claimed"
        if claim.exists():
            await self._adopt(cmd, directory)
            return
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, cmd.key.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        ex = await self._executor(cmd.run_id)
        await ex.start(self._wrapped(cmd, directory))

    async def stop(self, cmd: StopOp) -> None:
        ex = self._executors.get(cmd.run_id)
        if ex is not None and cmd.key in self._started:
            await ex.stop(cmd)
            return
        directory = self.attempt_dir(cmd)
        pid = self._live_pid(directory)
        if pid is not None:  # adopted and still running: stop the whole group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, 15)
            return
        self.send(OpStatus(run_id=cmd.run_id, path=cmd.path, attempt=cmd.attempt, status="stopped",
                           time=self.clock(), reason=cmd.reason or "Stopped", message="not running"))

    # ---------------------------------------------------------------------------- internals

    def _wrapped(self, cmd: StartOp, directory: Path) -> StartOp:
        container = dict(cmd.run.get("container") or {})
        if not container.get("command"):
            return cmd  # LocalExecutor reports why it cannot start
        container["command"] = ["sh", "-c", WRAPPER, "flowd-attempt", *_argv_part(container["command"], split=True)]
        env = dict(cmd.env)
        env["FLOWD_EXIT_FILE"] = str(directory / "exit_code")
        return msgspec.structs.replace(cmd, run={**cmd.run, "container": container}, env=env)

    @staticmethod
    def _live_pid(directory: Path) -> int | None:
        try:
            record = json.loads((directory / "pid.json").read_text())
        except (OSError, ValueError):
            return None
        pid = int(record["pid"])
        now = _start_time(pid)
        if now is None or (record.get("start_time") and now != record["start_time"]):
            return None
        return pid

    async def _adopt(self, cmd: StartOp, directory: Path) -> None:
        assert self._tg is not None
        self._tg.start_soon(self._watch_orphan, cmd, directory, name=f"adopt {cmd.key}")

    async def _watch_orphan(self, cmd: StartOp, directory: Path) -> None:
        while True:
            report = self._recorded(cmd, directory)
            if report is not None:
                self.send(report)
                return
            if self._live_pid(directory) is None:
                # a last look: the process may have written its exit code as it went away
                report = self._recorded(cmd, directory)
                self.send(report or OpStatus(
                    run_id=cmd.run_id, path=cmd.path, attempt=cmd.attempt, status="failed", time=self.clock(),
                    reason="Lost", message="the attempt's process ended while no flowd daemon watched it "
                    "and left no exit code"))
                return
            await anyio.sleep(POLL_SECONDS)

    def _recorded(self, cmd: StartOp, directory: Path) -> OpStatus | None:
        with contextlib.suppress(OSError, msgspec.DecodeError):
            return msgspec.json.decode((directory / "result.json").read_bytes(), type=OpStatus)
        try:
            rc = int((directory / "exit_code").read_text().strip())
        except (OSError, ValueError):
            return None
        outputs, error = LocalExecutor._read_outputs(directory / "outputs.json", self.max_outputs_bytes)  # noqa: SLF001 - same file format
        fields: dict[str, Any]
        if rc == 0 and error is None:
            fields = dict(status="succeeded", exit_code=0)
        elif rc == 0:
            fields = dict(status="failed", exit_code=0, reason="InvalidOutputs", message=error)
        else:
            fields = dict(status="failed", exit_code=rc, reason="Error", message=f"exit code {rc} (logs: {directory})")
        if outputs and error is None:
            fields["outputs"] = outputs
        return OpStatus(run_id=cmd.run_id, path=cmd.path, attempt=cmd.attempt, time=self.clock(), **fields)
