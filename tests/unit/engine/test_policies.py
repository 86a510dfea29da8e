"""Early-stopping policies (POLYFLOW §7 [FLOWD]) acting on individual children, through the engine:
children report intermediate metrics in ``OpStatus.metrics``; the policy stops the ones it rules out."""

from __future__ import annotations

from flowd.engine.messages import OpStatus
from flowd.spec.compiled import EarlyStopping
from tests.unit.engine.build import IOSpec, Matrix, dag, job
from tests.unit.engine.sim import Sim


def sweep(policy, n=4, optimization="minimize"):
    rule = EarlyStopping(kind="metric_early_stopping", metric="loss", value=0.0, optimization=optimization, policy=policy)
    m = Matrix(kind="mapping", values=[{"i": i} for i in range(n)], early_stopping=[rule])
    op = job("sweep", matrix=m, inputs=[IOSpec("i", type="int")])
    paths = {f"sweep[{i}]" for i in range(n)}
    sim = Sim(dag("p", [op]), hold=paths)
    for start in sim.held:
        sim.feed(OpStatus("run1", start.path, start.attempt, "running", 1.0))
    return sim


def report(sim, i, step, loss, t=2.0):
    sim.feed(OpStatus("run1", f"sweep[{i}]", 1, "running", t, metrics=[{"step": step, "loss": loss}]))


def stopped(sim):
    return sorted(s.path for s in sim.stops)


def test_median_stops_a_run_worse_than_the_median_of_the_others():
    sim = sweep({"kind": "median", "evaluationInterval": 1, "minSamples": 3})
    report(sim, 0, 1, 0.5)
    report(sim, 1, 1, 0.6)
    assert stopped(sim) == []  # only two runs reported: under minSamples
    report(sim, 2, 1, 0.9)
    assert stopped(sim) == ["sweep[2]"]
    assert sim.node("sweep[2]").reason == "EarlyStopping:median" and sim.status("sweep[2]") == "stopping"
    sim.feed(OpStatus("run1", "sweep[2]", 1, "stopped", 3.0))
    assert sim.status("sweep[2]") == "stopped"
    report(sim, 3, 1, 0.55)
    # sweep[3] (0.55) is not worse than the median (0.6) of 0.5, 0.6, 0.9; but now sweep[1] (0.6)
    # is worse than the median (0.55) of 0.5, 0.9, 0.55
    assert stopped(sim) == ["sweep[1]", "sweep[2]"]


def test_median_maximize_and_evaluation_interval_and_min_interval():
    sim = sweep({"kind": "median", "evaluationInterval": 2, "minInterval": 3}, optimization="maximize")
    report(sim, 0, 1, 0.9)
    report(sim, 1, 1, 0.8)
    report(sim, 2, 1, 0.1)  # 3rd report = minInterval: evaluated
    assert stopped(sim) == ["sweep[2]"]
    report(sim, 3, 1, 0.2)  # 4th: not on the interval (3, 5, 7, ...)
    assert stopped(sim) == ["sweep[2]"]
    report(sim, 0, 2, 0.95)  # 5th: evaluated, sweep[3] (0.2) is under the median (0.8) of the others
    assert stopped(sim) == ["sweep[2]", "sweep[3]"]


def test_truncation_stops_the_worst_percent_of_running_runs():
    sim = sweep({"kind": "truncation", "percent": 50, "evaluationInterval": 4})
    for i, loss in enumerate([0.3, 0.1, 0.4, 0.2]):
        report(sim, i, 1, loss)
    assert stopped(sim) == ["sweep[0]", "sweep[2]"]


def test_truncation_include_succeeded_ranks_finished_runs_too():
    sim = sweep({"kind": "truncation", "percent": 50, "evaluationInterval": 3, "includeSucceeded": True}, n=4)
    report(sim, 0, 1, 0.1)
    report(sim, 1, 1, 0.2)
    sim.feed(OpStatus("run1", "sweep[0]", 1, "succeeded", 3.0))
    sim.feed(OpStatus("run1", "sweep[1]", 1, "succeeded", 3.0))
    report(sim, 2, 1, 0.3)  # 3rd report: ranked 0.1, 0.2, 0.3 (+ succeeded): worst 1 of 3 is running sweep[2]
    assert stopped(sim) == ["sweep[2]"]
    sim2 = sweep({"kind": "truncation", "percent": 50, "evaluationInterval": 3}, n=4)
    report(sim2, 0, 1, 0.1)
    report(sim2, 1, 1, 0.2)
    sim2.feed(OpStatus("run1", "sweep[0]", 1, "succeeded", 3.0))
    sim2.feed(OpStatus("run1", "sweep[1]", 1, "succeeded", 3.0))
    report(sim2, 2, 1, 0.3)  # without includeSucceeded only sweep[2] is ranked: floor(1 * 50%) = 0
    assert stopped(sim2) == []


def test_diff_stops_runs_worse_than_the_best_by_more_than_percent():
    sim = sweep({"kind": "diff", "percent": 20, "evaluationInterval": 1})
    report(sim, 0, 1, 1.0)
    report(sim, 1, 1, 1.1)  # 10 % worse: kept
    report(sim, 2, 1, 1.3)  # 30 % worse: stopped
    assert stopped(sim) == ["sweep[2]"]


def test_points_are_idempotent_and_the_matrix_ends_succeeded():
    sim = sweep({"kind": "median", "evaluationInterval": 1, "minSamples": 2}, n=2)
    report(sim, 0, 1, 0.2)
    report(sim, 0, 1, 0.2)  # a redelivered report: ignored
    assert sim.node("sweep").n_reports == 1 and sim.node("sweep[0]").curves == {"loss": [[1.0, 0.2]]}
    report(sim, 1, 1, 0.5)
    assert stopped(sim) == ["sweep[1]"]
    sim.feed(OpStatus("run1", "sweep[1]", 1, "stopped", 5.0))
    sim.feed(OpStatus("run1", "sweep[0]", 1, "succeeded", 5.0))
    assert sim.done.status == "succeeded"
    assert sim.status("sweep[1]") == "stopped"


def test_resume_keeps_the_children_a_policy_stopped_in_a_matrix_that_succeeded():
    from flowd.engine.messages import Resume

    rule = EarlyStopping(kind="metric_early_stopping", metric="loss", value=0.0, optimization="minimize",
                         policy={"kind": "diff", "percent": 10})
    m = Matrix(kind="mapping", values=[{"i": 0}, {"i": 1}], early_stopping=[rule])
    ops = [job("sweep", matrix=m, inputs=[IOSpec("i", type="int")]), job("boom")]
    sim = Sim(dag("p", ops), hold={"sweep[0]", "sweep[1]"}, script={"boom": ["fail", "ok"]})
    sim.run()
    for start in sim.held:
        sim.feed(OpStatus("run1", start.path, start.attempt, "running", 1.0))
    report(sim, 0, 1, 0.1)
    report(sim, 1, 1, 0.9)
    sim.feed(OpStatus("run1", "sweep[1]", 1, "stopped", 3.0))
    sim.feed(OpStatus("run1", "sweep[0]", 1, "succeeded", 3.0))
    assert sim.status("sweep") == "succeeded" and sim.done.status == "failed"
    sim.feed(Resume("run1", 4.0))
    sim.run()
    assert sim.status("sweep[1]") == "stopped" and sim.status("boom") == "succeeded"
    assert sim.done.status == "succeeded"
