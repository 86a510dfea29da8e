"""Bayesian optimisation with a Gaussian process (POLYFLOW §6.2 ``bayes``).

Iteration 0 is ``numInitialRuns`` random suggestions (in :mod:`flowd.engine.tuners`); every later
iteration fits scikit-learn's ``GaussianProcessRegressor`` on the (config, metric) pairs of all
succeeded children, in the unit cube of :mod:`.space`, and proposes the point that maximises the
acquisition function of ``utilityFunction``:

* ``ucb`` (default): ``μ + κ·σ`` (``kappa``, default 2.576);
* ``ei``: expected improvement over the best value by more than ``eps`` (default 0);
* ``poi``: probability of improving on the best value by more than ``eps``.

``gaussianProcess``: ``kernel`` ``matern`` (default, with ``nu``, default 1.5) or ``rbf``, the
initial ``lengthScale`` (1.0; one per dimension, fitted by maximum likelihood within
[0.01, 100] of the unit cube), ``numRestartsOptimizer`` (0). The kernel is
``amplitude · shape + white noise`` (both fitted), with ``normalize_y``.
The acquisition is maximised by ``numWarmup`` random points (default 2000) followed by
L-BFGS-B (scipy) from the best ``numIterations`` of them (default 5). Minimisation is
maximisation of the negated metric. Every random choice is seeded by the caller.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from flowd.engine.tuners.base import Trial, TunerError, _random, metric_spec
from flowd.engine.tuners.space import dims, key
from flowd.spec.compiled import Matrix

DEFAULT_KAPPA = 2.576
DEFAULT_WARMUP = 2_000
DEFAULT_ITERATIONS = 5


def _options(matrix: Matrix) -> dict[str, Any]:
    uf = matrix.extra.get("utilityFunction") or {}
    gp = uf.get("gaussianProcess") or {}
    acq = uf.get("acquisitionFunction") or "ucb"
    if acq not in ("ucb", "ei", "poi"):
        raise TunerError(f"utilityFunction.acquisitionFunction must be ucb, ei or poi, got {acq!r}")
    kernel = gp.get("kernel") or "matern"
    if kernel not in ("matern", "rbf"):
        raise TunerError(f"gaussianProcess.kernel must be matern or rbf, got {kernel!r}")
    return {
        "acq": acq,
        "kappa": float(uf["kappa"]) if uf.get("kappa") is not None else DEFAULT_KAPPA,
        "eps": float(uf["eps"]) if uf.get("eps") is not None else 0.0,
        "kernel": kernel,
        "length_scale": float(gp["lengthScale"]) if gp.get("lengthScale") is not None else 1.0,
        "nu": float(gp["nu"]) if gp.get("nu") is not None else 1.5,
        "restarts": int(gp["numRestartsOptimizer"]) if gp.get("numRestartsOptimizer") is not None else 0,
        "warmup": int(uf["numWarmup"]) if uf.get("numWarmup") else DEFAULT_WARMUP,
        "iterations": int(uf["numIterations"]) if uf.get("numIterations") else DEFAULT_ITERATIONS,
    }


def suggest(matrix: Matrix, trials: list[Trial], count: int, seed: int) -> list[dict[str, Any]]:
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    # one BLAS thread: the matrices are tiny (threads only contend, 5x slower on a loaded machine)
    # and a fixed reduction order keeps the suggestions bit-for-bit reproducible
    with threadpool_limits(limits=1):
        return _suggest(matrix, trials, count, seed)


def _suggest(matrix: Matrix, trials: list[Trial], count: int, seed: int) -> list[dict[str, Any]]:
    metric = metric_spec(matrix)
    if metric is None:
        raise TunerError("a bayes matrix needs `metric` with a `name`")
    options = _options(matrix)
    space = dims(matrix.params)
    observed = [t for t in trials if t.metric is not None]
    if len(observed) < 2:  # nothing to fit yet: explore
        return _random(matrix, count, seed, 0, trials)

    import numpy as np
    from scipy.optimize import minimize  # type: ignore[import-untyped]
    from scipy.special import ndtr  # type: ignore[import-untyped]
    from sklearn.gaussian_process import GaussianProcessRegressor  # type: ignore[import-untyped]
    from sklearn.gaussian_process.kernels import (  # type: ignore[import-untyped]
        RBF,
        ConstantKernel,
        Matern,
        WhiteKernel,
    )

    sign = 1.0 if metric[1] else -1.0
    X = np.array([[d.to_unit(t.params.get(d.name)) for d in space] for t in observed])
    y = np.array([sign * float(t.metric) for t in observed])  # type: ignore[arg-type]
    # one length scale per dimension (started at lengthScale), bounded so the fit cannot collapse
    # onto the data points (a length scale of 1e-5 makes the GP a lookup table and the acquisition
    # pure exploration); an amplitude and a small learned noise term let it fit noisy metrics
    scales = [options["length_scale"]] * len(space)
    if options["kernel"] == "rbf":
        shape = RBF(length_scale=scales, length_scale_bounds=(1e-2, 1e2))
    else:
        shape = Matern(length_scale=scales, length_scale_bounds=(1e-2, 1e2), nu=options["nu"])
    kernel = ConstantKernel(1.0, (1e-3, 1e3)) * shape + WhiteKernel(1e-5, (1e-9, 1e-1))
    gp = GaussianProcessRegressor(kernel=kernel, alpha=1e-6, normalize_y=True,
                                  n_restarts_optimizer=options["restarts"], random_state=seed % (2**31))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings of the kernel fit are expected
        gp.fit(X, y)
    best = float(y.max())

    posterior = _Posterior(gp, options)

    def acquisition(points: Any) -> Any:
        mu, sd = posterior(points)
        sd = np.maximum(sd, 1e-12)
        if options["acq"] == "ucb":
            return mu + options["kappa"] * sd
        z = (mu - best - options["eps"]) / sd
        if options["acq"] == "ei":
            return (mu - best - options["eps"]) * ndtr(z) + sd * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
        return ndtr(z)

    rng = np.random.default_rng(seed)
    dim = len(space)
    warm = rng.random((options["warmup"], dim))
    values = acquisition(warm)
    order = np.argsort(-values, kind="stable")
    candidates: list[tuple[float, Any]] = []
    bounds = [(0.0, 1.0)] * dim
    for start in warm[order[: options["iterations"]]]:
        res = minimize(lambda x: -float(acquisition(x.reshape(1, -1))[0]), start, bounds=bounds, method="L-BFGS-B")
        candidates.append((-float(res.fun), np.clip(res.x, 0.0, 1.0)))
    candidates.sort(key=lambda c: -c[0])
    candidates += [(float(values[i]), warm[i]) for i in order]

    seen = {key(t.params) for t in trials}
    out: list[dict[str, Any]] = []
    for _, point in candidates:
        suggestion = {d.name: d.from_unit(u) for d, u in zip(space, point, strict=True)}
        k = key(suggestion)
        if k in seen:
            continue  # a discrete space: this configuration already ran
        seen.add(k)
        out.append(suggestion)
        if len(out) == count:
            break
    return out


class _Posterior:
    """The fitted GP's predictive mean and standard deviation, computed directly from its fitted
    parameters (the same formulas as ``GaussianProcessRegressor.predict``). The acquisition is
    evaluated thousands of times per suggestion, mostly on one point at a time by L-BFGS-B, and
    ``predict``'s input validation costs ~1 ms per call; this costs a few microseconds."""

    def __init__(self, gp: Any, options: dict[str, Any]) -> None:
        import numpy as np
        from scipy.linalg import solve_triangular  # type: ignore[import-untyped]

        self.np = np
        self.solve = solve_triangular
        kernel = gp.kernel_
        self.amplitude = float(kernel.k1.k1.constant_value)
        shape = kernel.k1.k2
        self.scales = np.asarray(shape.length_scale, dtype=float)
        self.nu = float(getattr(shape, "nu", math.inf))
        self.noise = float(kernel.k2.noise_level)
        self.kernel = kernel if self.nu not in (0.5, 1.5, 2.5, math.inf) else None
        self.X = gp.X_train_ / self.scales
        self.alpha = gp.alpha_
        self.L = gp.L_
        self.y_mean = np.asarray(gp._y_train_mean, dtype=float)  # noqa: SLF001
        self.y_std = np.asarray(gp._y_train_std, dtype=float)  # noqa: SLF001

    def _k(self, points: Any) -> Any:
        np = self.np
        if self.kernel is not None:  # an unusual nu: sklearn's general Matern (Bessel functions)
            return self.kernel.k1(points, self.X * self.scales)
        diff = points[:, None, :] / self.scales - self.X[None, :, :]
        d = np.sqrt(np.maximum((diff * diff).sum(axis=2), 0.0))
        if self.nu == 0.5:
            k = np.exp(-d)
        elif self.nu == 1.5:
            t = math.sqrt(3) * d
            k = (1.0 + t) * np.exp(-t)
        elif self.nu == 2.5:
            t = math.sqrt(5) * d
            k = (1.0 + t + t * t / 3.0) * np.exp(-t)
        else:
            k = np.exp(-0.5 * d * d)
        return self.amplitude * k

    def __call__(self, points: Any) -> tuple[Any, Any]:
        np = self.np
        k = self._k(np.atleast_2d(points))
        mean = k @ self.alpha
        v = self.solve(self.L, k.T, lower=True, check_finite=False)
        var = self.amplitude + self.noise - np.einsum("ij,ij->j", v, v)
        sd = np.sqrt(np.maximum(var, 0.0))
        return mean.ravel() * self.y_std + self.y_mean, sd * self.y_std
