"""The pure partition step: records in, events/effects/dead letters out; snapshot + replay
gives the same state as an uninterrupted run (what recovery relies on)."""

from __future__ import annotations

import msgspec

from flowd.daemon import wire
from flowd.daemon.partition import Outcome, PartitionState, Record
from flowd.engine.messages import SetTimer, StartOp
from flowd.spec import compile_text
from flowd.spec.compiled import Op

CHAIN = """
version: 1.1
kind: component
name: chain
run:
  kind: dag
  operations:
    - {name: a, component: {run: {kind: job, container: {image: x, command: [sh, -c, "true"]}}}}
    - {name: b, dependencies: [a], termination: {timeout: 30}, component: {run: {kind: job, container: {image: x, command: [sh, -c, "true"]}}}}
"""


def pipeline(text: str = CHAIN) -> Op:
    result = compile_text(text, source="t.yaml", base_dir=None)
    assert result.valid, result.errors
    return result.op  # type: ignore[return-value]


def no_compiler(msg: wire.Submission):
    return None, [wire.Diagnostic(path="t.yaml", location="run", message="boom")]


class Log:
    """A partition's records, as the broker would hold them."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    def add(self, message: object | bytes) -> Record:
        value = message if isinstance(message, bytes) else wire.encode(message)
        # keyed by run id, as the contract asks of every producer
        key = getattr(message, "run_id", "k").encode()
        rec = Record("flowd.runs", 0, len(self.records), key, value, 1.0)
        self.records.append(rec)
        return rec


def drive(state: PartitionState, log: Log, rec: Record) -> Outcome:
    """Apply one record; complete every started attempt at once by appending its report."""
    out = Outcome()
    state.apply(rec, out)
    for cmd in out.effects:
        if isinstance(cmd, StartOp):
            log.add(wire.OpReport(run_id=cmd.run_id, path=cmd.path, attempt=cmd.attempt, status="succeeded", time=2.0))
    return out


def run_all(state: PartitionState, log: Log, start: int = 0) -> list[Outcome]:
    outs, i = [], start
    while i < len(log.records):
        outs.append(drive(state, log, log.records[i]))
        i += 1
    return outs


def test_a_submission_runs_to_completion_with_keyed_events() -> None:
    log, state = Log(), PartitionState(0, compiler=no_compiler)
    log.add(wire.Submission(run_id="r1", time=1.0, pipeline=pipeline()))
    outs = run_all(state, log)
    events = [e for o in outs for _, e in o.events]
    assert [e.status for e in events if isinstance(e, wire.CompletionEvent)] == ["succeeded"]
    assert all(e.pipeline == "chain" for e in events)
    assert len({e.key for e in events}) == len(events)
    assert state.daemon.inflight == {}  # every attempt reported terminal
    assert any(isinstance(c, SetTimer) for o in outs for c in o.effects)  # b's timeout


def test_duplicate_submission_is_ignored() -> None:
    log, state = Log(), PartitionState(0, compiler=no_compiler)
    sub = wire.Submission(run_id="r1", time=1.0, pipeline=pipeline())
    log.add(sub)
    run_all(state, log)
    out = Outcome()
    state.apply(log.add(sub), out)
    assert out.events == [] and out.ignored == 1


def test_poison_and_invalid_records_become_dead_letters() -> None:
    state = PartitionState(0, compiler=no_compiler)
    for value, reason in ((b"\xffnope", "undecodable"), (b'{"type":"stop"}', "invalid"), (None, "undecodable"),
                          (wire.encode(wire.Submission(run_id="x", time=1.0)), "invalid")):
        out = Outcome()
        state.apply(Record("flowd.runs", 2, 7, b"x", value, 5.0), out)
        [dead] = out.deadletters
        assert (dead.reason, dead.topic, dead.partition, dead.offset, dead.value, dead.time) == (
            reason, "flowd.runs", 2, 7, value, 5.0)


def test_every_record_is_acted_on_or_dead_lettered_with_a_reason() -> None:
    log, state = Log(), PartitionState(0, compiler=no_compiler)
    run_all(state, log)
    cases = [
        # a submission on its key's partition, not its run's: a later approve would miss it
        (Record("flowd.runs", 0, 0, b"other", wire.encode(wire.Submission(run_id="r9", time=1.0, pipeline=pipeline()))),
         "wrong_key", "key must be the run id"),
        (Record("flowd.runs", 0, 1, None, wire.encode(wire.StopCommand(run_id="r9", time=1.0))),
         "wrong_key", "key must be the run id"),
        (log.add(wire.ApproveCommand(run_id="ghost", path="a", time=1.0)), "unknown_run", "'ghost'"),
        (log.add(wire.StopCommand(run_id="ghost", time=1.0)), "unknown_run", "'ghost'"),
        (log.add(wire.ResumeCommand(run_id="ghost", time=1.0)), "unknown_run", "'ghost'"),
        (log.add(wire.OpReport(run_id="ghost", path="a", attempt=1, status="running", time=1.0)), "unknown_run", ""),
        (log.add(wire.TimerFiring(run_id="ghost", timer_id="timeout:a#1", time=1.0)), "unknown_run", ""),
    ]
    for rec, reason, text in cases:
        out = Outcome()
        state.apply(rec, out)
        [dead] = out.deadletters
        assert dead.reason == reason and text in dead.error and dead.value == rec.value, dead
    assert state.run_ids() == []  # the mis-keyed submission did not run
    # an op the run does not have
    held = pipeline(CHAIN.replace("dependencies: [a],", "dependencies: [a], isApproved: false,"))
    state.apply(log.add(wire.Submission(run_id="r1", time=1.0, pipeline=held)), Outcome())
    for bad in (wire.ApproveCommand(run_id="r1", path="nope", time=2.0), wire.StopCommand(run_id="r1", path="nope", time=2.0)):
        out = Outcome()
        state.apply(log.add(bad), out)
        assert [d.reason for d in out.deadletters] == ["unknown_op"], out.deadletters
    out = Outcome()
    state.apply(log.add(wire.ApproveCommand(run_id="r1", path="b", time=2.0)), out)
    assert not out.deadletters and out.ignored == 0


def test_invalid_spec_fails_the_run_with_diagnostics() -> None:
    state = PartitionState(0, compiler=no_compiler)
    out = Outcome()
    state.apply(Record("t", 0, 0, b"r", wire.encode(wire.Submission(run_id="r", time=1.0, spec="x")), 1.0), out)
    done = [e for _, e in out.events if isinstance(e, wire.CompletionEvent)]
    assert done[0].status == "failed" and done[0].diagnostics[0].message == "boom"
    assert "boom" in (done[0].message or "")
    # counted as a failed run (the daemon turns out.transitions into flowd_transitions_total)
    assert [(t.path, t.status, t.reason) for t in out.transitions] == [("", "failed", "InvalidSpec")]


def test_snapshot_then_replay_equals_an_uninterrupted_run() -> None:
    log = Log()
    for i in range(3):
        log.add(wire.Submission(run_id=f"r{i}", time=1.0, pipeline=pipeline()))
    straight = PartitionState(0, compiler=no_compiler)
    outs = run_all(straight, log)
    # again, snapshotting after record 4 and restoring into a fresh state
    log2 = Log()
    for rec in log.records[:3]:
        log2.records.append(rec)
    state = PartitionState(0, compiler=no_compiler)
    for i in range(4):
        drive(state, log2, log2.records[i])
    snap = wire.decode_snapshot(wire.encode_snapshot(state.snapshot(offset=4, time=0.0)))
    restored = PartitionState.restore(snap, compiler=no_compiler)
    assert {c.key for c, _ in restored.pending_attempts()} == set(state.daemon.inflight)
    outs2 = run_all(restored, log2, start=4)
    keys = [e.key for o in outs for _, e in o.events]
    keys2_after = [e.key for o in outs2 for _, e in o.events]
    assert set(keys2_after) <= set(keys)
    assert msgspec.msgpack.decode(restored.engine.snapshot()) == msgspec.msgpack.decode(straight.engine.snapshot())


def test_subscription_is_registered_and_stopped() -> None:
    text = CHAIN.replace("name: chain\n", "name: sub\nevents: [{ref: connections.repo, kinds: [connection_git_commit]}]\n")
    state = PartitionState(0, compiler=no_compiler)
    out = Outcome()
    state.apply(Record("t", 0, 0, b"s", wire.encode(wire.Submission(run_id="s", time=1.0, pipeline=pipeline(text))), 1.0), out)
    [(key, sub)] = out.subscriptions
    assert key == "s" and sub is not None and sub.pipeline.events == [] and "s" in state.daemon.subscriptions
    assert state.engine.runs == {}
    out = Outcome()
    state.apply(Record("t", 0, 1, b"s", wire.encode(wire.StopCommand(run_id="s", time=2.0)), 1.0), out)
    assert out.subscriptions == [("s", None)] and out.finished[0].status == "stopped"


def test_compact_forgets_old_finished_runs_but_remembers_their_ids() -> None:
    log, state = Log(), PartitionState(0, compiler=no_compiler)
    log.add(wire.Submission(run_id="r1", time=1.0, pipeline=pipeline()))
    run_all(state, log)
    assert state.compact(now=10_000.0, retention=60.0) == 1
    assert "r1" not in state.engine.runs and "r1" in state.daemon.finished
    out = Outcome()
    state.apply(log.add(wire.Submission(run_id="r1", time=1.0, pipeline=pipeline())), out)
    assert out.ignored == 1 and out.events == []


def test_approve_and_stop_commands_reach_the_engine() -> None:
    text = CHAIN.replace("{name: a, component:", "{name: a, isApproved: false, component:")
    log, state = Log(), PartitionState(0, compiler=no_compiler)
    log.add(wire.Submission(run_id="r1", time=1.0, pipeline=pipeline(text)))
    outs = run_all(state, log)
    assert not any(isinstance(c, StartOp) for o in outs for c in o.effects)  # a waits for approval
    log.add(wire.ApproveCommand(run_id="r1", path="a", time=2.0))
    outs = run_all(state, log, start=1)
    assert [c.path for o in outs for c in o.effects if isinstance(c, StartOp)] == ["a", "b"]
    assert outs[-1].finished and outs[-1].finished[0].status == "succeeded"
    # a stop for a finished run changes nothing; for an unknown one it is dead-lettered
    out = Outcome()
    state.apply(log.add(wire.StopCommand(run_id="r1", time=3.0)), out)
    assert out.events == [] and not out.deadletters
    state.apply(log.add(wire.StopCommand(run_id="nope", time=3.0)), out)
    assert out.events == [] and [d.reason for d in out.deadletters] == ["unknown_run"]


def test_resume_command_reruns_a_failed_run_with_new_keys() -> None:
    log, state = Log(), PartitionState(0, compiler=no_compiler)
    log.add(wire.Submission(run_id="r1", time=1.0, pipeline=pipeline()))
    out = drive(state, log, log.records[0])
    start = next(c for c in out.effects if isinstance(c, StartOp))
    log.records.pop()  # instead of succeeding, `a` fails
    failed = Outcome()
    state.apply(log.add(wire.OpReport(run_id="r1", path="a", attempt=start.attempt, status="failed", time=2.0)), failed)
    assert failed.finished[0].status == "failed" and failed.finished[0].key == "r1:done"
    resumed = run_all(state, log, start=len(log.records))
    log.add(wire.ResumeCommand(run_id="r1", time=3.0))
    resumed = run_all(state, log, start=len(log.records) - 1)
    starts = [(c.path, c.attempt) for o in resumed for c in o.effects if isinstance(c, StartOp)]
    assert starts == [("a", 2), ("b", 1)]
    done = [d for o in resumed for d in o.finished]
    assert [(d.status, d.key) for d in done] == [("succeeded", "r1:done@1")]
