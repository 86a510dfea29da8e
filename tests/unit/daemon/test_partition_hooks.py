"""Hooks in the daemon's pure step (POLYFLOW §8.3): a hook run leaves as a submission on
``runs`` with a derived run id, plus a ``hook`` event on the source's stream; the submission
runs once however often it arrives, and a replay derives the same one."""

from __future__ import annotations

import textwrap

from flowd.daemon import wire
from flowd.daemon.partition import Outcome, PartitionState, Record
from flowd.spec import compile_text

NOTIFY = "kind: component\nname: notify\nrun: {kind: job, container: {image: x, command: [echo, '{{ status }}']}}\n"
PIPE = textwrap.dedent("""
kind: component
name: p
run:
  kind: dag
  operations:
    - name: a
      hooks: [{hubRef: notify, trigger: failed}, {hubRef: notify, trigger: succeeded}]
      component: {run: {kind: job, container: {image: x, command: [a]}}}
""")


def rec(message, offset: int) -> Record:
    return Record("flowd.runs", 0, offset, message.run_id.encode(), wire.encode(message), 1.0)


def no_compiler(msg):
    raise AssertionError("submissions here are compiled")


def test_a_hook_run_is_submitted_once_with_a_derived_id(tmp_path):
    (tmp_path / "notify.yaml").write_text(NOTIFY)
    op = compile_text(PIPE, source="p.yaml", hub=str(tmp_path)).op
    records = [rec(wire.Submission(run_id="r", time=1.0, pipeline=op), 0),
               rec(wire.OpReport(run_id="r", path="a", attempt=1, status="failed", time=2.0), 1)]
    state = PartitionState(0, compiler=no_compiler)
    outs = []
    for r in records:
        outs.append(Outcome())
        state.apply(r, outs[-1])
    out = outs[1]
    assert len(out.submissions) == 1
    sub = out.submissions[0]
    assert sub.hook_of is not None and (sub.hook_of.run_id, sub.hook_of.path, sub.hook_of.index) == ("r", "a", 0)
    hooks = [e for _, e in out.events if isinstance(e, wire.HookEvent)]
    assert [(h.hook_run_id, h.status, h.trigger_status) for h in hooks] == [(sub.run_id, "created", "failed")]
    # the source pipeline fails on its own; the hook does not change it
    assert [e.status for _, e in out.events if isinstance(e, wire.CompletionEvent)] == ["failed"]

    # a replay of the same records (a crash before the commit) asks for the very same run
    again = PartitionState(0, compiler=no_compiler)
    replay = Outcome()
    for r in records:
        again.apply(r, replay)
    assert [s.run_id for s in replay.submissions] == [sub.run_id]

    # the submission arrives (twice: the transaction was retried, or read again): one hook run
    first, second = Outcome(), Outcome()
    state.apply(Record("flowd.runs", 0, 2, sub.run_id.encode(), wire.encode(sub), 3.0), first)
    state.apply(Record("flowd.runs", 0, 3, sub.run_id.encode(), wire.encode(sub), 3.0), second)
    assert [c.run_id for c in first.effects if hasattr(c, "key")] == [sub.run_id]
    assert second.effects == [] and second.ignored == 1
    assert state.engine.view(sub.run_id).hook_of["run_id"] == "r"
