"""The compiled pipeline: what the spec layer hands to the engine.

A Polyaxonfile is parsed into the document model (``flowd.spec.model``), its references are
resolved and it is validated; the result is this small, fully resolved tree. Nothing here
needs the original YAML again: every reference (``dagRef``, ``hubRef``, ``pathRef``, ``urlRef``,
inline ``component``) has been replaced by the component it names, every dependency edge
(explicit, ``ref: ops.X``, ``{{ ops.X... }}`` templates, ``events``) is listed on the op, and
the op/component/DAG pass-down of ``termination`` has been applied.

Values that are still templates (strings containing ``{{``) stay as strings; the engine renders
them at run time with the sandboxed template engine.

The root of a submitted pipeline is itself an :class:`Op`: its component is the file's
component, its params are the values given at submission (``--param``), its name is the
component's name. Its component's ``kind`` is ``dag`` for a pipeline, or a job/service kind for
a single-run file.
"""

from __future__ import annotations

from typing import Any

import msgspec

TRIGGER_POLICIES = (
    "all_succeeded",
    "all_failed",
    "all_done",
    "one_succeeded",
    "one_failed",
    "one_done",
)


class IOSpec(msgspec.Struct, omit_defaults=True, frozen=True, gc=False):
    """One declared input or output of a component."""

    name: str
    type: str | None = None
    is_optional: bool = False
    is_list: bool = False
    value: Any = None
    is_flag: bool = False
    arg_format: str | None = None
    to_env: str | None = None
    connection: str | None = None
    delay_validation: bool | None = None
    # the raw ``validation`` block (gt, le, regex, options, ...), applied at run time
    validation: dict[str, Any] | None = None
    # added by the spec layer (optional): turn the value into an init step (POLYFLOW §3.8)
    to_init: bool | None = None
    description: str | None = None


class ParamSpec(msgspec.Struct, omit_defaults=True, frozen=True, gc=False):
    """A param of an op, always in full form (the short form ``lr: 0.05`` is ``value=0.05``).

    With ``ref`` set, ``value`` is the reference path (``outputs.loss``, ``inputs.x``, ...).
    ``ref`` is ``ops.<name>``, ``dag`` or ``runs.<uuid>``.
    """

    value: Any = None
    ref: str | None = None
    context_only: bool | None = None
    to_env: str | None = None
    to_init: bool | None = None
    connection: str | None = None


class Backoff(msgspec.Struct, omit_defaults=True, frozen=True, gc=False):
    """flowd extension: delay between retry attempts, ``base * factor**(attempt-1)`` capped at
    ``max``, plus up to ``jitter`` (a fraction of the delay) drawn from the pipeline's seed."""

    base: float = 1.0
    factor: float = 2.0
    max: float = 300.0
    jitter: float = 0.0


class Termination(msgspec.Struct, omit_defaults=True, frozen=True, gc=False):
    max_retries: int = 0
    timeout: float | None = None
    ttl: float | None = None
    backoff: Backoff | None = None


class HpParam(msgspec.Struct, omit_defaults=True, frozen=True, gc=False):
    """A matrix hyperparameter generator: ``{kind: linspace, value: [0, 1, 5]}``."""

    kind: str
    value: Any = None


class EarlyStopping(msgspec.Struct, omit_defaults=True, frozen=True, gc=False):
    kind: str  # failure_early_stopping | metric_early_stopping
    percent: float | None = None
    metric: str | None = None
    value: float | None = None
    optimization: str | None = None  # maximize | minimize
    policy: dict[str, Any] | None = None


class Matrix(msgspec.Struct, omit_defaults=True, frozen=True, gc=False):
    kind: str  # mapping | grid | random | hyperband | bayes | tpe | iterative
    values: list[dict[str, Any]] | str | None = None  # mapping (may be a template)
    params: dict[str, HpParam] | None = None
    num_runs: int | None = None
    seed: int | None = None
    concurrency: int | None = None
    early_stopping: list[EarlyStopping] = []
    # the remaining kind-specific fields (maxIterations, eta, resource, metric, tuner, ...)
    extra: dict[str, Any] = {}
    # ``iterative``: the user's tuner component (``tuner.hubRef``) compiled into an op, run
    # between iterations (its params are ``tuner.params``; the engine adds the history)
    tuner: Op | None = None


class Dag(msgspec.Struct, omit_defaults=True, frozen=True, gc=False):
    """The body of a ``run: {kind: dag}``; ops in declaration order."""

    ops: list[Op]
    concurrency: int | None = None
    early_stopping: list[EarlyStopping] = []
    # passed down to children as defaults (environment, connections, volumes)
    environment: dict[str, Any] | None = None
    connections: list[str] | None = None
    volumes: list[dict[str, Any]] | None = None
    # added by the spec layer (optional): the DAG rules (POLYFLOW §4.3 D3-D16) that failed for a
    # nested DAG. The reference only applies them when the nested DAG run is compiled, so they
    # are warnings at submission; the engine MUST fail this DAG run with these messages when it
    # starts it (POLYFLOW §4.3 [FLOWD], §5.2). Empty for a valid DAG.
    errors: list[str] = []


class Component(msgspec.Struct, omit_defaults=True, frozen=True, gc=False):
    """An effective (composed) component."""

    kind: str  # run.kind: job | service | dag | tfjob | pytorchjob | mpijob | daskcluster | ...
    name: str | None = None
    inputs: list[IOSpec] = []
    outputs: list[IOSpec] = []
    # the runtime body for non-DAG kinds, camelCase keys as written (container, environment,
    # init, sidecars, connections, volumes, ports, replicas, ...); for a DAG only its
    # pass-down fields stay in ``dag``
    run: dict[str, Any] = {}
    dag: Dag | None = None
    strict_params: bool = False
    namespace: str | None = None
    queue: str | None = None
    tags: list[str] = []
    # where the component came from (file path, hub name, url), for messages
    source: str | None = None


# the params every hook run receives (unless ``disableDefaults``), describing the run that ended
HOOK_DEFAULT_PARAMS = ("name", "uuid", "kind", "status", "runtime", "wait_time", "duration", "inputs", "outputs",
                       "condition")


class Hook(msgspec.Struct, omit_defaults=True, frozen=True, gc=False):
    """A hook of an op (POLYFLOW §8.3): when the op's run ends with a status ``trigger`` matches
    (unset and ``done`` match any) and ``conditions`` render true, ``op`` runs as a separate run.
    ``op`` is the hook's ``hubRef`` component compiled into an operation with the hook's params;
    None when flowd could not resolve it (the hook then fails when it fires, with ``error``)."""

    hub_ref: str
    op: Op | None = None
    trigger: str | None = None
    conditions: str | None = None
    connection: str | None = None
    disable_defaults: bool | str | None = None
    error: str | None = None


class Op(msgspec.Struct, omit_defaults=True, frozen=True, gc=False):
    """One operation: a DAG node, or the root of a submitted pipeline."""

    name: str
    component: Component
    params: dict[str, ParamSpec] = {}
    # every upstream op of the same DAG, deduplicated, in first-mention order:
    # dependencies, then ref: ops.X params, then events, then {{ ops.X }} templates
    upstream: list[str] = []
    # upstream op -> the non-terminal statuses that start this op early (POLYFLOW §5.7)
    event_edges: dict[str, list[str]] = {}
    trigger: str = "all_succeeded"  # one of TRIGGER_POLICIES, or a template
    conditions: str | None = None
    skip_on_upstream_skip: bool = False
    is_approved: bool | str = True
    matrix: Matrix | None = None
    termination: Termination = Termination()
    cache: dict[str, Any] | None = None
    # top-level only
    schedule: dict[str, Any] | None = None
    events: list[dict[str, Any]] = []
    hooks: list[Hook] = []
    joins: list[dict[str, Any]] = []
