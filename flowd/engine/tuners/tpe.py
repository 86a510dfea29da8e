"""Tree-structured Parzen estimators (POLYFLOW §6.2 ``tpe``) with optuna's ``TPESampler``.

Each iteration builds an in-memory optuna study from the history (every child that succeeded
with the metric, in the sampler's coordinates of :mod:`.space`) and asks it for ``numRuns``
suggestions. The sampler is seeded per iteration, so the suggestions are a pure function of the
seed and the history. Settings: multivariate TPE (it models the parameters jointly, which helps
on coupled objectives), the first 10 observations are random (optuna's ``n_startup_trials``),
and ``constant_liar`` so the suggestions of one batch spread out instead of repeating. Polyaxon
2.18's ``tpe`` has no algorithm options (2.16's ``hyperopt`` kind with ``algorithm`` is rejected
by 2.18 and by flowd).
"""

from __future__ import annotations

import warnings
from typing import Any

from flowd.engine.tuners.base import Trial, TunerError, metric_spec
from flowd.engine.tuners.space import dims, key
from flowd.spec.compiled import Matrix

STARTUP_TRIALS = 10


def suggest(matrix: Matrix, trials: list[Trial], count: int, seed: int) -> list[dict[str, Any]]:
    metric = metric_spec(matrix)
    if metric is None:
        raise TunerError("a tpe matrix needs `metric` with a `name`")
    space = dims(matrix.params)

    import optuna
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    distributions: dict[str, Any] = {}
    for d in space:
        if d.type == "real":
            distributions[d.name] = FloatDistribution(d.low, d.high)
        elif d.type == "ordinal":
            distributions[d.name] = IntDistribution(0, len(d.values) - 1)
        else:
            distributions[d.name] = CategoricalDistribution(list(range(len(d.values))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # multivariate/constant_liar are marked experimental
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=STARTUP_TRIALS, multivariate=True,
                                             constant_liar=True)
        study = optuna.create_study(direction="maximize" if metric[1] else "minimize", sampler=sampler)
        for t in trials:
            if t.metric is None:
                continue
            study.add_trial(optuna.trial.create_trial(
                params={d.name: d.encode(t.params.get(d.name)) for d in space},
                distributions=distributions, value=float(t.metric)))
        seen = {key(t.params) for t in trials}
        out: list[dict[str, Any]] = []
        attempts = 0
        while len(out) < count and attempts < count * 20:
            attempts += 1
            trial = study.ask(fixed_distributions=distributions)
            suggestion = {d.name: d.decode(trial.params[d.name]) for d in space}
            k = key(suggestion)
            if k in seen:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue  # a discrete space: this configuration already ran
            seen.add(k)
            out.append(suggestion)
    return out
