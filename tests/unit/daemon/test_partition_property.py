"""Property: a partition restored from a snapshot taken at any record, then fed the rest of
the log, ends in the same state and emits the same events as one that never stopped -- with
duplicated, late and failing reports, stops and resubmissions mixed in (what recovery relies on)."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from flowd.daemon import wire
from flowd.daemon.partition import Outcome, PartitionState, Record
from flowd.engine.messages import StartOp
from flowd.spec.compiled import Component, Dag, Op, Termination

RUN = {"container": {"image": "x", "command": ["true"]}}


def pipeline(width: int, retries: int) -> Op:
    ops = [Op(name="src", component=Component(kind="job", run=RUN), termination=Termination(max_retries=retries))]
    ops += [Op(name=f"w{i}", component=Component(kind="job", run=RUN), upstream=["src"]) for i in range(width)]
    return Op(name="p", component=Component(kind="dag", dag=Dag(ops=ops)))


def no_compiler(msg: wire.Submission):
    return None, []


@st.composite
def scripts(draw: st.DrawFn) -> tuple[list[bytes], int]:
    """A log: submissions, then reports for whatever was started, in a drawn order, with
    duplicates, failures and stops; plus the index where the snapshot is taken."""
    runs = draw(st.integers(1, 3))
    width = draw(st.integers(0, 3))
    retries = draw(st.integers(0, 1))
    log = [wire.encode(wire.Submission(run_id=f"r{i}", time=1.0, pipeline=pipeline(width, retries))) for i in range(runs)]
    # simulate the executor against a scratch partition to learn which attempts exist
    scratch = PartitionState(0, compiler=no_compiler)
    pending: list[StartOp] = []
    i = 0
    t = 2.0
    while i < len(log) and len(log) < 60:
        out = Outcome()
        scratch.apply(Record("runs", 0, i, run_key(log[i]), log[i]), out)
        pending += [c for c in out.effects if isinstance(c, StartOp)]
        i += 1
        if i == len(log) and pending:
            cmd = pending.pop(draw(st.integers(0, len(pending) - 1)))
            status = draw(st.sampled_from(["succeeded", "succeeded", "failed", "running"]))
            t += 1
            report = wire.encode(wire.OpReport(run_id=cmd.run_id, path=cmd.path, attempt=cmd.attempt, status=status, time=t))
            log.append(report)
            if status == "running":
                pending.append(cmd)
            if draw(st.booleans()):
                log.append(report)  # a redelivered report
            if draw(st.integers(0, 9)) == 0:
                log.append(wire.encode(wire.StopCommand(run_id=cmd.run_id, time=t)))
            if draw(st.integers(0, 9)) == 0:
                log.append(log[0])  # a resubmission
    cut = draw(st.integers(0, len(log)))
    return log, cut


def run_key(value: bytes) -> bytes:
    return msgspec.json.decode(value)["run_id"].encode()


def feed(state: PartitionState, log: list[bytes], start: int) -> list[str]:
    keys = []
    for i in range(start, len(log)):
        out = Outcome()
        state.apply(Record("runs", 0, i, run_key(log[i]), log[i]), out)
        keys += [e.key for _, e in out.events]
    return keys


@settings(max_examples=150, deadline=None)
@given(scripts())
def test_snapshot_anywhere_then_replay_equals_uninterrupted(script: tuple[list[bytes], int]) -> None:
    log, cut = script
    straight = PartitionState(0, compiler=no_compiler)
    all_keys = feed(straight, log, 0)

    first = PartitionState(0, compiler=no_compiler)
    before = feed(first, log[:cut], 0)
    snap = wire.decode_snapshot(wire.encode_snapshot(first.snapshot(offset=cut, time=0.0)))
    restored = PartitionState.restore(snap, compiler=no_compiler)
    after = feed(restored, log, cut)

    assert before + after == all_keys
    assert msgspec.msgpack.decode(restored.engine.snapshot()) == msgspec.msgpack.decode(straight.engine.snapshot())
    assert restored.daemon.inflight == straight.daemon.inflight
    assert sorted(restored.pending_timers()) == sorted(straight.pending_timers())
