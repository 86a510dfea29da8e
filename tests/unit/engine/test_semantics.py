"""Execution semantics of the pure engine (POLYFLOW §5-§7), asserted on statuses, attempts, outputs."""

from __future__ import annotations

import pytest

from flowd.engine.core import Engine
from flowd.engine.messages import Approve, OpStatus, Stop, StopOp, Submit
from flowd.engine.triggers import decide
from flowd.spec.compiled import Backoff, EarlyStopping, HpParam, IOSpec, Matrix, Termination
from tests.unit.engine.build import dag, job, ref
from tests.unit.engine.sim import Sim

# ------------------------------------------------------------------------------ trigger table

@pytest.mark.parametrize(
    "policy,n_up,n_done,n_ok,n_bad,expected",
    [
        ("all_succeeded", 2, 1, 1, 0, "wait"),
        ("all_succeeded", 2, 2, 2, 0, "start"),
        ("all_succeeded", 2, 2, 1, 1, "upstream_failed"),
        ("all_failed", 2, 2, 0, 2, "start"),
        ("all_failed", 2, 2, 1, 1, "upstream_failed"),
        ("all_done", 2, 1, 0, 1, "wait"),
        ("all_done", 2, 2, 0, 0, "start"),  # two stopped upstream: done, neither ok nor bad
        ("one_succeeded", 3, 1, 1, 0, "start"),
        ("one_succeeded", 2, 1, 0, 1, "wait"),  # [FLOWD]: not decided at the first finished upstream
        ("one_succeeded", 2, 2, 0, 2, "upstream_failed"),
        ("one_failed", 2, 1, 1, 0, "wait"),
        ("one_failed", 2, 2, 1, 1, "start"),
        ("one_failed", 2, 2, 2, 0, "upstream_failed"),
        ("one_done", 3, 1, 0, 0, "start"),
        ("one_done", 3, 0, 0, 0, "wait"),
    ],
)
def test_trigger_decision_table(policy, n_up, n_done, n_ok, n_bad, expected):
    assert decide(policy, n_up, n_done, n_ok, n_bad) == expected


def test_every_trigger_policy_example_9_3():
    ops = [
        job("ok"),
        job("boom"),
        job("on-all-succeeded", upstream=["ok", "boom"], trigger="all_succeeded"),
        job("on-all-failed", upstream=["boom"], trigger="all_failed"),
        job("on-all-done", upstream=["ok", "boom"], trigger="all_done"),
        job("on-one-succeeded", upstream=["ok", "boom"], trigger="one_succeeded"),
        job("on-one-failed", upstream=["ok", "boom"], trigger="one_failed"),
        job("on-one-done", upstream=["ok", "boom"], trigger="one_done"),
    ]
    sim = Sim(dag("trigger-matrix", ops), script={"boom": ["fail"]})
    sim.run()
    assert sim.status("on-all-succeeded") == "upstream_failed"
    for name in ("on-all-failed", "on-all-done", "on-one-succeeded", "on-one-failed", "on-one-done"):
        assert sim.status(name) == "succeeded", name
    order = sim.order()
    # one_succeeded and one_done start right after `ok`, before `boom` is even reported
    assert order.index("on-one-done") < order.index("on-one-failed")
    assert sim.done.status == "failed"  # boom failed


# ---------------------------------------------------------------------------- params, outputs

def test_outputs_flow_through_refs_and_templates():
    ops = [
        job("a", outputs=[IOSpec("rows", type="int")]),
        job("b", upstream=["a"], params={"rows": ref("ops.a", "outputs.rows")}, inputs=[IOSpec("rows", type="int")],
            command=["echo", "{{ rows }}", "{{ ops.a.outputs.rows * 2 }}", "{{ params.rows.as_arg }}"]),
    ]
    sim = Sim(dag("p", ops), outputs=lambda s: {"rows": "41"} if s.path == "a" else None)
    sim.run()
    b = next(s for s in sim.started if s.path == "b")
    assert b.params == {"rows": 41}  # coerced by the IO type at run time
    assert b.run["container"]["command"] == ["echo", "41", "82", "--rows=41"]
    assert sim.done.status == "succeeded"


def test_missing_upstream_output_fails_downstream_with_clear_message():
    ops = [
        job("a", outputs=[IOSpec("loss", type="float")]),
        job("b", upstream=["a"], params={"loss": ref("ops.a", "outputs.loss")}, inputs=[IOSpec("loss", type="float")]),
        job("c", upstream=["b"]),
    ]
    sim = Sim(dag("p", ops))
    sim.run()
    assert sim.status("b") == "failed"
    assert "did not report output 'loss'" in sim.node("b").message
    assert sim.node("b").attempt == 0  # never started
    assert sim.status("c") == "upstream_failed"
    assert sim.done.status == "failed"


def test_falsy_outputs_pass_through():
    ops = [
        job("a", outputs=[IOSpec("acc", type="float")]),
        job("b", upstream=["a"], params={"acc": ref("ops.a", "outputs.acc")}, inputs=[IOSpec("acc", type="float")]),
    ]
    sim = Sim(dag("p", ops), outputs=lambda s: {"acc": 0.0})
    sim.run()
    assert sim.status("b") == "succeeded"
    assert sim.node("b").params == {"acc": 0.0}


def test_dag_inputs_reach_children_and_defaults_apply():
    ops = [job("a", params={"src": ref("dag", "inputs.dataset")},
               inputs=[IOSpec("src"), IOSpec("n", type="int", value=3, is_optional=True)])]
    sim = Sim(dag("p", ops, inputs=[IOSpec("dataset", type="str")], params={"dataset": "s3://x"}))
    sim.run()
    assert sim.started[0].params == {"src": "s3://x", "n": 3}


def test_to_env_params_become_environment():
    ops = [job("a", params={"lr": 0.1}, inputs=[IOSpec("lr", type="float", to_env="LEARNING_RATE")])]
    sim = Sim(dag("p", ops))
    assert sim.started[0].env == {"LEARNING_RATE": "0.1"}


# ------------------------------------------------------------------------- conditions, skips

def test_conditions_and_skip_propagation_example_9_2():
    ops = [
        job("evaluate", outputs=[IOSpec("accuracy", type="float")]),
        job("deploy", upstream=["evaluate"], params={"acc": ref("ops.evaluate", "outputs.accuracy")},
            inputs=[IOSpec("acc", type="float")], conditions="{{ acc >= 0.9 }}"),
        job("announce", upstream=["deploy"], skip_on_upstream_skip=True),
        job("archive", upstream=["deploy"]),
        job("report", upstream=["deploy"], trigger="all_done"),
    ]
    sim = Sim(dag("gated", ops), outputs=lambda s: {"accuracy": 0.83} if s.path == "evaluate" else None)
    sim.run()
    assert sim.status("deploy") == "skipped"
    assert sim.node("deploy").reason == "ConditionsCheckFailed"
    assert sim.status("announce") == "skipped"
    assert sim.status("archive") == "succeeded"  # [FLOWD]: skipped upstream counts as ok
    assert sim.status("report") == "succeeded"
    assert sim.done.status == "succeeded"

    sim = Sim(dag("gated", ops), outputs=lambda s: {"accuracy": 0.95} if s.path == "evaluate" else None)
    sim.run()
    assert all(sim.status(n) == "succeeded" for n in ("deploy", "announce", "archive", "report"))


def test_condition_that_is_not_a_truth_word_fails_the_op():
    sim = Sim(dag("p", [job("a", conditions="{{ 'maybe' }}")]))
    assert sim.status("a") == "failed"
    assert "neither true nor false" in sim.node("a").message


def test_templates_are_sandboxed():
    evil = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    sim = Sim(dag("p", [job("a", command=["echo", evil])]))
    assert sim.status("a") == "failed"
    assert "not allowed" in sim.node("a").message or "unsafe" in sim.node("a").message
    assert sim.started == []


# ------------------------------------------------------------------------------- termination

def test_retries_count_attempts_until_success():
    sim = Sim(dag("p", [job("a", termination=Termination(max_retries=2))]), script={"a": ["fail", "fail", "ok"]})
    sim.run()
    assert sim.status("a") == "succeeded"
    assert sim.node("a").attempt == 3
    statuses = [s.status for s in sim.statuses if s.path == "a"]
    assert statuses.count("retrying") == 2
    assert [s.attempt for s in sim.started] == [1, 2, 3]


def test_retries_exhausted_fail_the_op():
    sim = Sim(dag("p", [job("a", termination=Termination(max_retries=1))]), script={"a": ["fail"]})
    sim.run()
    assert sim.status("a") == "failed"
    assert sim.node("a").attempt == 2
    assert sim.done.status == "failed"


def test_backoff_waits_on_a_timer_with_seeded_jitter():
    backoff = Backoff(base=10, factor=2, max=100, jitter=0.5)
    op = job("a", termination=Termination(max_retries=2, backoff=backoff))
    sim = Sim(dag("p", [op]), script={"a": ["fail", "fail", "ok"]})
    sim.step()
    (timer_id, at), = sim.timers.items()
    assert timer_id == "retry:a#1"
    assert 10 <= at - sim.now <= 15
    assert len(sim.started) == 1
    sim.fire_timers()
    assert len(sim.started) == 2
    again = Sim(dag("p", [op]), script={"a": ["fail", "fail", "ok"]})
    again.step()
    assert again.timers == {"retry:a#1": at}  # same seed, same jitter


def test_timeout_fails_the_attempt_and_stops_it():
    sim = Sim(dag("p", [job("a", termination=Termination(timeout=30, max_retries=3))]), script={"a": ["hang"]})
    sim.step()
    assert sim.timers == {"timeout:a#1": 30.0}
    sim.fire_timers()
    assert sim.status("a") == "failed"
    assert sim.node("a").reason == "Timeout"
    assert [s.key for s in sim.stops] == ["run1/a#1"]
    # a late report from the stopped attempt changes nothing
    sim.feed(OpStatus("run1", "a", 1, "succeeded", 99.0))
    assert sim.status("a") == "failed"
    assert sim.done.status == "failed"


# ------------------------------------------------------------------------------- concurrency

def test_dag_concurrency_limits_active_ops_in_declaration_order():
    ops = [job(f"part-{i}") for i in range(1, 6)]
    sim = Sim(dag("p", ops, concurrency=2), hold={f"part-{i}" for i in range(1, 6)})
    assert [s.path for s in sim.started] == ["part-1", "part-2"]
    sim.feed(OpStatus("run1", "part-1", 1, "succeeded", 1.0))
    assert [s.path for s in sim.started] == ["part-1", "part-2", "part-3"]
    assert sim.engine.runs["run1"].nodes[""].active == 2


def test_failure_early_stopping_example_9_8():
    ops = [job(f"part-{i}", termination=Termination(max_retries=1)) for i in range(1, 6)]
    pipeline = dag("guarded", ops, concurrency=2, early_stopping=[EarlyStopping(kind="failure_early_stopping", percent=40)])
    sim = Sim(pipeline, script={"part-1": ["fail"], "part-2": ["fail"], "part-3": ["hang"], "part-4": ["hang"]})
    sim.run()
    assert sim.status("part-1") == "failed" and sim.status("part-2") == "failed"
    assert sim.node("part-1").attempt == 2
    assert sim.status("part-3") == "stopping"  # running when early stopping fired
    for stop in list(sim.stops):
        sim.feed(OpStatus("run1", stop.path, stop.attempt, "stopped", 50.0))
    assert sim.status("part-5") == "stopped"
    assert sim.done.status == "failed"
    assert sim.node("").reason == "EarlyStopping:failure_early_stopping"


def test_metric_early_stopping_succeeds_the_pipeline():
    m = Matrix(kind="mapping", values=[{"i": i} for i in range(6)], concurrency=1,
               early_stopping=[EarlyStopping(kind="metric_early_stopping", metric="acc", value=0.9, optimization="maximize")])
    sweep = job("sweep", inputs=[IOSpec("i", type="int")], outputs=[IOSpec("acc", type="float")], matrix=m)
    sim = Sim(dag("p", [sweep]), outputs=lambda s: {"acc": 0.5 + 0.2 * s.params["i"]})
    sim.run()
    assert [sim.status(f"sweep[{i}]") for i in range(6)] == ["succeeded"] * 3 + ["stopped"] * 3
    assert sim.status("sweep") == "succeeded"
    assert sim.done.status == "succeeded"


# ------------------------------------------------------------------------------ stop, approval

def test_stop_stops_running_ops_and_marks_the_rest_stopped():
    ops = [job("a"), job("b", upstream=["a"]), job("c")]
    sim = Sim(dag("p", ops), hold={"a", "c"})
    sim.feed(OpStatus("run1", "a", 1, "running", 1.0))
    sim.feed(Stop("run1", 2.0))
    assert {s.path for s in sim.stops} == {"a", "c"}
    assert sim.status("b") == "stopped"
    assert sim.status("a") == "stopping"
    sim.feed(OpStatus("run1", "a", 1, "failed", 3.0, exit_code=-15))  # killed by the stop
    sim.feed(OpStatus("run1", "c", 1, "stopped", 3.0))
    assert sim.status("a") == "stopped"
    assert sim.done.status == "stopped"


def test_approval_holds_the_op_until_approved_and_its_trigger_holds():
    ops = [job("a"), job("b", upstream=["a"], is_approved=False)]
    sim = Sim(dag("p", ops), hold={"a"})
    sim.feed(Approve("run1", "b", 1.0))  # approved early: still waits for `a`
    assert [s.path for s in sim.started] == ["a"]
    sim.feed(OpStatus("run1", "a", 1, "succeeded", 2.0))
    assert [s.path for s in sim.started] == ["a", "b"]

    sim = Sim(dag("p", ops))
    sim.run()
    assert sim.status("b") == "created" and sim.node("b").reason == "PendingApproval"
    assert sim.done is None
    sim.feed(Approve("run1", "b", 5.0))
    sim.run()
    assert sim.done.status == "succeeded"


# ----------------------------------------------------------------------------------- events

def test_event_edge_starts_op_when_upstream_is_running():
    ops = [job("server"), job("client", upstream=["server"], event_edges={"server": ["running"]})]
    sim = Sim(dag("p", ops), hold={"server"})
    assert [s.path for s in sim.started] == ["server"]
    sim.feed(OpStatus("run1", "server", 1, "running", 1.0))
    assert [s.path for s in sim.started] == ["server", "client"]


def test_services_are_stopped_when_the_rest_of_the_dag_is_done():
    ops = [job("db", kind="service"), job("client", upstream=["db"], event_edges={"db": ["running"]})]
    sim = Sim(dag("p", ops), hold={"db"})
    sim.feed(OpStatus("run1", "db", 1, "running", 1.0))
    sim.run()
    assert sim.status("client") == "succeeded"
    assert [s.path for s in sim.stops] == ["db"]
    sim.feed(OpStatus("run1", "db", 1, "stopped", 9.0))
    assert sim.status("db") == "succeeded"
    assert sim.done.status == "succeeded"


# ------------------------------------------------------------------------ nested, matrices

def shard_pipeline():
    inner = [
        job("extract", params={"shard": ref("dag", "inputs.shard")}, inputs=[IOSpec("shard", type="int")],
            outputs=[IOSpec("rows", type="int")]),
        job("load", upstream=["extract"], params={"rows": ref("ops.extract", "outputs.rows")},
            inputs=[IOSpec("rows", type="int")]),
    ]
    return dag("shard-pipeline", inner, inputs=[IOSpec("shard", type="int")])


def test_mapping_matrix_over_nested_dag_example_9_4():
    per_shard = shard_pipeline()
    per_shard = per_shard.__class__(**{**{f: getattr(per_shard, f) for f in per_shard.__struct_fields__},
                                        "name": "per-shard", "matrix": Matrix(kind="mapping", concurrency=2,
                                                                               values=[{"shard": i} for i in range(3)])})
    merge = job("merge", upstream=["per-shard"])
    sim = Sim(dag("sharded-etl", [per_shard, merge]), hold=set(),
              outputs=lambda s: {"rows": 10 * s.params["shard"]} if s.path.endswith("extract") else None)
    # concurrency 2: shards 0 and 1 run first
    assert {s.path for s in sim.started} == {"per-shard[0]/extract", "per-shard[1]/extract"}
    sim.run()
    loads = {s.path: s.params for s in sim.started if s.path.endswith("/load")}
    assert loads == {f"per-shard[{i}]/load": {"rows": 10 * i} for i in range(3)}
    assert sim.status("merge") == "succeeded"
    assert sim.status("per-shard") == "succeeded"
    assert sim.done.status == "succeeded"
    view = sim.engine.view("run1")
    assert view.ops["per-shard[2]/load"].status == "succeeded"
    assert view.ops["per-shard"].kind == "matrix"


def test_nested_failure_propagates_to_matrix_and_parent():
    per_shard = shard_pipeline()
    per_shard = per_shard.__class__(**{**{f: getattr(per_shard, f) for f in per_shard.__struct_fields__},
                                        "name": "per-shard",
                                        "matrix": Matrix(kind="mapping", values=[{"shard": i} for i in range(3)])})
    sim = Sim(dag("etl", [per_shard, job("merge", upstream=["per-shard"])]), script={"per-shard[1]/load": ["fail"]},
              outputs=lambda s: {"rows": 1} if s.path.endswith("extract") else None)
    sim.run()
    assert sim.status("per-shard[1]") == "failed"
    assert sim.status("per-shard[2]") == "succeeded"
    assert sim.status("per-shard") == "failed"
    assert sim.status("merge") == "upstream_failed"
    assert sim.done.status == "failed"


def test_grid_and_random_matrices():
    grid = Matrix(kind="grid", params={"lr": HpParam("choice", [0.1, 0.2]), "depth": HpParam("range", [1, 4, 1])})
    sim = Sim(dag("p", [job("g", matrix=grid, inputs=[IOSpec("lr", type="float"), IOSpec("depth", type="int")])]))
    assert [s.params for s in sim.started] == [
        {"lr": lr, "depth": d} for lr in (0.1, 0.2) for d in (1, 2, 3)
    ]
    rnd = Matrix(kind="random", num_runs=5, seed=42, params={"lr": HpParam("uniform", [0, 1]), "k": HpParam("choice", [1, 2, 3])})
    a = Sim(dag("p", [job("r", matrix=rnd, inputs=[IOSpec("lr", type="float"), IOSpec("k", type="int")])]))
    b = Sim(dag("p", [job("r", matrix=rnd, inputs=[IOSpec("lr", type="float"), IOSpec("k", type="int")])]), seed=999)
    assert [s.params for s in a.started] == [s.params for s in b.started]  # matrix seed wins
    assert len({repr(s.params) for s in a.started}) == 5


def test_unsupported_matrix_kind_fails_with_a_clear_message():
    m = Matrix(kind="sobol", params={"lr": HpParam("uniform", [0, 1])})
    sim = Sim(dag("p", [job("b", matrix=m, inputs=[IOSpec("lr", type="float")])]))
    assert sim.status("b") == "failed"
    assert "sobol" in sim.node("b").message and "not supported" in sim.node("b").message


# ------------------------------------------------------------------------------ idempotency

def test_redelivered_events_change_nothing():
    ops = [job("a"), job("b", upstream=["a"])]
    engine = Engine()
    submit = Submit("r", dag("p", ops), 0.0)
    engine.handle(submit)
    first = engine.handle(OpStatus("r", "a", 1, "succeeded", 1.0))
    before = engine.snapshot()
    assert engine.handle(submit) == []
    assert engine.handle(OpStatus("r", "a", 1, "succeeded", 1.0)) == []
    assert engine.snapshot() == before
    assert any(getattr(c, "path", None) == "b" for c in first)


def test_single_job_pipeline():
    sim = Sim(job("solo"), script={"": ["fail", "ok"]})
    sim.run()
    assert sim.done.status == "failed"
    assert sim.engine.view("run1").ops["solo"].status == "failed"
    assert all(isinstance(s, StopOp) for s in sim.stops)


def test_invalid_nested_dag_fails_when_its_run_starts():
    from flowd.spec.compiled import Component, Dag, Op

    errors = ["dependency 'y' of op 'x' is not an op of this DAG"]
    broken = Op(name="inner", component=Component(kind="dag", dag=Dag(ops=[job("x", upstream=["y"])], errors=errors)))
    sim = Sim(dag("p", [job("before"), broken.__class__(**{**{f: getattr(broken, f) for f in broken.__struct_fields__},
                                                            "upstream": ["before"]})]))
    sim.run()
    assert sim.status("inner") == "failed"
    assert "is not an op of this DAG" in sim.node("inner").message
    assert "inner/x" not in sim.engine.runs["run1"].nodes
    assert sim.done.status == "failed"


# ------------------------------------------------------------------------- resume, errors

def test_resume_reruns_what_failed_and_keeps_what_succeeded():
    from flowd.engine.messages import Resume

    ops = [job("a", outputs=[IOSpec("x", type="int")]), job("b", upstream=["a"]), job("c", upstream=["b"]), job("d")]
    sim = Sim(dag("p", ops), script={"b": ["fail", "ok"]}, outputs=lambda s: {"x": 1})
    sim.run()
    assert sim.done.status == "failed" and sim.status("c") == "upstream_failed"
    started_before = len(sim.started)
    sim.done = None
    sim.feed(Resume("run1", 50.0))
    sim.run()
    assert sim.done.status == "succeeded"
    rerun = [s for s in sim.started[started_before:]]
    assert [(s.path, s.attempt) for s in rerun] == [("b", 2), ("c", 1)]  # a and d are not run again
    assert sim.node("a").attempt == 1 and sim.node("d").attempt == 1
    # resuming a succeeded run does nothing
    assert sim.engine.handle(Resume("run1", 60.0)) == []


def test_resume_of_a_stopped_matrix_runs_only_unfinished_children():
    from flowd.engine.messages import Resume

    m = Matrix(kind="mapping", values=[{"i": i} for i in range(4)], concurrency=2)
    sim = Sim(dag("p", [job("sweep", inputs=[IOSpec("i", type="int")], matrix=m)]), hold={"sweep[1]"})
    sim.run()
    sim.feed(Stop("run1", 10.0))
    for stop in list(sim.stops):
        sim.feed(OpStatus("run1", stop.path, stop.attempt, "stopped", 11.0))
    assert sim.done.status == "stopped"
    assert [sim.status(f"sweep[{i}]") for i in range(4)] == ["succeeded", "stopped", "succeeded", "succeeded"] or \
        sim.status("sweep[0]") == "succeeded"
    sim.done = None
    sim.hold.clear()
    sim.feed(Resume("run1", 20.0))
    sim.run()
    assert sim.done.status == "succeeded"
    assert all(sim.status(f"sweep[{i}]") == "succeeded" for i in range(4))
    assert sorted(s.path for s in sim.started).count("sweep[0]") == 1


def test_an_engine_error_fails_only_its_run_and_stops_its_attempts(monkeypatch):
    engine = Engine()
    engine.handle(Submit("good", dag("p", [job("a")]), 0.0))
    engine.handle(Submit("bad", dag("p", [job("a"), job("b", upstream=["a"])]), 0.0))

    def boom(*args, **kwargs):
        raise RuntimeError("simulated bug")

    from flowd.engine.ops import Ops

    monkeypatch.setattr(Ops, "upstream_done", boom)
    commands = engine.handle(OpStatus("bad", "a", 1, "succeeded", 1.0))
    done = [c for c in commands if type(c).__name__ == "PipelineDone"]
    assert done and done[0].status == "failed" and "simulated bug" in done[0].message
    assert engine.runs["bad"].done and not engine.runs["good"].done
    monkeypatch.undo()
    assert engine.handle(OpStatus("good", "a", 1, "succeeded", 2.0))[-1].status == "succeeded"


def test_pending_timers_lists_armed_timers():
    engine = Engine()
    engine.handle(Submit("r", dag("p", [job("a", termination=Termination(timeout=30))]), 5.0))
    assert engine.pending_timers() == [("r", "timeout:a#1", 35.0)]


def test_event_keys_stay_unique_across_resumes():
    from flowd.engine.messages import PipelineDone, Resume, StatusChanged

    engine = Engine()
    commands = engine.handle(Submit("r", dag("p", [job("a")]), 0.0))
    commands += engine.handle(OpStatus("r", "a", 1, "failed", 1.0))
    commands += engine.handle(Resume("r", 2.0))
    commands += engine.handle(OpStatus("r", "a", 2, "succeeded", 3.0))
    keys = [c.key for c in commands if isinstance(c, (StatusChanged, PipelineDone))]
    assert len(keys) == len(set(keys))
    assert [c.key for c in commands if isinstance(c, PipelineDone)] == ["r:done", "r:done@1"]


def test_every_distinct_status_event_has_its_own_key():
    """Held for approval, an op emits ``created`` twice (the second with reason PendingApproval):
    two events, so two keys; the same after a resume; one ``done`` per epoch."""
    from flowd.engine.messages import PipelineDone, Resume, StatusChanged

    engine = Engine()
    ops = [job("a"), job("b", upstream=["a"], is_approved=False)]
    commands = engine.handle(Submit("r", dag("p", ops), 0.0))
    commands += engine.handle(OpStatus("r", "a", 1, "succeeded", 1.0))
    commands += engine.handle(Stop("r", 2.0))
    commands += engine.handle(Resume("r", 3.0))
    commands += engine.handle(Approve("r", "b", 4.0))
    commands += engine.handle(OpStatus("r", "b", 1, "running", 5.0))
    commands += engine.handle(OpStatus("r", "b", 1, "unknown", 6.0))
    commands += engine.handle(OpStatus("r", "b", 1, "running", 7.0))
    commands += engine.handle(OpStatus("r", "b", 1, "succeeded", 8.0))
    events = [c for c in commands if isinstance(c, (StatusChanged, PipelineDone))]
    keys = [c.key for c in events]
    assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)
    b = [(c.key, c.reason) for c in events if isinstance(c, StatusChanged) and c.path == "b"]
    assert ("r/b#0:created", None) in b and ("r/b#0:created~1", "PendingApproval") in b
    assert ("r/b#0:created~1@1", "PendingApproval") in b  # re-held after the resume
    assert [k for k, _ in b if k.startswith("r/b#1:running")] == ["r/b#1:running@1", "r/b#1:running~1@1"]
    assert [c.key for c in events if isinstance(c, PipelineDone)] == ["r:done", "r:done@1"]


def test_event_keys_are_the_same_after_a_snapshot_and_restore():
    from flowd.engine.messages import StatusChanged

    ops = [job("a"), job("b", upstream=["a"], is_approved=False)]
    engine = Engine()
    engine.handle(Submit("r", dag("p", ops), 0.0))
    restored = Engine.restore(engine.snapshot())
    later = [OpStatus("r", "a", 1, "succeeded", 1.0), Approve("r", "b", 2.0)]
    keys = [[c.key for c in e.handle(ev) if isinstance(c, StatusChanged)] for e in (engine, restored) for ev in later]
    assert keys[:2] == keys[2:]
