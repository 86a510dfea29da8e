"""Kills aimed at each step of the local executor's start sequence, on the real broker.

A real ``flowd serve --executor local`` runs with ``FLOWD_TEST_CRASH_AT=<step>`` and
``FLOWD_TEST_CRASH_DIR`` (flowd.faults): it SIGKILLs itself the first time each attempt reaches
that step. The test restarts it (same settings, so the next op's attempt dies at the same step)
until the run completes, then checks, per op: it ran exactly once (a marker line per start),
succeeded with the outputs it wrote, and nothing was ever reported ``Lost``. The number of
kills each step survived is printed (``-s``) for the closing note.

The steps (flowd/daemon/launch.py has the state machine they interrupt):
``local.claimed``    launch claimed, nothing spawned
``local.voided``     an adopter voided that unstarted launch, not relaunched yet
``local.spawned``    process spawned, pid.json not written (also with the shim delayed, so the
                     adopter races it for the start record)
``local.pid_recorded``  pid.json written, ``running`` not reported
``local.exited``     process reaped (exit code and outputs on disk), result.json not written
``local.result_recorded``  result.json written, the report not sent
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import anyio
import pytest

from flowd.daemon import wire
from flowd.daemon.client import publish
from flowd.daemon.testing import DaemonProcess, EventCollector, read_all, restart_after_crashes, test_config
from flowd.spec import compile_text

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.asyncio(loop_scope="session")]

OPS = "abc"


def chain(marks: Path, *, sleep: float) -> str:
    op = ('{{name: {n}, {deps}component: {{run: {{kind: job, container: {{image: x, command: [sh, -c, '
          '"echo started >> {marks}/$FLOWD_RUN_ID-$FLOWD_OP_PATH-$FLOWD_ATTEMPT; sleep {sleep}; '
          'echo \'{{\\"op\\": \\"{n}\\"}}\' > $FLOWD_OUTPUTS"]}}}}}}}}')
    ops = []
    for i, name in enumerate(OPS):
        deps = f"dependencies: [{OPS[i - 1]}], " if i else ""
        ops.append("    - " + op.format(n=name, deps=deps, marks=marks, sleep=sleep))
    return "version: 1.1\nkind: component\nname: crashy\nrun:\n  kind: dag\n  operations:\n" + "\n".join(ops) + "\n"


STEPS = [
    pytest.param("local.claimed", {}, 1, id="claimed"),
    pytest.param("local.spawned", {}, 1, id="spawned"),
    # the shim starts late: at 1.5 s it may win the start record before the restarted daemon
    # looks, or lose it (timing); at 6 s the restarted daemon voids the launch first and
    # starts it again
    pytest.param("local.spawned", {"FLOWD_TEST_SHIM_DELAY": "1.5"}, 1, id="spawned-shim-late"),
    pytest.param("local.spawned", {"FLOWD_TEST_SHIM_DELAY": "6"}, 1, id="spawned-shim-later"),
    pytest.param("local.pid_recorded", {}, 1, id="pid_recorded"),
    pytest.param("local.exited", {}, 1, id="exited"),
    pytest.param("local.result_recorded", {}, 1, id="result_recorded"),
]


@pytest.mark.parametrize(("steps", "extra_env", "kills_per_op"), STEPS)
async def test_a_kill_at_each_start_step_loses_and_repeats_nothing(
        kafka_broker, tmp_path: Path, steps: str, extra_env: dict[str, str], kills_per_op: int) -> None:
    marks, crashes = tmp_path / "marks", tmp_path / "crashes"
    marks.mkdir()
    crashes.mkdir()
    config = test_config(kafka_broker.bootstrap, name="aim", state_dir=str(tmp_path / "state"), executor="local",
                         instance_id="aim-1", partitions=1, snapshot_interval=0.5)
    env = {"FLOWD_TEST_CRASH_AT": steps, "FLOWD_TEST_CRASH_DIR": str(crashes), **extra_env}
    pipeline = compile_text(chain(marks, sleep=1.0), source="crashy.yaml", base_dir=None).op
    events = EventCollector(config)
    daemons = [DaemonProcess(config, log_path=tmp_path / "serve-0.log", env=env).start()]
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(events.run)
            await daemons[-1].wait_ready()
            run_id = str(uuid.uuid4())
            await publish(config, config.topics.runs, run_id,
                          wire.Submission(run_id=run_id, time=time.time(), pipeline=pipeline))
            with anyio.fail_after(180):
                kills = await restart_after_crashes(daemons, lambda: bool(events.completions(run_id)),
                                                    log_dir=tmp_path)
            await anyio.sleep(1.0)  # a late duplicate or Lost report would show up now
            tg.cancel_scope.cancel()
        done = events.completions(run_id)
        statuses = [e for e in events.of(run_id) if isinstance(e, wire.StatusEvent)]
        assert [d.status for d in done] == ["succeeded"], [(e.path, e.status, e.reason, e.message) for e in statuses]
        assert not [e for e in statuses if e.reason == "Lost"], "an attempt was reported Lost"
        for op in OPS:
            lines = (marks / f"{run_id}-{op}-1").read_text().splitlines()
            assert lines == ["started"], f"{op} started {len(lines)} times"
            ok = [e for e in statuses if e.path == op and e.status == "succeeded"]
            assert ok and ok[0].outputs == {"op": op}, f"{op}: {ok}"
        assert not list(marks.glob(f"{run_id}-*-2")), "an op needed a second attempt"
        assert len(list(crashes.iterdir())) == kills == kills_per_op * len(OPS), \
            f"{kills} kills, expected {kills_per_op} per op"
        logs = "".join(p.read_text() for p in tmp_path.glob("serve-*.log"))
        print(f"\n{steps}{' ' + str(extra_env) if extra_env else ''}: survived {kills} of {kills} aimed kills "
              f"(relaunched unstarted: {logs.count('relaunching_unstarted_attempt')}, "
              f"adopted: {logs.count('adopting_attempt')})")
    finally:
        codes = [d.terminate() for d in daemons]
    assert codes[-1] == 0


async def test_two_kills_in_a_row_on_one_start_dead_letter_its_record_and_run_nothing(
        kafka_broker, tmp_path: Path) -> None:
    """Killed when it claimed the first op's launch, then again when the next owner voided that
    unstarted launch: both deaths happened while handling the same submission, so by the poison
    rule (docs/daemon.md, "Poison records") the third owner dead-letters it (`crashed`) instead of
    dying a third time. The truth is told: no process ever ran, nothing reported Lost, and the
    partition goes on."""
    marks, crashes = tmp_path / "marks", tmp_path / "crashes"
    marks.mkdir()
    crashes.mkdir()
    config = test_config(kafka_broker.bootstrap, name="aim2", state_dir=str(tmp_path / "state"), executor="local",
                         instance_id="aim-2", partitions=1, snapshot_interval=0.5)
    env = {"FLOWD_TEST_CRASH_AT": "local.claimed,local.voided", "FLOWD_TEST_CRASH_DIR": str(crashes)}
    pipeline = compile_text(chain(marks, sleep=0.2), source="crashy.yaml", base_dir=None).op
    daemons = [DaemonProcess(config, log_path=tmp_path / "serve-0.log", env=env).start()]
    kills = 0
    try:
        await daemons[-1].wait_ready()
        run_id = str(uuid.uuid4())
        await publish(config, config.topics.runs, run_id, wire.Submission(run_id=run_id, time=time.time(), pipeline=pipeline))
        with anyio.fail_after(120):
            while True:
                dead = [wire.decode_deadletter(r.value) for r in await read_all(config, config.topics.deadletter)]
                if dead:
                    break
                proc = daemons[-1].proc
                assert proc is not None
                if proc.poll() is not None:
                    assert proc.returncode == -9, f"daemon exited {proc.returncode}, not by its crash point"
                    kills += 1
                    daemons.append(DaemonProcess(config, log_path=tmp_path / f"serve-{kills}.log", env=env).start())
                await anyio.sleep(0.2)
        assert [(d.reason, d.offset) for d in dead] == [("crashed", 0)]
        assert kills == 2 and len(list(crashes.iterdir())) == 2
        assert list(marks.iterdir()) == [], "a process ran although its launch was voided"
        logs = "".join(p.read_text() for p in tmp_path.glob("serve-*.log"))
        assert "Lost" not in logs
    finally:
        codes = [d.terminate() for d in daemons]
    assert codes[-1] == 0
