"""Quality of the tuners: median best value found by random search, bayes, tpe and hyperband.

    .venv/bin/python bench/tuning_bench.py               # 10 seeds, every function
    .venv/bin/python bench/tuning_bench.py --seeds 20 branin

Each method is a real matrix driven through the engine (``Engine.handle``) with an instant
in-process executor that evaluates the test function on the child's params and reports the
value as the child's ``loss`` output (minimised). Budgets are equal: every method gets BUDGET
evaluations at full resource (random: ``numRuns``; bayes: ``numInitialRuns`` + ``maxIterations``;
tpe: ``numRuns`` × (``maxIterations`` + 1)). Hyperband gets the same *total resource*: its
children are evaluated with a resource-dependent noise model — at resource ``r`` of ``R`` the
observed loss is ``f(x) + N(0, (noise·(R/r − 1))²)`` — and hyperband passes (fresh seeds) run until
the resource spent reaches BUDGET·R; its answer is the best observed run at the highest resource
reached within that budget. The figure for every method is the true (noise-free) value of the
configuration it would pick (its best observed run), so noise cannot flatter anyone.

Functions (all minimised; global minima in brackets): Branin on [-5,10]×[0,15] (0.397887),
Hartmann-6 on [0,1]^6 (−3.32237), a noisy 4-d quadratic ``Σ(x_i − 0.3)²`` on [−1,1]^4 observed
with N(0, 0.05²) noise (0).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from flowd.engine.core import Engine
from flowd.engine.messages import OpStatus, PipelineDone, StartOp, Submit
from flowd.spec.compiled import Component, Dag, HpParam, IOSpec, Matrix, Op

BUDGET = 40
HB_R, HB_ETA = 27, 3

# ---------------------------------------------------------------------------- test functions


def branin(p: dict[str, float]) -> float:
    x1, x2 = p["x1"], p["x2"]
    a, b, c, r, s, t = 1.0, 5.1 / (4 * math.pi**2), 5 / math.pi, 6.0, 10.0, 1 / (8 * math.pi)
    return a * (x2 - b * x1**2 + c * x1 - r) ** 2 + s * (1 - t) * math.cos(x1) + s


_H_A = [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]]
_H_P = [[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]]
_H_ALPHA = [1.0, 1.2, 3.0, 3.2]


def hartmann6(p: dict[str, float]) -> float:
    x = [p[f"x{i}"] for i in range(1, 7)]
    return -sum(_H_ALPHA[i] * math.exp(-sum(_H_A[i][j] * (x[j] - _H_P[i][j] * 1e-4) ** 2 for j in range(6)))
                for i in range(4))


def quadratic(p: dict[str, float]) -> float:
    return sum((p[f"x{i}"] - 0.3) ** 2 for i in range(1, 5))


FUNCTIONS: dict[str, tuple[Callable[[dict[str, float]], float], dict[str, HpParam], float, float]] = {
    # name: (f, space, intrinsic observation noise sd, hyperband low-resource noise scale)
    "branin": (branin, {"x1": HpParam("uniform", [-5.0, 10.0]), "x2": HpParam("uniform", [0.0, 15.0])}, 0.0, 5.0),
    "hartmann6": (hartmann6, {f"x{i}": HpParam("uniform", [0.0, 1.0]) for i in range(1, 7)}, 0.0, 0.3),
    "noisy-quadratic": (quadratic, {f"x{i}": HpParam("uniform", [-1.0, 1.0]) for i in range(1, 5)}, 0.05, 0.2),
}

# ----------------------------------------------------------------------------------- driver


def matrix_for(method: str, space: dict[str, HpParam], seed: int) -> Matrix:
    metric = {"name": "loss", "optimization": "minimize"}
    if method == "random":
        return Matrix(kind="random", params=space, num_runs=BUDGET, seed=seed)
    if method == "bayes":
        return Matrix(kind="bayes", params=space, seed=seed, extra={
            "numInitialRuns": 10, "maxIterations": BUDGET - 10, "metric": metric,
            "utilityFunction": {"acquisitionFunction": "ei", "eps": 0.0, "gaussianProcess": {"kernel": "matern", "nu": 2.5}}})
    if method == "tpe":
        return Matrix(kind="tpe", params=space, num_runs=5, seed=seed, extra={"maxIterations": BUDGET // 5 - 1,
                                                                             "metric": metric})
    if method == "hyperband":
        return Matrix(kind="hyperband", params=space, seed=seed, extra={
            "maxIterations": HB_R, "eta": HB_ETA, "resource": {"name": "r", "type": "float"}, "metric": metric})
    raise ValueError(method)


def run_matrix(matrix: Matrix, evaluate: Callable[[dict[str, Any]], float]) -> list[tuple[dict[str, Any], float]]:
    """Drive one matrix run to its end through the engine; (params, observed loss) per child."""
    inputs = [IOSpec(name, type="float") for name in (matrix.params or {})]
    if matrix.kind == "hyperband":
        inputs.append(IOSpec("r", type="float"))
    op = Op(name="tune", component=Component(kind="job", inputs=inputs, outputs=[IOSpec("loss", type="float")],
                                             run={"container": {"image": "none"}}), matrix=matrix)
    root = Op(name="bench", component=Component(kind="dag", dag=Dag(ops=[op])))
    engine = Engine()
    now = 0.0
    pending = [c for c in engine.handle(Submit("b", root, now, seed=1)) if isinstance(c, StartOp)]
    seen: list[tuple[dict[str, Any], float]] = []
    done = False
    while pending and not done:
        start = pending.pop(0)
        now += 1.0
        loss = evaluate(start.params)
        seen.append((start.params, loss))
        for command in engine.handle(OpStatus("b", start.path, start.attempt, "succeeded", now, outputs={"loss": loss})):
            if isinstance(command, StartOp):
                pending.append(command)
            elif isinstance(command, PipelineDone):
                done = True
    return seen


def best_true(method: str, name: str, seed: int) -> float:
    f, space, noise, hb_noise = FUNCTIONS[name]
    rng = random.Random(seed * 7 + 1)

    def observe(params: dict[str, Any], resource: float = 1.0) -> float:
        value = f(params) + rng.gauss(0.0, noise) if noise else f(params)
        if resource < 1.0:
            value += rng.gauss(0.0, hb_noise * (1.0 / resource - 1.0))
        return value

    if method != "hyperband":
        seen = run_matrix(matrix_for(method, space, seed), lambda p: observe(p))
        assert len(seen) == BUDGET, (method, len(seen))
        return f(min(seen, key=lambda s: s[1])[0])
    spent, best, top = 0.0, None, 0.0
    for rep in range(100):
        seen = run_matrix(matrix_for("hyperband", space, seed * 1000 + rep), lambda p: observe(p, p["r"] / HB_R))
        for params, loss in seen:
            cost = params["r"] / HB_R
            if spent + cost > BUDGET + 1e-9:
                return f(best[0]) if best else math.nan
            spent += cost
            if params["r"] > top or (params["r"] == top and loss < best[1]):  # type: ignore[index]
                top, best = params["r"], (params, loss)
    return f(best[0]) if best else math.nan


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("functions", nargs="*", default=list(FUNCTIONS))
    ap.add_argument("--seeds", type=int, default=10)
    args = ap.parse_args()
    methods = ["random", "bayes", "tpe", "hyperband"]
    print(f"budget {BUDGET} full-resource evaluations per run (hyperband: R={HB_R}, eta={HB_ETA}, same total "
          f"resource), {args.seeds} seeds, median of the true value at each method's pick (lower is better)")
    print(f"{'function':<16}" + "".join(f"{m:>12}" for m in methods) + f"{'bayes vs rnd':>14}{'tpe vs rnd':>12}{'secs':>7}")
    for name in args.functions:
        t0 = time.perf_counter()
        medians = {m: statistics.median(best_true(m, name, seed) for seed in range(1, args.seeds + 1)) for m in methods}
        gap = {m: medians["random"] - medians[m] for m in ("bayes", "tpe")}
        print(f"{name:<16}" + "".join(f"{medians[m]:>12.4f}" for m in methods)
              + f"{gap['bayes']:>+14.4f}{gap['tpe']:>+12.4f}{time.perf_counter() - t0:>7.1f}", flush=True)
    print("'x vs rnd' = random's median minus x's median: positive means x found better (lower) values")


if __name__ == "__main__":
    main()
