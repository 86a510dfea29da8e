"""The local executor: runs each job/service attempt as a subprocess of this machine.

One ``StartOp`` becomes one process, started from the op's rendered container
``command + args`` (exec'd directly, never through a shell unless the command is one). The
container ``image`` is *not* pulled or used: the command runs with the tools of this machine.
Each attempt gets its own directory under the run (``attempts/<op>@<attempt>/``) holding its
``stdout.log``, ``stderr.log``, the ``outputs.json`` named by ``$FLOWD_OUTPUTS``, a ``pid.json``
written at spawn and a ``result.json`` (the terminal report) written *before* the report is
sent: after a crash, ``--resume`` replays a recorded result instead of running the op again.

Every process leads its own process group (``start_new_session``) so a stop reaches its whole
tree and a Ctrl-C on the terminal does not: stops are the engine's decision. A stop is SIGTERM to
the group, then SIGKILL after a grace period. When the main process exits, stragglers left in
its group are killed, as a container runtime would.

The executor only translates: it reports ``OpStatus`` events through ``send`` and never decides
about retries, timeouts or what runs next.
"""

from __future__ import annotations

import collections
import json
import os
import shlex
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import msgspec

from flowd.artifacts import ArtifactStoreError, FolderStore, Store, StoreConfig, op_prefix, open_store
from flowd.artifacts.outputs import bind_outputs
from flowd.engine import OpStatus, StartOp, StopOp
from flowd.executor import Send
from flowd.faults import crash_point
from flowd.outputs import DEFAULT_MAX_BYTES as DEFAULT_MAX_OUTPUTS
from flowd.outputs import read_outputs_file
from flowd.runtime.cache import HIT_PREFIX, CacheEntry, LocalCache
from flowd.runtime.connections import ConnectionProblem, LocalConnections
from flowd.runtime.initlocal import INIT_FAILED, LocalStart, prepare
from flowd.runtime.processes import signal_group, start_time

__all__ = ["LocalExecutor", "attempt_dir_name", "LOCAL_KINDS", "read_metric_points"]

# run kinds the local executor knows how to run
LOCAL_KINDS = frozenset({"job", "service"})
STDERR_TAIL_LINES = 5


# $FLOWD_METRICS: how often it is read while the job runs, and how much per read
METRICS_POLL = 0.25
METRICS_READ_BYTES = 1 << 20


def read_metric_points(path: Path, offset: int) -> tuple[int, list[dict[str, Any]]]:
    """The complete lines appended to a ``$FLOWD_METRICS`` file after ``offset`` that are JSON
    objects, and the offset after them (at most METRICS_READ_BYTES per call; lines that are not
    JSON objects are a job's stray prints and are skipped). Also read by the daemon's watcher
    of a process a dead daemon started (flowd.daemon.local)."""
    try:
        with path.open("rb") as f:
            f.seek(offset)
            chunk = f.read(METRICS_READ_BYTES)
    except OSError:
        return offset, []
    end = chunk.rfind(b"\n")
    if end < 0:
        # one absurdly long line: skip it
        return (offset + len(chunk) if len(chunk) >= METRICS_READ_BYTES else offset), []
    points = []
    for line in chunk[:end].splitlines():
        try:
            point = json.loads(line)
        except ValueError:
            continue
        if isinstance(point, dict):
            points.append(point)
    return offset + end + 1, points


def attempt_dir_name(path: str, attempt: int) -> str:
    """``outer/inner`` attempt 2 -> ``outer+inner@2`` (``+`` and ``@`` never occur in op names)."""
    return f"{path.replace('/', '+')}@{attempt}"


def _env_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _as_list(value: Any, *, split: bool) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        # a string command is a command line; a string args is one argument (``sh -c "..."``)
        return shlex.split(value) if split else [value]
    return [_env_value(v) for v in value]


def _tail(path: Path, lines: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    # skip blank lines and flowd's own marker lines (``--- flowd --resume: ... ---``)
    kept = [ln for ln in text.splitlines() if ln.strip() and not (ln.startswith("--- ") and ln.endswith(" ---"))]
    return "\n".join(kept[-lines:])


class _Attempt:
    __slots__ = ("cmd", "dir", "process", "stop_reason", "stopping", "shutdown", "finished", "holds_slot", "note",
                 "metrics_offset")

    def __init__(self, cmd: StartOp, directory: Path) -> None:
        self.cmd = cmd
        self.dir = directory
        self.process: anyio.abc.Process | None = None
        self.stopping = False
        self.stop_reason: str | None = None
        # stopped because flowd itself is going away, not by the engine: not a result to keep
        self.shutdown = False
        self.finished = anyio.Event()
        # counts against max_procs while its process lives (services never do)
        self.holds_slot = False
        self.note: str | None = None
        # how far $FLOWD_METRICS has been read (complete lines only)
        self.metrics_offset = 0


class LocalExecutor:
    """Runs attempts as local subprocesses. Use as ``async with LocalExecutor(...) as ex``;
    leaving the block stops whatever still runs (SIGTERM, grace, SIGKILL) and waits for it."""

    def __init__(
        self,
        *,
        run_dir: Path,
        send: Send,
        clock: Callable[[], float],
        grace: float = 5.0,
        workdir: Path | None = None,
        max_procs: int | None = None,
        max_outputs_bytes: int = DEFAULT_MAX_OUTPUTS,
        use_cache: bool = True,
        run_id: str | None = None,
        artifacts: Store | None = None,
        connections: LocalConnections | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        # the run this executor's folder belongs to: attempts of other runs driven with it (its
        # hook runs, POLYFLOW §8.3) go to ``hooks/<their run id>/`` instead
        self.run_id = run_id
        # the connection catalog and the secrets folder (flowd.runtime.connections); None: an
        # op naming a connection cannot start
        self.connections = connections
        self.max_outputs_bytes = max_outputs_bytes  # a larger outputs file fails its attempt
        # at most this many job processes at once (None: no limit); the others wait in
        # `_waiting`, in the order they were started, while the engine sees them `queued`.
        # Services do not count: they live until the pipeline ends and could starve it.
        self.max_procs = max_procs
        self._waiting: collections.deque[_Attempt] = collections.deque()
        self._running = 0
        self.workdir = workdir or self.run_dir / "work"
        # shared by the runs of one state dir (<state dir>/runs/<run id> -> <state dir>/cache)
        # (off in the daemon: its hits must be in the log and seen by every replica, which a local
        # folder is not; the daemon's cache is the compacted topic of flowd.daemon.cache)
        self.cache = LocalCache(self.run_dir.parent.parent / "cache") if use_cache else None
        # POLYFLOW §5.10 "hit on a still-running run": the attempt running for a cache key, and
        # the attempts with the same key that wait for its result instead of running too
        self._cache_runner: dict[str, _Attempt] = {}
        self._cache_followers: dict[str, list[_Attempt]] = {}
        # where finished attempts' $FLOWD_ARTIFACTS go (flowd.artifacts.config: --artifacts-store,
        # $FLOWD_ARTIFACTS_STORE, else <state dir>/artifacts)
        self.artifacts = artifacts if artifacts is not None else open_store(
            StoreConfig.from_env(), default_folder=self.run_dir.parent.parent / "artifacts")
        self.send = send
        self.clock = clock
        self.grace = grace
        self._attempts: dict[str, _Attempt] = {}
        # attempts not finished yet, by key (a subset of _attempts)
        self._live: dict[str, _Attempt] = {}
        self._tg: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> LocalExecutor:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        with anyio.CancelScope(shield=True):
            await self.stop_all(reason="flowd is shutting down", shutdown=True)
        assert self._tg is not None
        return await self._tg.__aexit__(*exc_info)

    # ------------------------------------------------------------------------------ queries

    @property
    def active(self) -> int:
        """How many attempts have a process that has not been reaped yet."""
        return len(self._live)

    def attempt_dir(self, cmd: StartOp | StopOp) -> Path:
        if self.run_id is not None and cmd.run_id != self.run_id:
            # a hook run driven with this run (POLYFLOW §8.3): its attempts in a folder of its own
            return self.run_dir / "hooks" / cmd.run_id / "attempts" / attempt_dir_name(cmd.path, cmd.attempt)
        return self.run_dir / "attempts" / attempt_dir_name(cmd.path, cmd.attempt)

    # ----------------------------------------------------------------------------- commands

    async def start(self, cmd: StartOp) -> None:
        """Start one attempt; a key seen before is ignored (commands may be replayed)."""
        if cmd.key in self._attempts:
            return
        if cmd.cache_key is not None and self.cache is not None:
            hit = self.cache.lookup(cmd.cache_key, cmd.cache_ttl, self.clock())
            if hit is not None:
                self._report(cmd, "succeeded", outputs=hit.outputs, reason="CacheHit",
                             message=f"{HIT_PREFIX}{hit.run_id}/{hit.path}")
                return
        attempt = _Attempt(cmd, self.attempt_dir(cmd))
        self._attempts[cmd.key] = self._live[cmd.key] = attempt
        if self._follows(attempt):
            return
        await self._launch(attempt)

    def _follows(self, attempt: _Attempt) -> bool:
        """An attempt whose cache key is being computed right now by another attempt waits for
        that one's result (a hit when it succeeds) instead of running the same work twice."""
        key = attempt.cmd.cache_key
        if key is None or self.cache is None:
            return False
        runner = self._cache_runner.get(key)
        if runner is None or runner.stopping or runner.finished.is_set():
            self._cache_runner[key] = attempt
            return False
        self._cache_followers.setdefault(key, []).append(attempt)
        return True

    async def _wake_followers(self, key: str) -> None:
        """The runner of ``key`` ended: its followers take its result if it succeeded (now in the
        cache); otherwise the first one runs and the others follow it."""
        for attempt in self._cache_followers.pop(key, []):
            if attempt.stopping or attempt.finished.is_set():
                continue
            cmd = attempt.cmd
            hit = self.cache.lookup(key, cmd.cache_ttl, self.clock()) if self.cache is not None else None
            if hit is not None:
                self._finished(attempt)
                self._report(cmd, "succeeded", outputs=hit.outputs, reason="CacheHit",
                             message=f"{HIT_PREFIX}{hit.run_id}/{hit.path}")
            elif not self._follows(attempt):
                await self._launch(attempt)

    async def _launch(self, attempt: _Attempt, *, note: str | None = None) -> None:
        """Spawn now if a process slot is free, else wait for one."""
        attempt.note = note
        if attempt.cmd.kind != "service":
            if self.max_procs is not None and self._running >= self.max_procs:
                self._waiting.append(attempt)
                return
            # the slot is taken before the process is opened: opening awaits, and other starts
            # checking the count meanwhile must already see this one
            self._take_slot(attempt)
        await self._spawn(attempt, note=note)

    def _take_slot(self, attempt: _Attempt) -> None:
        attempt.holds_slot = True
        self._running += 1

    async def _release_slot(self, attempt: _Attempt) -> None:
        if attempt.holds_slot:
            attempt.holds_slot = False
            self._running -= 1
            await self._admit_waiting()

    async def _admit_waiting(self) -> None:
        while self._waiting and (self.max_procs is None or self._running < self.max_procs):
            attempt = self._waiting.popleft()
            if not attempt.stopping and not attempt.finished.is_set():
                self._take_slot(attempt)
                await self._spawn(attempt, note=attempt.note)

    async def stop(self, cmd: StopOp) -> None:
        attempt = self._attempts.get(cmd.key)
        if attempt is None:
            # never started here (or lost in a crash): nothing to kill, say so at once
            self._report(cmd, "stopped", reason=cmd.reason or "Stopped", message="stopped before it started")
            return
        if attempt.finished.is_set() or attempt.stopping:
            return
        attempt.stopping = True
        attempt.stop_reason = cmd.reason
        assert self._tg is not None
        self._tg.start_soon(self._terminate, attempt, name=f"stop {cmd.key}")

    async def stop_all(self, *, reason: str, shutdown: bool = False) -> None:
        """Stop every live attempt and wait until all are reaped. With ``shutdown`` the results
        are not recorded, so a later ``--resume`` runs those attempts again."""
        live = list(self._live.values())
        for attempt in live:
            attempt.shutdown = attempt.shutdown or shutdown
            if not attempt.stopping:
                attempt.stopping = True
                attempt.stop_reason = reason
                assert self._tg is not None
                self._tg.start_soon(self._terminate, attempt)
        for attempt in live:
            await attempt.finished.wait()

    def kill_all(self) -> None:
        """SIGKILL every live process group now (a second Ctrl-C)."""
        for attempt in self._live.values():
            if attempt.process is not None:
                attempt.stopping = True
                signal_group(attempt.process.pid, signal.SIGKILL)

    async def adopt(self, cmd: StartOp, *, stopping: bool) -> None:
        """Take over an attempt started by a flowd process that died (``--resume``), once what
        that flowd left running is gone (:func:`flowd.runtime.processes.kill_leftovers`).

        A recorded result is reported again; otherwise the attempt is reported ``stopped`` if
        the engine had asked to stop it, else it runs again from scratch under the same key."""
        directory = self.attempt_dir(cmd)
        attempt = _Attempt(cmd, directory)
        self._attempts[cmd.key] = self._live[cmd.key] = attempt
        try:
            recorded = msgspec.json.decode((directory / "result.json").read_bytes(), type=OpStatus)
        except (OSError, msgspec.DecodeError):
            recorded = None
        if recorded is not None:
            self._finished(attempt)
            self.send(recorded)
            return
        if stopping:
            self._finished(attempt)
            self._report(cmd, "stopped", reason="Stopped", message="stopped (flowd was restarted while it stopped)")
            return
        await self._launch(attempt, note="flowd --resume: running this attempt again")

    # ------------------------------------------------------------------------------ internals

    def _finished(self, attempt: _Attempt) -> None:
        self._live.pop(attempt.cmd.key, None)
        attempt.finished.set()
        key = attempt.cmd.cache_key
        if key is not None and self._cache_runner.get(key) is attempt:
            del self._cache_runner[key]
            if self._cache_followers.get(key) and self._tg is not None:
                self._tg.start_soon(self._wake_followers, key, name=f"cache followers of {attempt.cmd.key}")

    def _report(self, cmd: StartOp | StopOp, status: str, **fields: Any) -> None:
        self.send(OpStatus(run_id=cmd.run_id, path=cmd.path, attempt=cmd.attempt, status=status, time=self.clock(), **fields))

    def _argv(self, cmd: StartOp) -> list[str]:
        if cmd.kind not in LOCAL_KINDS:
            raise _CannotStart(f"the local runtime cannot run kind {cmd.kind!r} (only {', '.join(sorted(LOCAL_KINDS))})")
        container = cmd.run.get("container") or {}
        argv = _as_list(container.get("command"), split=True) + _as_list(container.get("args"), split=False)
        if not container.get("command"):
            raise _CannotStart(
                "the container has no command: flowd runs command + args on this machine and "
                "cannot use an image's entrypoint"
            )
        return argv

    def _env(self, cmd: StartOp, directory: Path, start: LocalStart) -> dict[str, str]:
        env = dict(os.environ)
        container = cmd.run.get("container") or {}
        env.update(start.env)  # the connections' (values read from files: only without a wrapper)
        for item in container.get("env") or []:
            if isinstance(item, dict) and "name" in item and item.get("value") is not None:
                env[str(item["name"])] = start.paths.rewrite(_env_value(item["value"]))
        env.update({k: start.paths.rewrite(_env_value(v)) for k, v in cmd.env.items()})
        env.update(
            FLOWD_OUTPUTS=str(directory / "outputs.json"),
            FLOWD_METRICS=str(directory / "metrics.jsonl"),
            FLOWD_RUN_ID=cmd.run_id,
            FLOWD_OP_PATH=cmd.path,
            FLOWD_ATTEMPT=str(cmd.attempt),
            FLOWD_WORKDIR=str(self.workdir),
            # files written here are the op's artifacts: kept in the store when it succeeds
            FLOWD_ARTIFACTS=str(directory / "artifacts"),
            FLOWD_CONTEXT=start.context,
        )
        # the default artifact store of `artifacts` init steps when no FLOWD_ARTIFACTS_STORE names one
        env.setdefault("FLOWD_ARTIFACTS_FOLDER", str(self.run_dir.parent.parent / "artifacts"))
        return env

    async def _spawn(self, attempt: _Attempt, *, note: str | None = None) -> None:
        cmd = attempt.cmd
        directory = attempt.dir
        try:
            argv = self._argv(cmd)
        except _CannotStart as exc:
            self._finished(attempt)
            self._finish(attempt, status="failed", reason="CannotStart", message=str(exc))
            await self._release_slot(attempt)
            return
        directory.mkdir(parents=True, exist_ok=True)
        for stale in ("outputs.json", "result.json", "pid.json", "metrics.jsonl", INIT_FAILED):
            (directory / stale).unlink(missing_ok=True)
        (directory / "outputs.json").touch()
        shutil.rmtree(directory / "artifacts", ignore_errors=True)  # a retry starts with none
        (directory / "artifacts").mkdir()
        container = cmd.run.get("container") or {}
        try:
            # init steps and connections: the wrapper's plan, the path map, the connections' env
            start = prepare(cmd, directory, argv, self.connections, workdir=self.workdir)
        except (_CannotStart, ConnectionProblem) as exc:
            self._finished(attempt)
            self._finish(attempt, status="failed", reason="CannotStart", message=str(exc))
            await self._release_slot(attempt)
            return
        wanted = container.get("workingDir")
        wanted = start.paths.local(wanted) if isinstance(wanted, str) else None
        # with init steps the wrapper changes to workingDir once the steps made it (a clone)
        argv = start.argv(wanted, self.workdir)
        cwd = wanted if wanted is not None and os.path.isdir(wanted) and not start.wrapped else self.workdir
        stdout = (directory / "stdout.log").open("ab")
        stderr = (directory / "stderr.log").open("ab")
        try:
            if note:
                stderr.write(f"--- {note} ---\n".encode())
                stderr.flush()
            process = await anyio.open_process(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                cwd=cwd,
                env=self._env(cmd, directory, start),
                start_new_session=True,
            )
        except OSError as exc:
            self._finished(attempt)
            self._finish(attempt, status="failed", reason="CannotStart",
                         message=f"cannot start {argv[0]!r}: {exc.strerror or exc}")
            await self._release_slot(attempt)
            return
        finally:
            stdout.close()
            stderr.close()
        crash_point("local.spawned", cmd.key)  # tests only: a kill before pid.json exists
        attempt.process = process
        pid_record = {"pid": process.pid, "start_time": start_time(process.pid), "argv": argv}
        (directory / "pid.json").write_text(json.dumps(pid_record))
        self._report(cmd, "running")
        assert self._tg is not None
        self._tg.start_soon(self._watch, attempt, name=f"watch {cmd.key}")
        self._tg.start_soon(self._tail_metrics, attempt, name=f"metrics {cmd.key}")

    async def _tail_metrics(self, attempt: _Attempt) -> None:
        """Report the lines the job appends to $FLOWD_METRICS while it runs (every
        METRICS_POLL seconds); ``_watch`` reads the rest before the terminal report."""
        while attempt.process is not None and attempt.process.returncode is None and not attempt.finished.is_set():
            await anyio.sleep(METRICS_POLL)
            if attempt.process.returncode is None:
                self._flush_metrics(attempt)

    def _flush_metrics(self, attempt: _Attempt) -> None:
        attempt.metrics_offset, points = read_metric_points(attempt.dir / "metrics.jsonl", attempt.metrics_offset)
        if points:
            self._report(attempt.cmd, "running", metrics=points)

    async def _watch(self, attempt: _Attempt) -> None:
        assert attempt.process is not None
        try:
            rc = await attempt.process.wait()
        except BaseException:  # cancelled: flowd is going away; leave nothing running
            signal_group(attempt.process.pid, signal.SIGKILL)
            self._finished(attempt)
            raise
        crash_point("local.exited", attempt.cmd.key)  # tests only: reaped, no result.json yet
        # stragglers of a finished main process go with it, as in a container
        signal_group(attempt.process.pid, signal.SIGKILL)
        if not attempt.stopping:
            self._flush_metrics(attempt)
        outputs, outputs_error = self._read_outputs(attempt.dir / "outputs.json", self.max_outputs_bytes)
        logs = f"logs: {attempt.dir}"
        if attempt.stopping:
            reason = attempt.stop_reason or "Stopped"
            fields: dict[str, Any] = dict(status="stopped", reason=reason, message=f"process stopped ({reason})")
        elif (init_failure := _init_failure(attempt.dir)) is not None:
            fields = dict(status="failed", exit_code=rc, reason="InitError", message=f"{init_failure} ({logs})")
        elif rc == 0 and outputs_error is None:
            fields = dict(status="succeeded", exit_code=0)
        elif rc == 0:
            fields = dict(status="failed", exit_code=0, reason="InvalidOutputs", message=f"{outputs_error} ({logs})")
        else:
            if rc < 0:
                what = f"killed by {signal.Signals(-rc).name}"
            else:
                what = f"exit code {rc}"
            tail = _tail(attempt.dir / "stderr.log", STDERR_TAIL_LINES)
            if not tail:  # many programs report their errors on stdout
                tail = _tail(attempt.dir / "stdout.log", STDERR_TAIL_LINES)
            message = f"{what}: {tail} ({logs})" if tail else f"{what} ({logs})"
            fields = dict(status="failed", exit_code=rc, reason="Error", message=message)
        if outputs and outputs_error is None:
            fields["outputs"] = outputs
        if fields["status"] == "succeeded":
            await self._publish_artifacts(attempt, fields)
        if fields["status"] == "succeeded" and attempt.cmd.cache_key is not None and self.cache is not None:
            self.cache.save(attempt.cmd.cache_key, CacheEntry(run_id=attempt.cmd.run_id, path=attempt.cmd.path,
                                                              finished_at=self.clock(), outputs=fields.get("outputs")))
        self._finish(attempt, **fields)
        self._finished(attempt)
        await self._release_slot(attempt)

    async def _publish_artifacts(self, attempt: _Attempt, fields: dict[str, Any]) -> None:
        """Keep what the attempt wrote under $FLOWD_ARTIFACTS in the store (a folder store takes
        the directory by a rename, no copy) and point its file outputs there. Before the report:
        a consumer started on the report always finds the files."""
        cmd = attempt.cmd
        staging = attempt.dir / "artifacts"
        try:
            present = {p.name for p in staging.iterdir()}
        except OSError:
            present = set()
        if not present:
            return
        prefix = op_prefix(cmd.run_id, cmd.path)
        location = self.artifacts.location(prefix)
        try:
            if isinstance(self.artifacts, FolderStore):
                await anyio.to_thread.run_sync(self.artifacts.adopt, prefix, staging)
            else:
                await self.artifacts.put(prefix, staging)
        except ArtifactStoreError as exc:
            fields.update(status="failed", reason="ArtifactsUpload", message=str(exc))
            return
        fields["outputs"] = bind_outputs(fields.get("outputs"), list(cmd.outputs), present, staging=str(staging),
                                         location=location)

    def _finish(self, attempt: _Attempt, **fields: Any) -> None:
        cmd = attempt.cmd
        event = OpStatus(run_id=cmd.run_id, path=cmd.path, attempt=cmd.attempt, time=self.clock(), **fields)
        if not attempt.shutdown:
            try:
                attempt.dir.mkdir(parents=True, exist_ok=True)
                (attempt.dir / "result.json").write_bytes(msgspec.json.encode(event))
            except OSError:
                pass  # the report still goes out; only --resume after a crash loses it
        self.send(event)

    @staticmethod
    def _read_outputs(path: Path, max_bytes: int = DEFAULT_MAX_OUTPUTS) -> tuple[dict[str, Any] | None, str | None]:
        return read_outputs_file(path, f"$FLOWD_OUTPUTS ({path})", max_bytes=max_bytes)

    async def _terminate(self, attempt: _Attempt) -> None:
        process = attempt.process
        if process is None:
            followers = self._cache_followers.get(attempt.cmd.cache_key or "", [])
            if attempt in followers:  # waiting for another attempt's result: nothing to kill
                followers.remove(attempt)
                self._finished(attempt)
                reason = attempt.stop_reason or "Stopped"
                self._finish(attempt, status="stopped", reason=reason, message=f"stopped before it started ({reason})")
            elif attempt in self._waiting:  # never got a process: nothing to kill
                self._waiting.remove(attempt)
                self._finished(attempt)
                reason = attempt.stop_reason or "Stopped"
                self._finish(attempt, status="stopped", reason=reason, message=f"stopped before it started ({reason})")
            return
        signal_group(process.pid, signal.SIGTERM)
        with anyio.move_on_after(self.grace):
            await attempt.finished.wait()
            return
        signal_group(process.pid, signal.SIGKILL)

def _init_failure(directory: Path) -> str | None:
    """The message the init wrapper left when a step failed (the op's process never started)."""
    try:
        record = json.loads((directory / INIT_FAILED).read_text())
    except (OSError, ValueError):
        return None
    return str(record.get("message") or "an init step failed") if isinstance(record, dict) else None


class _CannotStart(Exception):
    pass
