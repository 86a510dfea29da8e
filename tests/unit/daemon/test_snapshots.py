"""Format-2 snapshots without Kafka: blobs round-trip to the same partition state, the attempts in
flight are derived (and those that cannot be are kept), only changed runs are encoded."""

from __future__ import annotations

import anyio
import msgspec

from flowd.daemon import snapshot_job, snapshots, wire
from flowd.daemon.partition import Outcome, PartitionState, Record
from flowd.daemon.snapshot_job import SnapshotJob
from flowd.engine import Engine, OpStatus, StartOp, Submit
from flowd.spec.compiled import Component, Dag, Op, Termination

RUN = {"container": {"image": "busybox", "command": ["true"]}}


def wide(n: int, *, templated: bool = False, timeout: float | None = None) -> Op:
    run = {"container": {"image": "busybox", "command": ["echo", "{{ globals.status }}"]}} if templated else RUN
    term = Termination(timeout=timeout) if timeout else Termination()
    ops = [Op(name=f"w{i}", component=Component(kind="job", run=run), termination=term) for i in range(n)]
    return Op(name="wide", component=Component(kind="dag", dag=Dag(ops=ops)))


def submitted(*pipelines: Op) -> PartitionState:
    state = PartitionState(0, compiler=lambda m: (None, []))
    for i, p in enumerate(pipelines):
        s = wire.Submission(run_id=f"r{i}", time=1.0, pipeline=p)
        state.apply(Record("runs", 0, i, s.run_id.encode(), wire.encode(s)), Outcome())
    return state


def report(state: PartitionState, run_id: str, path: str, status: str, offset: int = 100) -> None:
    msg = wire.OpReport(run_id=run_id, path=path, attempt=1, status=status, time=2.0)
    state.apply(Record("runs", 0, offset, run_id.encode(), wire.encode(msg)), Outcome())


def round_trip(state: PartitionState) -> PartitionState:
    return restore_plan(state, anyio.run(snapshots.encode_changes, state))


def restore_plan(state: PartitionState, plan: snapshots.Plan) -> PartitionState:
    store: dict[int, bytes] = {}
    refs = {}
    for name, blob in plan.blobs.items():
        offsets = []
        for chunk in snapshots.chunks(blob):
            assert len(chunk) <= snapshots.CHUNK_BYTES
            offsets.append(len(store))
            store[len(store)] = chunk
        refs[name] = wire.BlobRef(seq=plan.seq, size=len(blob), offsets=offsets)
    index = snapshots.next_index(state, plan, refs)
    blobs = {n: b"".join(store[o] for o in r.offsets) for n, r in {**index.specs, **index.runs}.items()}
    if index.daemon is not None:
        blobs[snapshots.DAEMON] = b"".join(store[o] for o in index.daemon.offsets)
    head = wire.SnapshotHead(partition=0, offset=7, time=1.0, seq=plan.seq, index=refs[snapshots.DAEMON])
    return snapshots.restore_blobs(head, index, head.index, blobs, compiler=state.compiler)


def test_blobs_restore_the_same_state_and_attempts() -> None:
    state = submitted(wide(50), wide(3, templated=True), wide(2))
    report(state, "r0", "w0", "succeeded")
    report(state, "r2", "w1", "running")
    restored = round_trip(state)
    assert restored.engine.snapshot() == state.engine.snapshot()
    assert restored.daemon.inflight == state.daemon.inflight
    assert len(restored.daemon.inflight) == 49 + 3 + 2


def test_templated_attempts_are_kept_and_plain_ones_derived() -> None:
    state = submitted(wide(3, templated=True), wide(3))
    a0 = state.run_attempts("r0", parts=1)
    a1 = state.run_attempts("r1", parts=1)
    assert len(a0.started) == 3, "commands rendered from templates must be stored"
    assert a1.started == [] and a1.not_in_flight == []


def test_derived_start_ops_equal_the_dispatched_ones() -> None:
    engine = Engine()
    started = [c for c in engine.handle(Submit(run_id="r", pipeline=wide(20), time=1.0)) if isinstance(c, StartOp)]
    engine.handle(OpStatus(run_id="r", path="w3", attempt=1, status="running", time=2.0))
    assert sorted(engine.in_flight("r"), key=lambda c: c.key) == sorted(started, key=lambda c: c.key)


def test_an_op_ended_by_a_timeout_while_the_executor_stops_it_is_kept() -> None:
    state = submitted(wide(2, timeout=5.0))
    timer = wire.TimerFiring(run_id="r0", timer_id="timeout:w0#1", time=10.0)
    state.apply(Record("runs", 0, 5, b"r0", wire.encode(timer)), Outcome())
    restored = round_trip(state)
    assert restored.daemon.inflight == state.daemon.inflight
    stopping = [c.key for c, stop in restored.pending_attempts() if stop]
    assert stopping == ["r0/w0#1"], "the timed-out attempt must be re-issued and stopped again"
    assert sorted(k for k, stop in ((c.key, s) for c, s in restored.pending_attempts()) if stop) == \
        sorted(k for k, stop in ((c.key, s) for c, s in state.pending_attempts()) if stop)


def test_only_changed_runs_are_encoded_and_forgotten_runs_go() -> None:
    state = submitted(wide(2), wide(2), wide(2))
    plan = anyio.run(snapshots.encode_changes, state)
    specs = {n for n in plan.blobs if n.startswith(snapshots.SPEC)}
    assert len(specs) == 1, "three runs of one pipeline share one spec blob"
    assert set(plan.blobs) == {"run:r0", "run:r1", "run:r2", snapshots.DAEMON} | specs
    refs = {n: wire.BlobRef(seq=plan.seq, size=len(b), offsets=[0]) for n, b in plan.blobs.items()}
    snapshots.committed(state, plan, snapshots.next_index(state, plan, refs), refs[snapshots.DAEMON])
    report(state, "r1", "w0", "succeeded")
    plan = anyio.run(snapshots.encode_changes, state)
    assert set(plan.blobs) == {"run:r1"}, "an unchanged run or daemon blob was encoded again"
    state.engine.forget("r2")
    plan = anyio.run(snapshots.encode_changes, state)
    assert plan.removed == ["run:r2"], "the spec blob stays: r0 and r1 still use it"
    assert ("run:r2", refs["run:r2"]) in snapshots.superseded(state, plan)


def test_a_spec_blob_is_shared_on_restore_and_goes_with_its_last_run() -> None:
    state = submitted(wide(40), wide(40), wide(3))
    plan = anyio.run(snapshots.encode_changes, state)
    specs = sorted(n for n in plan.blobs if n.startswith(snapshots.SPEC))
    assert len(specs) == 2
    # the pipeline is stored once, not in every run blob
    pipeline = msgspec.msgpack.encode(state.engine.runs["r0"].pipeline)
    assert pipeline not in plan.blobs["run:r0"] and pipeline in plan.blobs[snapshots.SPEC + state.run_specs["r0"][1]]
    restored = round_trip(submitted(wide(40), wide(40), wide(3)))
    assert restored.engine.runs["r0"].pipeline is restored.engine.runs["r1"].pipeline
    assert restored.engine.runs["r0"].pipeline == state.engine.runs["r0"].pipeline
    refs = {n: wire.BlobRef(seq=plan.seq, size=len(b), offsets=[0]) for n, b in plan.blobs.items()}
    snapshots.committed(state, plan, snapshots.next_index(state, plan, refs), refs[snapshots.DAEMON])
    state.engine.forget("r2")
    plan = anyio.run(snapshots.encode_changes, state)
    gone = [n for n in plan.removed if n.startswith(snapshots.SPEC)]
    assert len(gone) == 1 and gone[0] in specs, "the spec of the forgotten run's pipeline goes with it"
    assert snapshots.next_index(state, plan, {}).specs.keys() == set(specs) - set(gone)


def test_a_run_blob_written_before_spec_blobs_still_restores() -> None:
    """Format 2 as first released: the pipeline inside the run's engine parts, no ``spec``."""
    state = submitted(wide(5), wide(5, templated=True))
    report(state, "r0", "w0", "succeeded")
    blobs = {}
    for run_id in state.engine.runs:
        parts = list(state.engine.snapshot_run(run_id))
        blobs[f"run:{run_id}"] = snapshots.frames([msgspec.msgpack.encode(state.run_attempts(run_id, len(parts))), *parts])
    daemon = snapshots.frames([msgspec.msgpack.encode(state.daemon_blob())])
    ref = wire.BlobRef(seq=1, size=1, offsets=[0])
    index = msgspec.msgpack.decode(msgspec.msgpack.encode({"runs": {n: ref for n in blobs}, "daemon": ref}),
                                   type=wire.SnapshotIndex)
    head = wire.SnapshotHead(partition=0, offset=7, time=1.0, seq=1, index=ref)
    restored = snapshots.restore_blobs(head, index, ref, {**blobs, snapshots.DAEMON: daemon}, compiler=state.compiler)
    assert restored.engine.snapshot() == state.engine.snapshot()
    assert restored.daemon.inflight == state.daemon.inflight


def test_frames_and_chunks_round_trip_a_blob_larger_than_a_chunk() -> None:
    parts = [b"x" * 700_000, msgspec.msgpack.encode({"a": 1}), b"y" * 500_000]
    blob = snapshots.frames(parts)
    pieces = list(snapshots.chunks(blob))
    assert len(pieces) == 2 and all(len(p) <= snapshots.CHUNK_BYTES for p in pieces)
    assert [bytes(f) for f in snapshots.read_frames(b"".join(pieces))] == parts


def test_format_is_told_apart() -> None:
    old = wire.encode_snapshot(submitted(wide(1)).snapshot(offset=1, time=1.0))
    head = wire.encode_head(wire.SnapshotHead(partition=0, offset=1, time=1.0, seq=1,
                                              index=wire.BlobRef(seq=1, size=1, offsets=[0])))
    assert wire.snapshot_format(old) == 1 and wire.snapshot_format(head) == 2


def runs_of(state: PartitionState) -> dict[str, bytes]:
    return {r: msgspec.msgpack.encode(run) for r, run in state.engine.runs.items()}


def test_a_background_snapshot_is_the_state_at_its_offset_whatever_is_applied_meanwhile(monkeypatch) -> None:
    """Copy-on-write by run: records applied while the job encodes (to the run it is in the middle
    of, to a run it has not reached) do not leak into it; runs they change stay dirty."""
    monkeypatch.setattr(snapshots, "SLICE_SECONDS", 0.0)
    monkeypatch.setattr(snapshot_job, "SLICE_SECONDS", 0.0)
    monkeypatch.setattr(snapshot_job, "NODES_PER_PART", 4)  # r0: a head and 5 parts of nodes
    state = submitted(wide(20), wide(3), wide(3, templated=True))
    at_offset = runs_of(state)
    inflight = dict(state.daemon.inflight)
    job = SnapshotJob(state, offset=7)
    assert job.runs == ["r0", "r1", "r2"] and not state.dirty

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(job.encode)
            await anyio.sleep(0)
            await anyio.sleep(0)  # the job is inside r0 (its head and first part encoded)
            assert "run:r0" not in job.plan.blobs
            report(state, "r0", "w3", "succeeded")
            report(state, "r2", "w1", "failed")
            assert {"run:r0", "run:r2"} <= job.plan.blobs.keys(), "a change must wait for its run's blob"
    anyio.run(main)
    assert job.plan.forced == 2
    assert state.before_change is None
    assert state.dirty == {"r0", "r2"}, "runs changed after the offset are for the next snapshot"
    assert runs_of(state) != at_offset
    restored = restore_plan(state, job.plan)
    assert runs_of(restored) == at_offset
    assert restored.daemon.inflight == inflight


def test_a_background_snapshot_that_fails_leaves_its_runs_dirty() -> None:
    state = submitted(wide(2), wide(2))
    job = SnapshotJob(state, offset=3)
    report(state, "r1", "w0", "succeeded")
    job.failed()
    assert state.dirty == {"r0", "r1"} and state.before_change is None
