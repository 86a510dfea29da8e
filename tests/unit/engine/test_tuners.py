"""Tuned matrices through the engine: hyperband's bracket schedule counted run by run against
POLYFLOW §6.5, survivors, resource values and their type; determinism of every tuner."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from flowd.engine.tuners.hyperband import Schedule
from flowd.spec.compiled import HpParam
from tests.unit.engine.build import IOSpec, Matrix, dag, job
from tests.unit.engine.sim import Sim


def hyperband(R, eta, *, rtype="float", resume=False, seed=5, metric="loss", optimization="minimize", concurrency=None):
    extra = {"maxIterations": R, "eta": eta, "resource": {"name": "epochs", "type": rtype},
             "metric": {"name": metric, "optimization": optimization}}
    if resume:
        extra["resume"] = True
    return Matrix(kind="hyperband", seed=seed, concurrency=concurrency, extra=extra,
                  params={"lr": HpParam("uniform", [0.0, 1.0]), "depth": HpParam("choice", [1, 2, 3, 4, 5, 6, 7, 8])})


def run_matrix(m, outputs, *, inputs=None, script=None, seed=7):
    inputs = inputs or [IOSpec("lr", type="float"), IOSpec("depth", type="int"), IOSpec("epochs", type="float")]
    op = job("hb", matrix=m, inputs=inputs, outputs=[IOSpec("loss", type="float")])
    sim = Sim(dag("p", [op]), outputs=outputs, script=script, seed=seed)
    sim.run()
    return sim


def loss_of(start):
    # a deterministic curve: better with resource, ranked by lr
    return {"loss": start.params["lr"] + 1.0 / (1.0 + start.params["epochs"])}


def canonical(R, eta):
    """The §6.5 [FLOWD] schedule written out independently: (iteration, round) -> (runs, resource)."""
    s_max = 0
    while eta ** (s_max + 1) <= R:
        s_max += 1
    out = {}
    for i in range(s_max + 1):
        s = s_max - i
        n = math.ceil((s_max + 1) * eta**s / (s + 1))
        out[(i, 0)] = (n, R * eta ** (-s))
        for j in range(s):
            out[(i, j + 1)] = (math.floor(n * eta ** (-j) / eta), R * eta ** (j + 1 - s))
    return out


@pytest.mark.parametrize("R,eta", [(81, 3), (10, 3), (27, 3), (243, 3), (1000, 10), (16, 2), (9, 3), (100, 4), (1, 3), (30, 2.5)])
def test_hyperband_creates_the_canonical_runs_and_resources(R, eta):
    sim = run_matrix(hyperband(R, eta), loss_of)
    rounds = Counter()
    resources = {}
    for node in sim.engine.runs["run1"].nodes.values():
        if node.suggestion is None:
            continue
        key = (node.iteration, node.bracket)
        rounds[key] += 1
        resources.setdefault(key, set()).add(node.suggestion["epochs"])
    expected = canonical(R, eta)
    assert dict(rounds) == {k: n for k, (n, _) in expected.items() if n > 0}
    for key, (_, r) in expected.items():
        if key in resources:
            assert len(resources[key]) == 1 and resources[key].pop() == pytest.approx(r)
    assert sim.done.status == "succeeded"
    assert sum(rounds.values()) == len(sim.started)


def test_hyperband_81_3_table_and_exact_integer_log():
    assert Schedule(243, 3).s_max == 5 and Schedule(1000, 10).s_max == 3 and Schedule(81, 3).s_max == 4
    sched = Schedule(81, 3)
    table = [[(n, float(r)) for n, r in sched.rounds(i)] for i in range(5)]
    assert table == [
        [(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)],
        [(34, 3), (11, 9), (3, 27), (1, 81)],
        [(15, 9), (5, 27), (1, 81)],
        [(8, 27), (2, 81)],
        [(5, 81)],  # canonical: no extra round at 243
    ]


def test_hyperband_int_resource_is_truncated_and_typed():
    sim = run_matrix(hyperband(10, 3, rtype="int"), loss_of,
                     inputs=[IOSpec("lr", type="float"), IOSpec("depth", type="int"), IOSpec("epochs", type="int")])
    values = sorted({s.params["epochs"] for s in sim.started})
    assert values == [1, 3, 10] and all(type(s.params["epochs"]) is int for s in sim.started)
    per_round = Counter((sim.node(s.path).iteration, s.params["epochs"]) for s in sim.started)
    assert per_round == {(0, 1): 9, (0, 3): 3, (0, 10): 1, (1, 3): 5, (1, 10): 1, (2, 10): 3}


@pytest.mark.parametrize("optimization", ["minimize", "maximize"])
def test_hyperband_survivors_are_the_best_of_their_round(optimization):
    sim = run_matrix(hyperband(27, 3, optimization=optimization), loss_of)
    nodes = sim.engine.runs["run1"].nodes
    children = [n for n in nodes.values() if n.suggestion is not None]
    for child in children:
        if not child.bracket:
            continue
        prev = [c for c in children if c.iteration == child.iteration and c.bracket == child.bracket - 1]
        kept = [c for c in children if c.iteration == child.iteration and c.bracket == child.bracket]
        ranked = sorted(prev, key=lambda c: c.outputs["loss"], reverse=optimization == "maximize")
        want = [{k: v for k, v in c.suggestion.items() if k != "epochs"} for c in ranked[: len(kept)]]
        got = [{k: v for k, v in c.suggestion.items() if k != "epochs"} for c in kept]
        assert got == want


def test_hyperband_survivors_only_from_runs_that_succeeded_with_the_metric():
    # round 0 of iteration 0 (R=9, eta=3: 9@1 -> 3@3 -> 1@9): four runs fail, two report no loss
    script = {f"hb[{i}]": ["fail"] for i in range(4)}
    sim = run_matrix(hyperband(9, 3), lambda s: None if s.path in ("hb[4]", "hb[5]") else loss_of(s), script=script)
    nodes = sim.engine.runs["run1"].nodes
    round1 = [n for n in nodes.values() if n.iteration == 0 and n.bracket == 1]
    assert len(round1) == 3  # k_0 = 3 of the three that qualify
    qualified = {repr({k: v for k, v in nodes[f"hb[{i}]"].suggestion.items() if k != "epochs"}) for i in range(6, 9)}
    assert {repr({k: v for k, v in n.suggestion.items() if k != "epochs"}) for n in round1} == qualified
    assert sim.done.status == "failed"  # §5.13: a failed child fails the matrix


def test_hyperband_resume_links_new_runs_to_their_original():
    sim = run_matrix(hyperband(9, 3, resume=True), loss_of)
    nodes = sim.engine.runs["run1"].nodes
    for node in nodes.values():
        if node.suggestion is not None and node.bracket:
            origin = nodes[node.origin]
            assert origin.iteration == node.iteration and origin.bracket == node.bracket - 1
        elif node.suggestion is not None:
            assert node.origin is None


def test_hyperband_concurrency_limits_active_children():
    sim = run_matrix(hyperband(9, 3, concurrency=2), loss_of)
    assert sim.done.status == "succeeded"
    # admission: never more than 2 children queued/running at once
    active, peak = set(), 0
    for st in sim.statuses:
        if st.path.startswith("hb[") and "/" not in st.path:
            if st.status == "queued":
                active.add(st.path)
            elif st.status in ("succeeded", "failed", "stopped"):
                active.discard(st.path)
            peak = max(peak, len(active))
    assert peak == 2


def test_hyperband_without_required_fields_fails_the_matrix_clearly():
    m = Matrix(kind="hyperband", params={"lr": HpParam("uniform", [0, 1])}, extra={"maxIterations": 9})
    sim = run_matrix(m, loss_of, inputs=[IOSpec("lr", type="float")])
    assert sim.status("hb") == "failed"
    assert "`eta`" in sim.node("hb").message and "`resource`" in sim.node("hb").message


def test_hyperband_same_seed_same_suggestions_other_seed_other():
    a = run_matrix(hyperband(9, 3, seed=11), loss_of)
    b = run_matrix(hyperband(9, 3, seed=11), loss_of, seed=99)
    c = run_matrix(hyperband(9, 3, seed=12), loss_of)
    assert [s.params for s in a.started] == [s.params for s in b.started]
    assert [s.params for s in a.started] != [s.params for s in c.started]


def test_iteration_globals_reach_templates():
    m = hyperband(9, 3)
    op = job("hb", matrix=m, inputs=[IOSpec("lr", type="float"), IOSpec("depth", type="int"), IOSpec("epochs", type="float")],
             command=["echo", "{{ globals.iteration }}", "{{ globals.bracket_iteration }}"])
    sim = Sim(dag("p", [op]), outputs=loss_of)
    sim.run()
    seen = {tuple(s.run["container"]["command"][1:]) for s in sim.started}
    assert seen == {("0", "0"), ("0", "1"), ("0", "2"), ("1", "0"), ("1", "1"), ("2", "0")}


# ------------------------------------------------------------------------------- bayes, tpe

def quadratic(start):
    p = start.params
    return {"loss": (p["x"] - 0.3) ** 2 + (p["y"] + 0.2) ** 2 + 0.01 * p["k"]}


SPACE = {"x": HpParam("uniform", [-1.0, 1.0]), "y": HpParam("uniform", [-1.0, 1.0]), "k": HpParam("choice", [1, 2, 3])}
INPUTS = [IOSpec("x", type="float"), IOSpec("y", type="float"), IOSpec("k", type="int")]


def tuned(kind, *, seed=3, **extra):
    extra.setdefault("metric", {"name": "loss", "optimization": "minimize"})
    num_runs = extra.pop("numRuns", None)
    return Matrix(kind=kind, seed=seed, params=SPACE, num_runs=num_runs, extra=extra)


def test_bayes_runs_initial_random_then_one_gp_suggestion_per_iteration():
    m = tuned("bayes", numInitialRuns=4, maxIterations=6,
              utilityFunction={"acquisitionFunction": "ei", "eps": 0.01, "gaussianProcess": {"kernel": "matern", "nu": 2.5}})
    sim = run_matrix(m, quadratic, inputs=INPUTS)
    assert sim.done.status == "succeeded"
    its = [sim.node(s.path).iteration for s in sim.started]
    assert its == [0, 0, 0, 0, 1, 2, 3, 4, 5, 6]
    losses = [quadratic(s)["loss"] for s in sim.started]
    assert min(losses[4:]) < min(losses[:4])  # the GP found better points than the random start
    assert all(s.params["k"] in (1, 2, 3) and -1 <= s.params["x"] <= 1 for s in sim.started)


@pytest.mark.parametrize("acq", [{"acquisitionFunction": "ucb", "kappa": 1.0}, {"acquisitionFunction": "poi", "eps": 0.0},
                                 {"gaussianProcess": {"kernel": "rbf", "lengthScale": 0.5, "numRestartsOptimizer": 1}}])
def test_bayes_accepts_every_utility_function(acq):
    sim = run_matrix(tuned("bayes", numInitialRuns=3, maxIterations=2, utilityFunction=acq), quadratic, inputs=INPUTS)
    assert sim.done.status == "succeeded" and len(sim.started) == 5


def test_tpe_runs_num_runs_per_iteration_until_max_iterations():
    sim = run_matrix(tuned("tpe", numRuns=4, maxIterations=3), quadratic, inputs=INPUTS)
    assert sim.done.status == "succeeded"
    assert Counter(sim.node(s.path).iteration for s in sim.started) == {0: 4, 1: 4, 2: 4, 3: 4}
    assert len({repr(s.params) for s in sim.started}) == 16


@pytest.mark.parametrize("kind,extra", [("bayes", {"numInitialRuns": 3, "maxIterations": 4}),
                                        ("tpe", {"numRuns": 3, "maxIterations": 4})])
def test_tuners_are_deterministic_and_seeded(kind, extra):
    a = run_matrix(tuned(kind, seed=5, **extra), quadratic, inputs=INPUTS)
    b = run_matrix(tuned(kind, seed=5, **extra), quadratic, inputs=INPUTS, seed=77)
    c = run_matrix(tuned(kind, seed=6, **extra), quadratic, inputs=INPUTS)
    assert [s.params for s in a.started] == [s.params for s in b.started]
    assert [s.params for s in a.started] != [s.params for s in c.started]


def test_tuner_errors_fail_the_matrix_not_the_run():
    sim = run_matrix(tuned("tpe", maxIterations=2), quadratic, inputs=INPUTS)  # no numRuns
    assert sim.status("hb") == "failed" and "numRuns" in sim.node("hb").message
    assert sim.node("hb").reason == "TunerFailed"


@pytest.mark.parametrize("kernel,nu", [("matern", 0.5), ("matern", 1.5), ("matern", 2.5), ("matern", 0.7), ("rbf", None)])
def test_bayes_fast_posterior_equals_sklearn_predict(kernel, nu):
    import numpy as np
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import (
        RBF,
        ConstantKernel,
        Matern,
        WhiteKernel,
    )

    from flowd.engine.tuners.bayes import _Posterior

    rng = np.random.default_rng(0)
    X, y = rng.random((12, 3)), rng.random(12) * 10
    shape = RBF([0.3, 0.5, 1.0]) if kernel == "rbf" else Matern([0.3, 0.5, 1.0], nu=nu)
    gp = GaussianProcessRegressor(ConstantKernel(2.0) * shape + WhiteKernel(1e-3), normalize_y=True, alpha=1e-6, optimizer=None).fit(X, y)
    points = rng.random((50, 3))
    mu, sd = gp.predict(points, return_std=True)
    got_mu, got_sd = _Posterior(gp, {})(points)
    assert np.allclose(mu, got_mu) and np.allclose(sd, got_sd, atol=1e-6)


def test_the_mathematics_is_imported_only_when_a_bayes_or_tpe_matrix_runs():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import flowd.cli, flowd.engine, flowd.spec\n"
        "from tests.unit.engine.test_tuners import run_matrix, hyperband, loss_of\n"
        "run_matrix(hyperband(9, 3), loss_of)\n"
        "heavy = [m for m in ('numpy', 'scipy', 'sklearn', 'optuna') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --------------------------------------------------------------------------------- iterative

def iterative(max_iterations=2, tuner_params=None):
    tuner = job("tuner", outputs=[IOSpec("suggestions", type="list")], params=tuner_params or {})
    return Matrix(kind="iterative", concurrency=2, params={"x": HpParam("uniform", [0, 1])},
                  extra={"maxIterations": max_iterations}, tuner=tuner)


def run_iterative(m, tuner_out, script=None):
    import json

    def outputs(start):
        if "/tuner-" in start.path:
            history = json.loads(start.env["FLOWD_TUNER_HISTORY"])
            return tuner_out(history, start)
        return {"loss": (start.params["x"] - 0.3) ** 2}

    sim = Sim(dag("p", [job("it", matrix=m, inputs=[IOSpec("x", type="float")], outputs=[IOSpec("loss", type="float")])]),
              outputs=outputs, script=script)
    sim.run()
    return sim


def test_iterative_tuner_job_sees_the_history_and_its_suggestions_run():
    seen = []

    def tuner(history, start):
        seen.append((history["iteration"], [h["params"]["x"] for h in history["history"]],
                     [h["metrics"].get("loss") for h in history["history"]], start.params["iteration"],
                     len(start.params["configs"])))
        return {"suggestions": [{"x": 0.1 * (history["iteration"] + 1)}, {"x": 0.5}]}

    sim = run_iterative(iterative(2, {"width": 3}), tuner)
    assert sim.done.status == "succeeded"
    assert [s[0] for s in seen] == [0, 1, 2] and [s[3] for s in seen] == [0, 1, 2]
    assert seen[0][1] == [] and seen[1][1] == [0.1, 0.5] and seen[2][1] == [0.1, 0.5, 0.2, 0.5]
    assert seen[2][2] == [pytest.approx(0.04), pytest.approx(0.04), pytest.approx(0.01), pytest.approx(0.04)]
    assert seen[2][4] == 4  # Polyaxon's `configs` join param: the succeeded runs
    trials = [s for s in sim.started if "/tuner-" not in s.path]
    assert [s.params["x"] for s in trials] == [0.1, 0.5, 0.2, 0.5, pytest.approx(0.3), 0.5]
    assert [sim.node(s.path).iteration for s in trials] == [0, 0, 1, 1, 2, 2]
    tuner_start = next(s for s in sim.started if s.path == "it/tuner-0")
    assert tuner_start.params["width"] == 3


@pytest.mark.parametrize("out,script,message", [
    (lambda h, s: {"suggestions": []}, None, "reported no suggestions"),
    (lambda h, s: {"suggestions": "nope"}, None, "expected a list"),
    (lambda h, s: {"suggestions": [1, 2]}, None, "list of mappings"),
    (lambda h, s: None, None, "list of mappings"),
    (lambda h, s: None, {"it/tuner-0": ["fail"]}, "tuner job tuner-0 failed"),
])
def test_iterative_tuner_problems_fail_the_matrix(out, script, message):
    sim = run_iterative(iterative(1), out, script=script)
    assert sim.status("it") == "failed" and sim.node("it").reason == "TunerFailed"
    assert message in sim.node("it").message


def test_iterative_without_tuner_fails_clearly():
    m = Matrix(kind="iterative", params={"x": HpParam("uniform", [0, 1])}, extra={"maxIterations": 1})
    sim = run_iterative(m, None)
    assert sim.status("it") == "failed" and "needs a `tuner`" in sim.node("it").message
