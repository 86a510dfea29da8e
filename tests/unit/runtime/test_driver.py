"""The driver loop with the real engine and real processes: routing, services, timeouts,
stalls, and resuming after a crash without re-running what succeeded."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

from flowd.engine.core import Engine
from flowd.engine.messages import StartOp, StatusChanged, Submit
from flowd.engine.view import RunView
from flowd.runtime.driver import Driver
from flowd.runtime.replay import restore_run
from flowd.runtime.store import RunRecord, SnapshotStore, StoreError
from flowd.spec.compiled import IOSpec, Termination
from tests.unit.engine.build import dag, job, ref


class Lines:
    def __init__(self) -> None:
        self.changes: list[StatusChanged] = []
        self.notes: list[str] = []

    def status(self, change: StatusChanged) -> None:
        self.changes.append(change)

    def note(self, text: str) -> None:
        self.notes.append(text)


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


def new_record(run_id: str = "run-1") -> RunRecord:
    return RunRecord(run_id=run_id, file="f.yaml", file_sha256="", params={}, engine=b"")


async def drive(pipeline, store: SnapshotStore, *, record: RunRecord | None = None, engine: Engine | None = None,
                progress: Lines | None = None) -> RunView:
    record = record or new_record()
    initial = [] if engine is not None else [Submit(run_id=record.run_id, pipeline=pipeline, time=time.time())]
    driver = Driver(engine or Engine(), record=record, store=store, progress=progress or Lines(), grace=1.0,
                    handle_signals=False)
    with anyio.fail_after(20):
        return await driver.run(initial)


async def test_outputs_flow_downstream_and_every_status_reaches_progress(tmp_path: Path) -> None:
    pipeline = dag("p", [
        job("a", outputs=[IOSpec(name="n", type="int")],
            command=sh('echo \'{"n": 41}\' > "$FLOWD_OUTPUTS"')),
        job("b", upstream=["a"], params={"n": ref("ops.a", "outputs.n")}, inputs=[IOSpec(name="n", type="int")],
            outputs=[IOSpec(name="m", type="int")],
            command=sh('echo "{\\"m\\": $(( {{ n }} + 1 ))}" > "$FLOWD_OUTPUTS"')),
    ])
    progress = Lines()
    view = await drive(pipeline, SnapshotStore(tmp_path), progress=progress)
    assert view.status == "succeeded"
    assert view.ops["b"].outputs == {"m": 42}
    assert [c.status for c in progress.changes if c.path == "a"][-3:] == ["queued", "running", "succeeded"]
    assert progress.changes[-1].path == "" and progress.changes[-1].status == "succeeded"


async def test_timeout_fails_the_op_and_kills_the_process(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    pipeline = dag("p", [job("slow", command=sh(f"sleep 5; touch {marker}"), termination=Termination(timeout=0.3))])
    t0 = time.monotonic()
    view = await drive(pipeline, SnapshotStore(tmp_path))
    assert time.monotonic() - t0 < 3
    assert view.status == "failed" and view.ops["slow"].status == "failed"
    assert "timed out" in view.ops["slow"].message
    await anyio.sleep(0.1)
    assert not marker.exists()


async def test_retries_run_the_command_again(tmp_path: Path) -> None:
    count = tmp_path / "count"
    pipeline = dag("p", [job("flaky", command=sh(f"echo x >> {count}; [ $(wc -l < {count}) -ge 3 ]"),
                             termination=Termination(max_retries=3))])
    view = await drive(pipeline, SnapshotStore(tmp_path))
    assert view.ops["flaky"].status == "succeeded" and view.ops["flaky"].attempts == 3


async def test_a_service_runs_until_the_pipeline_ends(tmp_path: Path) -> None:
    pipeline = dag("p", [
        job("svc", kind="service", command=sh("trap 'exit 0' TERM; while :; do sleep 0.05; done")),
        job("work", command=sh("sleep 0.2")),
    ])
    view = await drive(pipeline, SnapshotStore(tmp_path))
    assert view.status == "succeeded"
    assert view.ops["svc"].status == "succeeded" and view.ops["work"].status == "succeeded"


async def test_a_stuck_run_is_stopped_instead_of_hanging(tmp_path: Path) -> None:
    pipeline = dag("p", [job("wait", is_approved=False), job("after", upstream=["wait"])])
    progress = Lines()
    view = await drive(pipeline, SnapshotStore(tmp_path), progress=progress)
    assert view.status == "stopped"
    assert any("nothing is running" in n and "wait" in n for n in progress.notes)


class CrashingDriver(Driver):
    """Stands for a kill -9: right after the batch ``crash_when`` accepts is durable (snapshot or
    journal append), the driver dies before carrying out its commands."""

    crash_when = staticmethod(lambda record: False)

    def _write_snapshot(self, data: bytes) -> None:
        super()._write_snapshot(data)
        self._maybe_crash()

    def _append(self, frame: bytes) -> None:
        super()._append(frame)
        self._maybe_crash()

    def _maybe_crash(self) -> None:
        if self.crash_when(self.record):
            raise StoreError("simulated crash")


async def test_resume_after_a_crash_does_not_rerun_succeeded_ops(tmp_path: Path) -> None:
    log = tmp_path / "log"
    pipeline = dag("p", [
        job("a", command=sh(f"echo a >> {log}")),
        job("b", upstream=["a"], command=sh(f"echo b >> {log}; sleep 0.3; echo b-done >> {log}")),
        job("c", upstream=["b"], command=sh(f"echo c >> {log}")),
    ])
    # crash as soon as b is in flight (its StartOp saved): a has succeeded, b runs
    store = SnapshotStore(tmp_path)
    crashing = CrashingDriver(Engine(), record=new_record(), store=store, progress=Lines(), grace=1.0,
                              handle_signals=False)
    crashing.crash_when = lambda r: any(cmd.path == "b" for cmd in r.attempts.values())
    with pytest.raises(BaseException) as info, anyio.fail_after(20):
        await crashing.run([Submit(run_id="run-1", pipeline=pipeline, time=time.time())])
    assert info.group_contains(StoreError) if isinstance(info.value, BaseExceptionGroup) else True
    assert crashing.stats["appends"] >= 1  # b's start was journaled, not in the snapshot
    restored = restore_run(store, "run-1")
    assert restored is not None and restored.record.done is None and restored.replayed >= 1
    assert [c.path for c in restored.record.attempts.values()] == ["b"]
    view = await drive(None, store, record=restored.record, engine=restored.engine)
    assert view.status == "succeeded"
    assert [v.status for v in view.ops.values()] == ["succeeded"] * 3
    lines = log.read_text().split()
    assert lines.count("a") == 1 and lines.count("c") == 1 and lines[-2:] == ["b-done", "c"]


async def test_resume_replays_a_result_recorded_just_before_the_crash(tmp_path: Path) -> None:
    log = tmp_path / "log"
    pipeline = dag("p", [job("a", command=sh(f"echo a >> {log}")), job("b", upstream=["a"], command=sh(f"echo b >> {log}"))])
    store = SnapshotStore(tmp_path)
    record = new_record()
    # the engine has started a; the process ran and recorded its result, but the crash came
    # before the engine heard of it
    view = await drive(pipeline, store, record=record)
    assert view.status == "succeeded"
    # rewind: restore the engine from a snapshot where a was in flight
    early = Engine()
    commands = early.handle(Submit(run_id="run-1", pipeline=pipeline, time=time.time()))
    start_a = next(c for c in commands if isinstance(c, StartOp))
    rewound = new_record()
    rewound.engine = early.snapshot()
    rewound.attempts = {start_a.key: start_a}
    view = await drive(None, store, record=rewound, engine=Engine.restore(rewound.engine))
    assert view.status == "succeeded"
    assert log.read_text().split().count("a") == 1
