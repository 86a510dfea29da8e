"""The local executor against real subprocesses: exit codes, outputs file, env, stop and kill."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from flowd.engine.messages import Event, OpStatus, StartOp, StopOp
from flowd.runtime.executor import LocalExecutor
from flowd.runtime.processes import kill_leftovers
from tests.infra.common import pid_alive as alive

PY = sys.executable


def start(path: str, command: Any, args: Any = None, *, attempt: int = 1, kind: str = "job", **fields: Any) -> StartOp:
    container: dict[str, Any] = {"image": "ignored:latest", "command": command}
    if args is not None:
        container["args"] = args
    container.update(fields.pop("container", {}))
    return StartOp(
        run_id="r", path=path, attempt=attempt, key=f"r/{path}/{attempt}", kind=kind, params={},
        run={"kind": kind, "container": container}, **fields,
    )


def stop_of(cmd: StartOp, reason: str | None = None) -> StopOp:
    return StopOp(run_id=cmd.run_id, path=cmd.path, attempt=cmd.attempt, key=cmd.key, reason=reason)


class Recorder:
    def __init__(self) -> None:
        self.events: list[OpStatus] = []
        self.changed = anyio.Event()

    def __call__(self, event: Event) -> None:
        assert isinstance(event, OpStatus)
        self.events.append(event)
        self.changed.set()
        self.changed = anyio.Event()

    async def terminal(self, path: str, timeout: float = 10) -> OpStatus:
        with anyio.fail_after(timeout):
            while True:
                for e in self.events:
                    if e.path == path and e.status in ("succeeded", "failed", "stopped"):
                        return e
                await self.changed.wait()

    async def status(self, path: str, status: str, timeout: float = 10) -> OpStatus:
        with anyio.fail_after(timeout):
            while True:
                for e in self.events:
                    if e.path == path and e.status == status:
                        return e
                await self.changed.wait()

    def statuses(self, path: str) -> list[str]:
        return [e.status for e in self.events if e.path == path]


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


def executor(tmp_path: Path, rec: Recorder, grace: float = 2.0) -> LocalExecutor:
    return LocalExecutor(run_dir=tmp_path / "run", send=rec, clock=time.time, grace=grace)



async def test_success_reports_running_then_succeeded_with_outputs(tmp_path: Path, rec: Recorder) -> None:
    script = "import json, os; json.dump({'loss': 0.25, 'tag': 'x'}, open(os.environ['FLOWD_OUTPUTS'], 'w'))"
    async with executor(tmp_path, rec) as ex:
        await ex.start(start("train", [PY, "-c"], [script], attempt=2))
        done = await rec.terminal("train")
    assert rec.statuses("train") == ["running", "succeeded"]
    assert done.status == "succeeded" and done.attempt == 2 and done.exit_code == 0
    assert done.outputs == {"loss": 0.25, "tag": "x"}


async def test_failure_reports_exit_code_stderr_tail_and_log_path(tmp_path: Path, rec: Recorder) -> None:
    async with executor(tmp_path, rec) as ex:
        await ex.start(start("bad", ["sh", "-c", "echo first >&2; echo 'the real cause' >&2; exit 7"]))
        done = await rec.terminal("bad")
    assert done.status == "failed" and done.exit_code == 7
    assert "exit code 7" in done.message and "the real cause" in done.message
    log_dir = tmp_path / "run" / "attempts" / "bad@1"
    assert str(log_dir) in done.message
    assert "the real cause" in (log_dir / "stderr.log").read_text()


async def test_stdout_goes_to_a_log_file_per_attempt(tmp_path: Path, rec: Recorder) -> None:
    async with executor(tmp_path, rec) as ex:
        await ex.start(start("outer/inner", ["sh", "-c", "echo hello"], attempt=3))
        await rec.terminal("outer/inner")
    assert (tmp_path / "run" / "attempts" / "outer+inner@3" / "stdout.log").read_text() == "hello\n"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param("{not json", "is not valid JSON", id="invalid-json"),
        pytest.param("[1, 2]", "must be a JSON object", id="not-an-object"),
    ],
)
async def test_bad_outputs_file_fails_the_attempt(tmp_path: Path, rec: Recorder, content: str, expected: str) -> None:
    async with executor(tmp_path, rec) as ex:
        await ex.start(start("op", ["sh", "-c", f"printf '%s' '{content}' > \"$FLOWD_OUTPUTS\""]))
        done = await rec.terminal("op")
    assert done.status == "failed" and done.reason == "InvalidOutputs"
    assert expected in done.message and "FLOWD_OUTPUTS" in done.message


async def test_no_outputs_written_means_no_outputs(tmp_path: Path, rec: Recorder) -> None:
    async with executor(tmp_path, rec) as ex:
        await ex.start(start("op", ["true"]))
        done = await rec.terminal("op")
    assert done.status == "succeeded" and done.outputs is None


async def test_env_merges_container_env_startop_env_and_flowd_vars(tmp_path: Path, rec: Recorder) -> None:
    script = (
        "import json, os; keys = ['FROM_CONTAINER', 'FROM_PARAM', 'NUM', 'FLOWD_OP_PATH', 'FLOWD_ATTEMPT', 'HOME'];"
        "json.dump({k: os.environ.get(k) for k in keys} | {'cwd': os.getcwd()}, open(os.environ['FLOWD_OUTPUTS'], 'w'))"
    )
    cmd = start(
        "op", [PY, "-c", script], env={"FROM_PARAM": "p"},
        container={"env": [{"name": "FROM_CONTAINER", "value": "c"}, {"name": "NUM", "value": 3}]},
    )
    async with executor(tmp_path, rec) as ex:
        await ex.start(cmd)
        done = await rec.terminal("op")
    assert done.outputs == {
        "FROM_CONTAINER": "c", "FROM_PARAM": "p", "NUM": "3", "FLOWD_OP_PATH": "op", "FLOWD_ATTEMPT": "1",
        "HOME": os.environ.get("HOME"), "cwd": str(tmp_path / "run" / "work"),
    }


async def test_no_shell_unless_the_command_is_one(tmp_path: Path, rec: Recorder) -> None:
    async with executor(tmp_path, rec) as ex:
        await ex.start(start("op", ["echo"], ["$HOME", "a b"]))
        await rec.terminal("op")
    assert (tmp_path / "run" / "attempts" / "op@1" / "stdout.log").read_text() == "$HOME a b\n"


async def test_missing_program_and_missing_command_fail_clearly(tmp_path: Path, rec: Recorder) -> None:
    async with executor(tmp_path, rec) as ex:
        await ex.start(start("nope", ["/no/such/program"]))
        await ex.start(start("empty", None, ["x"]))
        await ex.start(start("tf", ["true"], kind="tfjob"))
        nope, empty, tf = [await rec.terminal(p) for p in ("nope", "empty", "tf")]
    assert nope.status == "failed" and "cannot start '/no/such/program'" in nope.message
    assert empty.status == "failed" and "no command" in empty.message
    assert tf.status == "failed" and "cannot run kind 'tfjob'" in tf.message


async def test_same_key_is_started_once(tmp_path: Path, rec: Recorder) -> None:
    marker = tmp_path / "marker"
    cmd = start("op", ["sh", "-c", f"echo x >> {marker}"])
    async with executor(tmp_path, rec) as ex:
        await ex.start(cmd)
        await ex.start(cmd)
        await rec.terminal("op")
        await ex.start(cmd)
    assert marker.read_text() == "x\n"
    assert rec.statuses("op") == ["running", "succeeded"]


async def test_stop_terminates_the_whole_process_group(tmp_path: Path, rec: Recorder) -> None:
    pids = tmp_path / "pids"
    cmd = start("svc", ["sh", "-c", f"sleep 30 & echo $! > {pids}; wait"], kind="service")
    async with executor(tmp_path, rec) as ex:
        await ex.start(cmd)
        await rec.status("svc", "running")
        with anyio.fail_after(5):
            while not pids.exists() or not pids.read_text().strip():
                await anyio.sleep(0.02)
        grandchild = int(pids.read_text())
        t0 = time.monotonic()
        await ex.stop(stop_of(cmd, "Stopped by the pipeline"))
        done = await rec.terminal("svc")
        assert time.monotonic() - t0 < 1.5  # SIGTERM was enough, no grace period wasted
    assert done.status == "stopped" and done.reason == "Stopped by the pipeline"
    with anyio.fail_after(2):
        while alive(grandchild):
            await anyio.sleep(0.02)


async def test_stop_escalates_to_sigkill_after_the_grace_period(tmp_path: Path, rec: Recorder) -> None:
    script = "import signal, time, sys; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(30)"
    cmd = start("stubborn", [PY, "-c", script])
    out = tmp_path / "run" / "attempts" / "stubborn@1" / "stdout.log"
    async with executor(tmp_path, rec, grace=0.3) as ex:
        await ex.start(cmd)
        with anyio.fail_after(5):
            while not out.exists() or "ready" not in out.read_text():
                await anyio.sleep(0.02)
        t0 = time.monotonic()
        await ex.stop(stop_of(cmd))
        done = await rec.terminal("stubborn")
        elapsed = time.monotonic() - t0
    assert done.status == "stopped"
    assert 0.25 < elapsed < 3


async def test_stop_of_an_unknown_attempt_reports_stopped(tmp_path: Path, rec: Recorder) -> None:
    async with executor(tmp_path, rec) as ex:
        await ex.stop(stop_of(start("ghost", ["true"])))
        done = await rec.terminal("ghost")
    assert done.status == "stopped"


async def test_leaving_the_block_stops_what_still_runs(tmp_path: Path, rec: Recorder) -> None:
    async with executor(tmp_path, rec) as ex:
        await ex.start(start("long", ["sleep", "30"]))
        await rec.status("long", "running")
        pid = int(json.loads((tmp_path / "run" / "attempts" / "long@1" / "pid.json").read_text())["pid"])
    assert rec.statuses("long") == ["running", "stopped"]
    assert not alive(pid)


async def test_killed_by_a_signal_is_a_failure(tmp_path: Path, rec: Recorder) -> None:
    async with executor(tmp_path, rec) as ex:
        await ex.start(start("op", ["sh", "-c", "kill -KILL $$"]))
        done = await rec.terminal("op")
    assert done.status == "failed" and "killed by SIGKILL" in done.message


async def test_result_is_recorded_before_it_is_reported(tmp_path: Path, rec: Recorder) -> None:
    async with executor(tmp_path, rec) as ex:
        await ex.start(start("op", ["sh", "-c", "echo '{\"a\": 1}' > $FLOWD_OUTPUTS"]))
        done = await rec.terminal("op")
    saved = msgspec.json.decode((tmp_path / "run" / "attempts" / "op@1" / "result.json").read_bytes(), type=OpStatus)
    assert saved == done


async def test_adopt_replays_a_recorded_result_without_running_again(tmp_path: Path, rec: Recorder) -> None:
    marker = tmp_path / "marker"
    cmd = start("op", ["sh", "-c", f"echo x >> {marker}"])
    async with executor(tmp_path, rec) as ex:
        await ex.start(cmd)
        first = await rec.terminal("op")
    again = Recorder()
    async with executor(tmp_path, again) as ex:
        await ex.adopt(cmd, stopping=False)
        replayed = await again.terminal("op")
        await ex.start(cmd)  # a replayed StartOp is still ignored
    assert replayed == first and marker.read_text() == "x\n"


def _group(pgid: int) -> list[int]:
    """The live processes of process group ``pgid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(int(stat.parent.name))
    return found


async def test_leftovers_of_a_dead_flowd_are_killed_then_the_attempt_runs_again(tmp_path: Path, rec: Recorder) -> None:
    marker = tmp_path / "marker"
    cmd = start("op", ["sh", "-c", f"echo start >> {marker}; sleep 30 & sleep 30; echo end >> {marker}"])
    # a flowd that died: its process runs on, unreaped and forgotten
    first = executor(tmp_path, rec)
    async with first:
        await first.start(cmd)
        with anyio.fail_after(5):
            while not marker.exists() or marker.read_text() != "start\n":
                await anyio.sleep(0.02)
        leader = int(json.loads((tmp_path / "run" / "attempts" / "op@1" / "pid.json").read_text())["pid"])
        # "start" is written before sh forks the two sleeps: on a busy machine they may not exist yet
        with anyio.fail_after(5):
            while len(_group(leader)) < 3:
                await anyio.sleep(0.02)
        first._attempts.clear()
        first._live.clear()
        killed = kill_leftovers(tmp_path / "run")
        assert leader in killed and len(killed) == 3  # sh and both sleeps
        assert not any(alive(pid) for pid in killed)
        assert kill_leftovers(tmp_path / "other-run") == []
        again = Recorder()
        async with executor(tmp_path, again) as ex:
            await ex.adopt(cmd, stopping=False)
            await again.status("op", "running")
            with anyio.fail_after(5):
                while marker.read_text() != "start\nstart\n":
                    await anyio.sleep(0.02)
            await ex.stop(stop_of(cmd))
            await again.terminal("op")
    assert marker.read_text() == "start\nstart\n"


async def test_adopt_of_an_attempt_being_stopped_reports_stopped(tmp_path: Path, rec: Recorder) -> None:
    marker = tmp_path / "marker"
    async with executor(tmp_path, rec) as ex:
        await ex.adopt(start("op", ["sh", "-c", f"touch {marker}"]), stopping=True)
        done = await rec.terminal("op")
    assert done.status == "stopped" and not marker.exists()


async def test_cancellation_kills_processes_and_does_not_hang(tmp_path: Path, rec: Recorder) -> None:
    with anyio.fail_after(5):
        with anyio.CancelScope() as scope:
            async with executor(tmp_path, rec) as ex:
                await ex.start(start("long", ["sleep", "30"]))
                await rec.status("long", "running")
                pid = int(json.loads((tmp_path / "run" / "attempts" / "long@1" / "pid.json").read_text())["pid"])
                scope.cancel()
                await anyio.sleep(10)
    with anyio.fail_after(2):
        while alive(pid):
            await anyio.sleep(0.02)
    # not a result to replay on --resume: flowd went away, the op did not end
    assert not (tmp_path / "run" / "attempts" / "long@1" / "result.json").exists()


async def test_max_procs_caps_job_processes_but_not_services(tmp_path: Path, rec: Recorder) -> None:
    marker = tmp_path / "running"
    marker.mkdir()
    # each job records how many jobs run alongside it, holds its slot briefly, then leaves
    script = (
        "import os, sys, time, pathlib; d = pathlib.Path(sys.argv[1]); me = d / sys.argv[2]; me.touch();"
        "time.sleep(0.3); print(len(list(d.iterdir()))); me.unlink()"
    )
    async with LocalExecutor(run_dir=tmp_path / "run", send=rec, clock=time.time, max_procs=2) as ex:
        await ex.start(start("svc", [PY, "-c", "import time; time.sleep(30)"], kind="service"))
        jobs = [start(f"j{i}", [PY, "-c", script, str(marker), f"j{i}"]) for i in range(5)]
        for cmd in jobs:
            await ex.start(cmd)
        assert ex.active == 6  # waiting attempts count: the driver must not think it is idle
        assert rec.statuses("svc") == ["running"]  # the service did not take a job slot
        results = [await rec.terminal(cmd.path, timeout=20) for cmd in jobs]
        await ex.stop(stop_of(start("svc", [PY], kind="service")))
        await rec.terminal("svc")
    assert [r.status for r in results] == ["succeeded"] * 5
    peaks = [int((tmp_path / "run" / "attempts" / f"j{i}@1" / "stdout.log").read_text()) for i in range(5)]
    assert max(peaks) <= 2


async def test_a_waiting_attempt_stops_without_ever_running(tmp_path: Path, rec: Recorder) -> None:
    async with LocalExecutor(run_dir=tmp_path / "run", send=rec, clock=time.time, max_procs=1) as ex:
        busy = start("busy", [PY, "-c", "import time; time.sleep(30)"])
        queued = start("queued", [PY, "-c", "print('never')"])
        await ex.start(busy)
        await ex.start(queued)
        await ex.stop(stop_of(queued, "StopRequested"))
        stopped = await rec.terminal("queued")
        assert stopped.status == "stopped" and "before it started" in (stopped.message or "")
        assert rec.statuses("queued") == ["stopped"]
        await ex.stop(stop_of(busy))
        await rec.terminal("busy")


async def test_a_follower_of_a_failed_runner_runs_itself_and_a_stopped_one_never_runs(tmp_path: Path, rec: Recorder) -> None:
    """Attempts with the cache key of a running attempt wait for it (POLYFLOW §5.10); when it
    does not succeed the next one runs; one stopped while waiting ends without a process."""
    marks = tmp_path / "marks"
    script = f"import sys, time; open({str(marks)!r}, 'a').write(sys.argv[1] + '\\n'); time.sleep(0.5); sys.exit(sys.argv[1] == 'a')"
    cmds = {p: start(p, [PY, "-c", script, p], cache_key="same-key") for p in ("a", "b", "c")}
    async with executor(tmp_path, rec) as ex:
        for cmd in cmds.values():
            await ex.start(cmd)
        await ex.stop(stop_of(cmds["c"], reason="Upstream"))
        assert (await rec.terminal("c")).status == "stopped"
        assert (await rec.terminal("a")).status == "failed"
        b = await rec.terminal("b")
        assert b.status == "succeeded" and b.reason is None  # it ran: a failure is never a result to reuse
    assert marks.read_text().split() == ["a", "b"]
    assert "running" not in rec.statuses("c")
