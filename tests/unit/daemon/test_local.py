"""The daemon's local executor: claims, the exit-code wrapper, and adoption after a crash."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from flowd.daemon.local import DaemonLocalExecutor
from flowd.engine.messages import OpStatus, StartOp

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]


def cmd(marks: Path, *, key: str = "k1", script: str = "true") -> StartOp:
    return StartOp(run_id="r1", path="a", attempt=1, key=key, kind="job", params={},
                   run={"container": {"command": ["sh", "-c"], "args": [f"echo x >> {marks}/a; {script}"]}})


async def collect(state: Path, *commands: StartOp, until: int) -> list[OpStatus]:
    got: list[OpStatus] = []
    async with DaemonLocalExecutor(send=got.append, state_dir=state) as ex:
        for c in commands:
            await ex.start(c)
        with anyio.fail_after(10):
            while len([g for g in got if g.status not in ("running",)]) < until:
                await anyio.sleep(0.02)
    return got


async def test_start_claims_wraps_and_records_the_exit_code(tmp_path: Path, anyio_backend: str) -> None:
    got = await collect(tmp_path / "s", cmd(tmp_path, script="exit 3"), until=1)
    assert [g.status for g in got] == ["running", "failed"] and got[-1].exit_code == 3
    attempt = tmp_path / "s" / "runs" / "r1" / "attempts" / "a@1"
    assert (attempt / "claimed").read_text() == "k1"
    assert (attempt / "exit_code").read_text() == "3"


async def test_a_claimed_attempt_is_adopted_never_run_again(tmp_path: Path, anyio_backend: str) -> None:
    state = tmp_path / "s"
    await collect(state, cmd(tmp_path), until=1)
    # a new daemon process gets the same command (replay after a crash): the recorded result
    # is reported again, the op does not run a second time
    (state / "runs" / "r1" / "attempts" / "a@1" / "result.json").unlink()
    got = await collect(state, cmd(tmp_path), until=1)
    assert [g.status for g in got] == ["succeeded"]
    assert (tmp_path / "a").read_text() == "x\n"


async def test_a_claimed_attempt_without_process_or_result_is_lost(tmp_path: Path, anyio_backend: str) -> None:
    attempt = tmp_path / "s" / "runs" / "r1" / "attempts" / "a@1"
    attempt.mkdir(parents=True)
    (attempt / "claimed").write_text("k1")
    got = await collect(tmp_path / "s", cmd(tmp_path), until=1)
    assert [(g.status, g.reason) for g in got] == [("failed", "Lost")]
    assert not (tmp_path / "a").exists()
