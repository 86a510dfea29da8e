"""The daemon's local executor: claims, the self-recording shim, and what the next owner
concludes from every state a crash can leave an attempt directory in (flowd.daemon.launch)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import anyio
import pytest

from flowd.daemon import launch
from flowd.daemon.launch import Found
from flowd.daemon.local import DaemonLocalExecutor
from flowd.engine import OpStatus, StartOp
from flowd.runtime.processes import start_time

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]


def cmd(marks: Path, *, key: str = "k1", script: str = "true") -> StartOp:
    return StartOp(run_id="r1", path="a", attempt=1, key=key, kind="job", params={},
                   run={"container": {"command": ["sh", "-c"], "args": [f"echo x >> {marks}/a; {script}"]}})


def attempt_dir(state: Path) -> Path:
    return state / "runs" / "r1" / "attempts" / "a@1"


async def collect(state: Path, *commands: StartOp, until: int) -> list[OpStatus]:
    got: list[OpStatus] = []
    async with DaemonLocalExecutor(send=got.append, state_dir=state) as ex:
        for c in commands:
            await ex.start(c)
        with anyio.fail_after(10):
            while len([g for g in got if g.status not in ("running",)]) < until:
                await anyio.sleep(0.02)
    return got


def run_shim(directory: Path, generation: int, script: str, **env: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["sh", "-c", launch.SHIM, "flowd-attempt", str(generation), "sh", "-c", script],
                          env={**os.environ, "FLOWD_ATTEMPT_DIR": str(directory), **env}, capture_output=True, check=False)


async def test_start_claims_launch_1_and_the_shim_records_start_and_exit(tmp_path: Path, anyio_backend: str) -> None:
    got = await collect(tmp_path / "s", cmd(tmp_path, script="exit 3"), until=1)
    assert [g.status for g in got] == ["running", "failed"] and got[-1].exit_code == 3
    attempt = attempt_dir(tmp_path / "s")
    assert (attempt / "launch.1").read_text() == "k1"
    pid, start = (attempt / "started.1").read_text().split()
    assert int(pid) == json.loads((attempt / "pid.json").read_text())["pid"]
    assert start == json.loads((attempt / "pid.json").read_text())["start_time"]
    assert (attempt / "exit_code").read_text() == "3"


async def test_a_recorded_result_is_reported_again_never_run_again(tmp_path: Path, anyio_backend: str) -> None:
    state = tmp_path / "s"
    await collect(state, cmd(tmp_path), until=1)
    got = await collect(state, cmd(tmp_path), until=1)
    assert [g.status for g in got] == ["succeeded"]
    assert (tmp_path / "a").read_text() == "x\n"


async def test_an_exit_code_and_outputs_without_result_are_reported(tmp_path: Path, anyio_backend: str) -> None:
    """The process ran and exited 0 with outputs while no daemon watched it."""
    state = tmp_path / "s"
    await collect(state, cmd(tmp_path, script='echo \'{"n": 7}\' > $FLOWD_OUTPUTS'), until=1)
    (attempt_dir(state) / "result.json").unlink()
    got = await collect(state, cmd(tmp_path), until=1)
    assert [(g.status, g.outputs) for g in got] == [("succeeded", {"n": 7})]
    assert (tmp_path / "a").read_text() == "x\n"


async def test_a_claim_that_never_started_is_voided_and_launched_again_once(tmp_path: Path, anyio_backend: str) -> None:
    attempt = attempt_dir(tmp_path / "s")
    assert launch.claim(attempt, "k1", 1)  # the dead daemon claimed, then died before spawning
    got = await collect(tmp_path / "s", cmd(tmp_path), until=1)
    assert [g.status for g in got] == ["running", "succeeded"]
    assert (attempt / "started.1").read_text() == "void\n"
    assert (attempt / "launch.2").exists() and (attempt / "started.2").exists()
    assert (tmp_path / "a").read_text() == "x\n"
    # the dead daemon's shim, if it starts now, finds its launch voided and runs nothing
    late = run_shim(attempt, 1, f"echo late >> {tmp_path}/a")
    assert late.returncode == launch.VOID_EXIT
    assert (tmp_path / "a").read_text() == "x\n"


async def test_a_shim_that_wins_the_race_is_adopted_not_voided(tmp_path: Path, anyio_backend: str) -> None:
    attempt = attempt_dir(tmp_path / "s")
    assert launch.claim(attempt, "k1", 1)
    # a shim started by a daemon that died: not a child of the executor under test
    proc = subprocess.Popen(["sh", "-c", launch.SHIM, "flowd-attempt", "1", "sh", "-c",
                             f"echo x >> {tmp_path}/a; sleep 0.5; echo '{{\"m\": 1}}' > $FLOWD_OUTPUTS"],
                            env={**os.environ, "FLOWD_ATTEMPT_DIR": str(attempt),
                                 "FLOWD_OUTPUTS": str(attempt / "outputs.json")}, start_new_session=True)
    try:
        with anyio.fail_after(5):
            while not (attempt / "started.1").exists():
                await anyio.sleep(0.01)
        assert launch.inspect(attempt).found is Found.RUNNING
        got = await collect(tmp_path / "s", cmd(tmp_path), until=1)
    finally:
        proc.wait()
    assert [(g.status, g.outputs) for g in got] == [("succeeded", {"m": 1})]
    assert (tmp_path / "a").read_text() == "x\n" and not (attempt / "launch.2").exists()


async def test_a_started_process_that_vanished_without_exit_code_is_lost(tmp_path: Path, anyio_backend: str) -> None:
    attempt = attempt_dir(tmp_path / "s")
    assert launch.claim(attempt, "k1", 1)
    (attempt / "started.1").write_text("999999999 12345\n")  # above any pid_max: gone
    got = await collect(tmp_path / "s", cmd(tmp_path), until=1)
    assert [(g.status, g.reason) for g in got] == [("failed", "Lost")]
    assert not (tmp_path / "a").exists()


async def test_a_reused_pid_is_not_taken_for_the_process(tmp_path: Path, anyio_backend: str) -> None:
    """started.1 names a live pid whose start time differs: another process, so Lost."""
    attempt = attempt_dir(tmp_path / "s")
    assert launch.claim(attempt, "k1", 1)
    (attempt / "started.1").write_text(f"{os.getpid()} 1\n")
    assert start_time(os.getpid()) != "1"
    assert launch.inspect(attempt).found is Found.VANISHED


async def test_a_legacy_claim_without_pid_is_lost(tmp_path: Path, anyio_backend: str) -> None:
    attempt = attempt_dir(tmp_path / "s")
    attempt.mkdir(parents=True)
    (attempt / "claimed").write_text("k1")
    got = await collect(tmp_path / "s", cmd(tmp_path), until=1)
    assert [(g.status, g.reason) for g in got] == [("failed", "Lost")]
    assert not (tmp_path / "a").exists()


def test_only_one_of_two_owners_claims_a_relaunch(tmp_path: Path, anyio_backend: str) -> None:
    assert launch.claim(tmp_path, "k", 1)
    assert launch.inspect(tmp_path).found is Found.UNSTARTED
    assert launch.claim(tmp_path, "k", 2) and not launch.claim(tmp_path, "k", 2)
    assert launch.current_launch(tmp_path) == 2


async def test_the_result_of_a_voided_launch_is_not_taken_for_the_attempts(tmp_path: Path, anyio_backend: str) -> None:
    """A daemon presumed dead spawned launch 1 after another owner voided it: its shim exits 75
    without running anything, and that daemon's executor records it. The attempt's real launch
    (2) decides."""
    attempt = attempt_dir(tmp_path / "s")
    assert launch.claim(attempt, "k1", 1)
    assert launch.inspect(attempt).found is Found.UNSTARTED
    assert run_shim(attempt, 1, f"echo late >> {tmp_path}/a").returncode == launch.VOID_EXIT
    (attempt / "result.json").write_text(json.dumps({"type": "op_status", "run_id": "r1", "path": "a", "attempt": 1,
                                                     "status": "failed", "time": 1.0, "exit_code": launch.VOID_EXIT}))
    assert launch.inspect(attempt).found is Found.UNSTARTED
    got = await collect(tmp_path / "s", cmd(tmp_path), until=1)
    assert [g.status for g in got] == ["running", "succeeded"]
    assert (tmp_path / "a").read_text() == "x\n"
