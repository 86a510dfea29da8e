"""Hooks under the real daemon (POLYFLOW §8.3) on the real broker, with kills aimed at the two
steps of a hook run's submission: sent in the source's transaction but not committed
(``hooks.produced``), and committed but nothing after it done (``hooks.committed``).

A real ``flowd serve --executor local`` runs with ``FLOWD_TEST_CRASH_AT=<step>`` and
``FLOWD_TEST_CRASH_DIR`` (flowd.faults): it SIGKILLs itself the first time a hook run reaches
that step; a restarted daemon (same settings) passes it. Then, per hook run: it ran exactly once
(one marker line, written by the hook's process), its ``hook`` event was emitted once, the
source pipeline's status is its own (a failing hook does not fail it), and the hook run's
``done`` event names its derived run id. Without a kill, the same checks hold.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path

import anyio
import pytest

from flowd.daemon import wire
from flowd.daemon.client import publish
from flowd.daemon.testing import DaemonProcess, EventCollector, test_config
from flowd.spec import compile_text

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.asyncio(loop_scope="session")]


def hub(tmp_path: Path, marks: Path) -> Path:
    folder = tmp_path / "hub"
    folder.mkdir()
    # the hook writes one line per start into a file named after its own run id, then fails:
    # a failing hook must not fail its source
    (folder / "notify.yaml").write_text(
        "kind: component\nname: notify\ninputs: [{name: status, type: str}]\n"
        "run: {kind: job, container: {image: x, command: [sh, -c, "
        f"'echo \"{{{{ name }}}} {{{{ status }}}}\" >> {marks}/$FLOWD_RUN_ID; exit 3']}}}}\n")
    return folder


PIPE = """
version: 1.1
kind: component
name: hooked
hooks: [{hubRef: notify, trigger: done}]
run:
  kind: dag
  operations:
    - name: a
      hooks: [{hubRef: notify, trigger: succeeded}, {hubRef: notify, trigger: failed}]
      component: {run: {kind: job, container: {image: x, command: [sh, -c, "sleep 0.5"]}}}
"""


@pytest.mark.parametrize("step", [None, "hooks.produced", "hooks.committed"])
async def test_each_hook_runs_exactly_once_across_a_kill(kafka_broker, tmp_path: Path, step: str | None) -> None:
    marks, crashes = tmp_path / "marks", tmp_path / "crashes"
    marks.mkdir()
    crashes.mkdir()
    config = test_config(kafka_broker.bootstrap, name=f"hooks-{step or 'plain'}", state_dir=str(tmp_path / "state"),
                         executor="local", instance_id="hooks-1", partitions=2, snapshot_interval=0.5)
    env = {"FLOWD_TEST_CRASH_AT": step, "FLOWD_TEST_CRASH_DIR": str(crashes)} if step else {}
    result = compile_text(PIPE, source="hooked.yaml", base_dir=None, hub=str(hub(tmp_path, marks)))
    assert result.valid, [d.format() for d in result.errors]
    events = EventCollector(config)
    daemons = [DaemonProcess(config, log_path=tmp_path / "serve-0.log", env=env).start()]
    kills = 0
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(events.run)
            await daemons[-1].wait_ready()
            run_id = str(uuid.uuid4())
            await publish(config, config.topics.runs, run_id,
                          wire.Submission(run_id=run_id, time=time.time(), pipeline=result.op))

            def hooks() -> list[wire.HookEvent]:
                return [e for e in events.of(run_id) if isinstance(e, wire.HookEvent)]

            def all_done() -> bool:
                created = {h.hook_run_id for h in hooks() if h.status == "created"}
                return len(created) == 2 and all(events.completions(h) for h in created)

            with anyio.fail_after(90):
                while not all_done():
                    proc = daemons[-1].proc
                    if proc is not None and proc.poll() is not None:  # killed itself at the step
                        kills += 1
                        daemons.append(DaemonProcess(config, log_path=tmp_path / f"serve-{kills}.log",
                                                     env=env).start())
                        await daemons[-1].wait_ready()
                    await anyio.sleep(0.2)
            await anyio.sleep(1.5)  # a second hook run or a late duplicate would show up now
            tg.cancel_scope.cancel()
    finally:
        for d in daemons:
            if d.proc is not None and d.proc.poll() is None:
                d.terminate()
    print(f"\nstep {step}: {kills} kill(s)")
    if step:
        assert kills >= 1, "the crash point was never reached"
    # the source: a succeeded, the pipeline succeeded; its hook events, once each
    source_done = events.completions(run_id)
    assert [d.status for d in source_done] == ["succeeded"]
    got = sorted((h.path, h.index, h.trigger_status, h.status) for h in hooks())
    assert got == [("", 0, "succeeded", "created"), ("a", 0, "succeeded", "created")]
    assert not [k for k, n in Counter(e.key for e in events.events).items() if n > 1], "an event twice"
    # each hook run: ran once (one marker line), failed on its own, linked by its derived id
    for h in hooks():
        lines = (marks / h.hook_run_id).read_text().splitlines()
        expected = "hooked succeeded" if h.path == "" else "a succeeded"
        assert lines == [expected], f"hook run {h.hook_run_id} started {len(lines)} times"
        assert [d.status for d in events.completions(h.hook_run_id)] == ["failed"]
    assert len(list(marks.iterdir())) == 2, "a hook run nobody asked for"
