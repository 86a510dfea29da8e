"""Snapshot/restore is invisible: restoring a snapshot and feeding the remaining events gives
exactly the commands and the final state of an uninterrupted run (random DAGs, random event
orders, snapshot at a random point)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowd.engine.core import Engine
from flowd.engine.messages import Approve, OpStatus, Resume, SetTimer, StartOp, Stop, StopOp, Submit, TimerFired
from flowd.spec.compiled import TRIGGER_POLICIES, EarlyStopping, HpParam, IOSpec, Matrix, Termination
from tests.unit.engine.build import dag, job, ref


def tuned_matrix(draw, tuners):
    """A small tuned matrix whose metric is the ``x`` output the driver reports."""
    kind = draw(st.sampled_from(tuners))
    metric = {"name": "x", "optimization": draw(st.sampled_from(["minimize", "maximize"]))}
    params = {"m": HpParam("uniform", [0.0, 1.0])}
    concurrency = draw(st.sampled_from([None, 1, 2]))
    seed = draw(st.sampled_from([None, 5]))
    if kind == "hyperband":
        return Matrix(kind="hyperband", params=params, concurrency=concurrency, seed=seed, extra={
            "maxIterations": draw(st.sampled_from([2, 4])), "eta": 2, "resource": {"name": "r", "type": "int"},
            "metric": metric, "resume": draw(st.booleans())})
    if kind == "bayes":
        return Matrix(kind="bayes", params=params, concurrency=concurrency, seed=seed, extra={
            "numInitialRuns": 2, "maxIterations": 2, "metric": metric,
            "utilityFunction": {"acquisitionFunction": "ucb", "kappa": 1.0, "numWarmup": 50, "numIterations": 1}})
    return Matrix(kind="tpe", params=params, num_runs=2, concurrency=concurrency, seed=seed,
                  extra={"maxIterations": 2, "metric": metric})


@st.composite
def pipelines(draw):
    n = draw(st.integers(1, 10))
    ops = []
    for i in range(n):
        name = f"op{i}"
        upstream = sorted(draw(st.sets(st.sampled_from([f"op{j}" for j in range(i)]), max_size=3))) if i else []
        fields = {
            "trigger": draw(st.sampled_from(TRIGGER_POLICIES)),
            "termination": Termination(max_retries=draw(st.integers(0, 2)), timeout=draw(st.sampled_from([None, 5.0]))),
            "skip_on_upstream_skip": draw(st.booleans()),
        }
        if draw(st.integers(0, 5)) == 0:
            fields["conditions"] = draw(st.sampled_from(["true", "false", "{{ 1 == 1 }}"]))
        if draw(st.integers(0, 6)) == 0:
            fields["is_approved"] = False
        params, inputs = {}, []
        if upstream and draw(st.booleans()):
            params["x"] = ref(f"ops.{upstream[0]}", "outputs.x")
            inputs.append(IOSpec("x", type="int"))
        if draw(st.integers(0, 5)) == 0:
            policy = draw(st.sampled_from([None, "median", "truncation", "diff"]))
            rules = [EarlyStopping(kind="metric_early_stopping", metric="x", value=0.0,
                                   optimization=draw(st.sampled_from(["minimize", "maximize"])),
                                   policy={"kind": policy, "percent": 50, "evaluationInterval": draw(st.integers(1, 2)),
                                           "minSamples": 2})] if policy else []
            fields["matrix"] = Matrix(kind="mapping", values=[{"m": k} for k in range(draw(st.integers(1, 5 if policy else 3)))],
                                      concurrency=draw(st.sampled_from([None, 2] if policy else [None, 1])),
                                      early_stopping=rules)
            inputs.append(IOSpec("m", type="int"))
        elif draw(st.integers(0, 4)) == 0:
            fields["matrix"] = tuned_matrix(draw, tuners=("hyperband",))
            inputs += [IOSpec("m", type="float"), IOSpec("r", type="int")]
        if draw(st.integers(0, 6)) == 0:
            child = dag(name, [job("in0", outputs=[IOSpec("x", type="int")]), job("in1", upstream=["in0"])],
                        **{k: v for k, v in fields.items() if k not in ("termination",)})
            ops.append(child.__class__(**{**{f: getattr(child, f) for f in child.__struct_fields__}, "upstream": upstream}))
            continue
        ops.append(job(name, upstream=upstream, params=params, inputs=inputs, outputs=[IOSpec("x", type="int")], **fields))
    return dag("prop", ops, concurrency=draw(st.sampled_from([None, 1, 2, 3])))


def drive(pipeline, data) -> list:
    """Run an engine with random executor behaviour; return the events it was fed."""
    engine = Engine()
    events: list = []
    live: list[StartOp] = []
    timers: dict[str, float] = {}
    clock = [0.0]

    def feed(event) -> None:
        events.append(event)
        follow = []
        for command in engine.handle(event):
            if isinstance(command, StartOp):
                live.append(command)
            elif isinstance(command, StopOp):
                # the executor honours stops: the attempt ends, reported a moment later
                live[:] = [s for s in live if s.key != command.key]
                follow.append(OpStatus("r", command.path, command.attempt, "stopped", clock[0]))
            elif isinstance(command, SetTimer):
                timers[command.timer_id] = command.at
            elif type(command).__name__ == "CancelTimer":
                timers.pop(command.timer_id, None)
        for event in follow:
            feed(event)

    feed(Submit("r", pipeline, 0.0, seed=3))
    stop_at = data.draw(st.integers(0, 60))
    resumes = data.draw(st.integers(0, 2))
    for step in range(400):
        run = engine.runs["r"]
        if run.done:
            if resumes and run.nodes[""].status != "succeeded":
                resumes -= 1
                clock[0] += 1.0
                feed(Resume("r", clock[0]))
                stop_at = -1
                continue
            break
        clock[0] += 1.0
        now = clock[0]
        approvals = [n.path for n in run.nodes.values() if n.reason == "PendingApproval" and not n.approved]
        choice = data.draw(st.integers(0, 9))
        if step == stop_at:
            feed(Stop("r", now))
        elif approvals and choice == 0:
            feed(Approve("r", approvals[0], now))
        elif timers and (choice == 1 or not live):
            timer_id = data.draw(st.sampled_from(sorted(timers)))
            timers.pop(timer_id)
            feed(TimerFired("r", timer_id, now))
        elif live:
            start = live.pop(data.draw(st.integers(0, len(live) - 1)))
            outcome = data.draw(st.sampled_from(["succeeded", "succeeded", "failed", "running", "dup"]))
            if outcome == "running":
                live.append(start)
                # a running report with an intermediate metric point (early-stopping policies)
                feed(OpStatus("r", start.path, start.attempt, "running", now,
                              metrics=[{"step": step, "x": (step * 7) % 5}]))
            elif outcome == "dup":  # a redelivered report of an earlier attempt
                live.append(start)
                feed(OpStatus("r", start.path, max(1, start.attempt - 1), "succeeded", now, outputs={"x": 1}))
            else:
                feed(OpStatus("r", start.path, start.attempt, outcome, now, outputs={"x": step}))
        elif approvals:
            feed(Approve("r", approvals[0], now))
        else:
            feed(Stop("r", now))
    return events


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(pipeline=pipelines(), data=st.data())
def test_restore_then_replay_equals_uninterrupted_run(pipeline, data):
    events = drive(pipeline, data)
    cut = data.draw(st.integers(0, len(events)))

    whole = Engine()
    expected = [whole.handle(e) for e in events]

    first = Engine()
    for e in events[:cut]:
        first.handle(e)
    restored = Engine.restore(first.snapshot())
    assert restored.snapshot() == first.snapshot()
    got = [restored.handle(e) for e in events[cut:]]

    assert got == expected[cut:]
    assert restored.snapshot() == whole.snapshot()
    assert restored.view("r") == whole.view("r")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(pipeline=pipelines(), data=st.data())
def test_a_sink_receives_exactly_the_commands_handle_returns(pipeline, data):
    """``handle(event, sink)`` hands each command over as it is produced: the same commands in the
    same order as the list ``handle(event)`` returns, and the same state after every event."""
    events = drive(pipeline, data)
    listed, sunk = Engine(), Engine()
    for event in events:
        got: list = []
        assert sunk.handle(event, got.append) == []
        assert got == listed.handle(event)
    assert sunk.snapshot() == listed.snapshot()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(pipeline=pipelines(), data=st.data())
def test_every_run_reaches_a_final_status(pipeline, data):
    """Whatever the executor reports and in whatever order, a run whose attempts all end, whose
    timers fire and whose approvals come (or which is stopped) finishes: the engine never wedges."""
    events = drive(pipeline, data)
    engine = Engine()
    commands = [c for e in events for c in engine.handle(e)]
    run = engine.runs["r"]
    assert run.done
    done = [c for c in commands if type(c).__name__ == "PipelineDone"]
    resumes = sum(1 for e in events if isinstance(e, Resume))
    assert len(done) == 1 + resumes and done[-1].status == run.nodes[""].status
    unfinished = {n.path: (n.status, n.reason) for n in run.nodes.values()
                  if n.status not in ("succeeded", "failed", "stopped", "skipped", "upstream_failed")}
    assert unfinished == {}
    # no attempt was ever started twice
    keys = [c.key for c in commands if isinstance(c, StartOp)]
    assert len(keys) == len(set(keys))


@st.composite
def model_tuned(draw):
    """A DAG around a bayes or tpe matrix (fewer examples: each suggestion fits a model)."""
    m = tuned_matrix(draw, tuners=("bayes", "tpe"))
    sweep = job("sweep", matrix=m, inputs=[IOSpec("m", type="float")], outputs=[IOSpec("x", type="int")],
                termination=Termination(max_retries=draw(st.integers(0, 1))))
    return dag("prop", [job("pre", outputs=[IOSpec("x", type="int")]), sweep.__class__(
        **{**{f: getattr(sweep, f) for f in sweep.__struct_fields__}, "upstream": ["pre"]})])


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(pipeline=model_tuned(), data=st.data())
def test_restore_then_replay_equals_uninterrupted_run_with_model_tuners(pipeline, data):
    test_restore_then_replay_equals_uninterrupted_run.hypothesis.inner_test(pipeline, data)
