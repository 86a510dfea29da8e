"""``flowd serve`` as subprocesses with the local executor on the real broker: the founding
example end to end, ``kill -9`` mid-pipeline and restart, and two daemons in one group losing one.

Each op appends a line to a marker file named after its run, op and attempt, so "no attempt was
started twice" is checked on disk; "no completion event twice" with a read_committed consumer.
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
from flowd.daemon.config import DaemonConfig
from flowd.daemon.replay import replay
from flowd.daemon.testing import DaemonProcess, EventCollector, test_config
from flowd.spec import compile_path, compile_text

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.asyncio(loop_scope="session")]

ROOT = Path(__file__).resolve().parents[2]


def marked_chain(marks: Path, *, sleep: float) -> str:
    op = ('{{name: {n}, {deps}component: {{run: {{kind: job, container: {{image: x, command: [sh, -c, '
          '"echo started >> {marks}/$FLOWD_RUN_ID-$FLOWD_OP_PATH-$FLOWD_ATTEMPT; sleep {sleep}"]}}}}}}}}')
    ops = []
    for i, name in enumerate("abc"):
        deps = f"dependencies: [{'abc'[i - 1]}], " if i else ""
        ops.append("    - " + op.format(n=name, deps=deps, marks=marks, sleep=sleep))
    return "version: 1.1\nkind: component\nname: marked\nrun:\n  kind: dag\n  operations:\n" + "\n".join(ops) + "\n"


async def submit(config: DaemonConfig, pipeline) -> str:
    run_id = str(uuid.uuid4())
    await publish(config, config.topics.runs, run_id, wire.Submission(run_id=run_id, time=time.time(), pipeline=pipeline))
    return run_id


def assert_each_attempt_started_once(marks: Path, run_ids: list[str], ops: str = "abc") -> None:
    for run_id in run_ids:
        for op in ops:
            lines = (marks / f"{run_id}-{op}-1").read_text().splitlines()
            assert lines == ["started"], f"{run_id} {op} attempt 1 started {len(lines)} times"
        assert not list(marks.glob(f"{run_id}-*-2")), "an op needed a second attempt"


def assert_no_duplicate_events(events: EventCollector) -> None:
    dup = [k for k, n in Counter(e.key for e in events.events).items() if n > 1]
    assert not dup, f"events emitted twice: {dup[:5]}"


async def test_founding_example_end_to_end(kafka_broker, tmp_path: Path) -> None:
    founding = sorted((ROOT / "examples" / "founding").glob("*.yaml"))
    if not founding:
        pytest.skip("examples/founding/ has no example yet")
    config = test_config(kafka_broker.bootstrap, name="founding", state_dir=str(tmp_path / "state"), executor="local")
    result = compile_path(founding[0], hub=str(ROOT / "examples" / "hub"))
    assert result.valid, [d.format() for d in result.errors]
    daemon = DaemonProcess(config, log_path=tmp_path / "serve.log").start()
    events = EventCollector(config)
    try:
        await daemon.wait_ready()
        async with anyio.create_task_group() as tg:
            await tg.start(events.run)
            run_id = await submit(config, result.op)
            done = await events.wait_done(run_id, timeout=120)
            tg.cancel_scope.cancel()
        assert done.status == "succeeded", done.message
        assert_no_duplicate_events(events)
    finally:
        code = daemon.terminate()
    assert code == 0


async def test_kill_9_mid_pipeline_then_restart_completes_once(kafka_broker, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    config = test_config(kafka_broker.bootstrap, name="kill9", state_dir=str(tmp_path / "state"), executor="local",
                         instance_id="daemon-1", partitions=2, snapshot_interval=0.5)
    pipeline = compile_text(marked_chain(marks, sleep=1.0), source="marked.yaml", base_dir=None).op
    events = EventCollector(config)
    first = DaemonProcess(config, log_path=tmp_path / "serve-1.log").start()
    second = None
    try:
        await first.wait_ready()
        async with anyio.create_task_group() as tg:
            await tg.start(events.run)
            run_ids = [await submit(config, pipeline) for _ in range(3)]
            # kill while every run is in the middle of its pipeline (b running)
            await events.wait_for(lambda: all(
                any(isinstance(e, wire.StatusEvent) and e.path == "b" and e.status == "running" for e in events.of(r))
                for r in run_ids), timeout=30)
            first.kill9()
            killed_at = time.monotonic()
            second = DaemonProcess(config, log_path=tmp_path / "serve-2.log").start()
            await second.wait_ready()
            recovered = time.monotonic() - killed_at
            for run_id in run_ids:
                done = await events.wait_done(run_id, timeout=60)
                assert done.status == "succeeded", done.message
            await anyio.sleep(1.0)  # a late duplicate would show up now
            tg.cancel_scope.cancel()
        print(f"\nkill -9 -> restarted daemon ready in {recovered:.2f}s")
        assert_each_attempt_started_once(marks, run_ids)
        assert all(len(events.completions(r)) == 1 for r in run_ids)
        assert_no_duplicate_events(events)
        # the log replayed offline gives exactly what was emitted, despite the crash
        for partition in range(config.partitions):
            for from_snapshot in (False, True):
                report = await replay(config, partition=partition, from_snapshot=from_snapshot)
                assert not report.diverged, report
        report = await replay(config, run_id=run_ids[0])
        assert report.final == {run_ids[0]: "succeeded"} and not report.diverged
    finally:
        first.terminate()
        codes = [second.terminate()] if second is not None else []
    assert codes == [0], "the restarted daemon did not stop cleanly"


async def test_two_daemons_one_killed_the_other_adopts_and_finishes(kafka_broker, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    config = test_config(kafka_broker.bootstrap, name="pair", state_dir=str(tmp_path / "state"), executor="local",
                         partitions=4, snapshot_interval=0.5)
    pipeline = compile_text(marked_chain(marks, sleep=1.5), source="marked.yaml", base_dir=None).op
    events = EventCollector(config)
    a = DaemonProcess(config, log_path=tmp_path / "serve-a.log").start()
    b = DaemonProcess(config, log_path=tmp_path / "serve-b.log").start()
    try:
        await a.wait_ready()
        await b.wait_ready()
        async with anyio.create_task_group() as tg:
            await tg.start(events.run)
            run_ids = [await submit(config, pipeline) for _ in range(8)]
            await events.wait_for(lambda: all(
                any(isinstance(e, wire.StatusEvent) and e.path == "a" and e.status == "running" for e in events.of(r))
                for r in run_ids), timeout=30)
            a.kill9()
            killed_at = time.monotonic()
            for run_id in run_ids:
                done = await events.wait_done(run_id, timeout=60)
                assert done.status == "succeeded", done.message
            finished = time.monotonic() - killed_at
            await anyio.sleep(1.0)
            tg.cancel_scope.cancel()
        print(f"\nkill -9 of one daemon -> all runs finished by the other {finished:.2f}s later")
        assert_each_attempt_started_once(marks, run_ids)
        assert all(len(events.completions(r)) == 1 for r in run_ids)
        assert_no_duplicate_events(events)
        log_b = (tmp_path / "serve-b.log").read_text()
        assert log_b.count('"partition_ready"') > 2, "b never adopted a's partitions"
    finally:
        a.terminate()
        code_b = b.terminate()
    assert code_b == 0, "the surviving daemon did not stop cleanly"


async def test_a_daemon_joining_mid_pipeline_takes_partitions_over_cleanly(kafka_broker, tmp_path: Path) -> None:
    """A graceful rebalance (eager: every partition is revoked, snapshotted and re-assigned)
    while ops run: nothing runs twice, nothing is emitted twice, everything completes."""
    marks = tmp_path / "marks"
    marks.mkdir()
    config = test_config(kafka_broker.bootstrap, name="join", state_dir=str(tmp_path / "state"), executor="local",
                         partitions=4, snapshot_interval=60.0)
    pipeline = compile_text(marked_chain(marks, sleep=1.0), source="marked.yaml", base_dir=None).op
    events = EventCollector(config)
    a = DaemonProcess(config, log_path=tmp_path / "serve-a.log").start()
    b = DaemonProcess(config, log_path=tmp_path / "serve-b.log")
    try:
        await a.wait_ready()
        async with anyio.create_task_group() as tg:
            await tg.start(events.run)
            run_ids = [await submit(config, pipeline) for _ in range(6)]
            await events.wait_for(lambda: all(
                any(isinstance(e, wire.StatusEvent) and e.path == "a" and e.status == "running" for e in events.of(r))
                for r in run_ids), timeout=30)
            b.start()
            await b.wait_ready()
            for run_id in run_ids:
                done = await events.wait_done(run_id, timeout=60)
                assert done.status == "succeeded", done.message
            await anyio.sleep(1.0)
            tg.cancel_scope.cancel()
        assert_each_attempt_started_once(marks, run_ids)
        assert all(len(events.completions(r)) == 1 for r in run_ids)
        assert_no_duplicate_events(events)
        assert '"partition_ready"' in (tmp_path / "serve-b.log").read_text()
    finally:
        codes = [a.terminate(), b.terminate() if b.proc is not None else 0]
    assert codes == [0, 0], "a daemon did not stop cleanly"


async def test_graceful_restart_leaves_local_ops_running_and_adopts_them(kafka_broker, tmp_path: Path) -> None:
    """SIGTERM: final snapshots, then the daemon exits without stopping its op processes; the
    next daemon adopts them (no attempt runs twice, none is lost)."""
    marks = tmp_path / "marks"
    marks.mkdir()
    config = test_config(kafka_broker.bootstrap, name="graceful", state_dir=str(tmp_path / "state"),
                         executor="local", instance_id="g-1", partitions=2, snapshot_interval=60.0)
    pipeline = compile_text(marked_chain(marks, sleep=1.5), source="marked.yaml", base_dir=None).op
    events = EventCollector(config)
    first = DaemonProcess(config, log_path=tmp_path / "serve-1.log").start()
    second = DaemonProcess(config, log_path=tmp_path / "serve-2.log")
    try:
        await first.wait_ready()
        async with anyio.create_task_group() as tg:
            await tg.start(events.run)
            run_ids = [await submit(config, pipeline) for _ in range(3)]
            await events.wait_for(lambda: all(
                any(isinstance(e, wire.StatusEvent) and e.path == "a" and e.status == "running" for e in events.of(r))
                for r in run_ids), timeout=30)
            code_first = first.terminate()
            second.start()
            await second.wait_ready()
            for run_id in run_ids:
                done = await events.wait_done(run_id, timeout=60)
                assert done.status == "succeeded", done.message
            tg.cancel_scope.cancel()
        assert code_first == 0
        assert_each_attempt_started_once(marks, run_ids)
        assert_no_duplicate_events(events)
        assert '"detached_from_local_ops"' in (tmp_path / "serve-1.log").read_text()
    finally:
        codes = [first.terminate(), second.terminate() if second.proc is not None else 0]
    assert codes == [0, 0]


CURVES = """
version: 1.1
kind: component
name: curves-across-a-crash
run:
  kind: dag
  operations:
    - name: sweep
      matrix:
        kind: mapping
        values: [{base: 1}, {base: 1.5}, {base: 6}, {base: 8}]
        earlyStopping:
          - {kind: metric_early_stopping, metric: loss, value: 0, optimization: minimize,
             policy: {kind: median, evaluationInterval: 1, minSamples: 3}}
      component:
        inputs: [{name: base, type: float}]
        run:
          kind: job
          container:
            image: x
            command: [sh, -c]
            args:
              - |
                sleep 3
                for s in 1 2 3 4 5 6 7 8 9 10; do
                  echo "{\\"step\\": $s, \\"loss\\": $(awk "BEGIN{print {{ base }}/$s}")}" >> "$FLOWD_METRICS"
                  sleep 0.3
                done
"""


async def test_metrics_of_adopted_processes_are_read_after_a_crash(kafka_broker, tmp_path: Path) -> None:
    """kill -9 while the matrix children run and before they report a point: the next daemon
    adopts the processes, reads their $FLOWD_METRICS files, and the median policy stops the
    child it rules out (without the adopter reading them, every child would succeed)."""
    config = test_config(kafka_broker.bootstrap, name="curves", state_dir=str(tmp_path / "state"), executor="local",
                         instance_id="c-1", partitions=2, snapshot_interval=0.5)
    pipeline = compile_text(CURVES, source="curves.yaml", base_dir=None).op
    events = EventCollector(config)
    first = DaemonProcess(config, log_path=tmp_path / "serve-1.log").start()
    second = DaemonProcess(config, log_path=tmp_path / "serve-2.log")
    try:
        await first.wait_ready()
        async with anyio.create_task_group() as tg:
            await tg.start(events.run)
            run_id = await submit(config, pipeline)
            await events.wait_for(lambda: sum(
                1 for e in events.of(run_id) if isinstance(e, wire.StatusEvent) and e.path.startswith("sweep[")
                and e.status == "running") == 4, timeout=30)
            first.kill9()
            second.start()
            await second.wait_ready()
            done = await events.wait_done(run_id, timeout=60)
            tg.cancel_scope.cancel()
        assert done.status == "succeeded", done.message
        final = {e.path: e for e in events.of(run_id) if isinstance(e, wire.StatusEvent) and e.path.startswith("sweep[")}
        assert final["sweep[0]"].status == "succeeded"
        assert final["sweep[3]"].status == "stopped", final["sweep[3]"]
        assert '"adopting_attempt"' in (tmp_path / "serve-2.log").read_text()
    finally:
        first.terminate()
        if second.proc is not None:
            second.terminate()
