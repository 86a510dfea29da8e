"""Events into the engine and commands out of it.

The engine is ``state + event -> new state + commands``. Everything that happens to a pipeline
arrives as one of the events below (from a CLI, Kafka, an executor or a timer adapter), and
everything the engine wants done leaves as one of the commands, each carried out by exactly one
adapter. Times are seconds since the epoch and always come *in* with an event: the engine has
no clock.

Op paths name an op inside a pipeline run: ``train`` for a top-level op, ``outer/inner`` inside a
nested DAG, ``sweep[3]`` for the 4th child of a matrix and ``sweep[3]/inner`` for an op in the DAG
that child runs. The root pipeline itself has the path ``""``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from flowd.spec.compiled import Op, Termination

# ----------------------------------------------------------------------------------- events


class HookOf(msgspec.Struct, omit_defaults=True, frozen=True, gc=False):
    """What a hook run was started for (POLYFLOW §8.3): hook ``index`` of the op at ``path`` of
    run ``run_id`` (``""``: the pipeline itself), when its attempt ``attempt`` ended ``status``."""

    run_id: str
    path: str
    attempt: int
    index: int
    hub_ref: str
    status: str
    epoch: int = 0


class Submit(msgspec.Struct, tag="submit", omit_defaults=True, frozen=True, gc=False):
    """Start a new pipeline run. ``pipeline`` is the compiled root op (see flowd.spec.compiled)."""

    run_id: str
    pipeline: Op
    time: float
    # seeds every random choice of this run (random matrix, retry jitter) for reproducibility
    seed: int = 0
    # what the adapter knows of where the run lives, for `globals` (POLYFLOW §3.5): owner_name,
    # project_name, username, user_email, namespace, context_path, artifacts_path
    context: dict[str, str] = {}
    # set on a hook run: the run and op it is a hook of (a hook run fires no hooks itself)
    hook_of: HookOf | None = None


class OpStatus(msgspec.Struct, tag="op_status", omit_defaults=True, frozen=True, gc=False):
    """An executor's report about one attempt of one op (a job or service)."""

    run_id: str
    path: str
    attempt: int
    status: str  # a flowd.engine.status value: scheduled, starting, running, succeeded, failed...
    time: float
    message: str | None = None
    reason: str | None = None
    exit_code: int | None = None
    # outputs travel with the terminal status so downstream resolution never races them
    outputs: dict[str, Any] | None = None
    # intermediate metrics the running attempt reported since the last report, in order:
    # ``[{"step": 3, "loss": 0.4}, ...]`` (``$FLOWD_METRICS``; early-stopping policies read them)
    metrics: list[dict[str, Any]] | None = None


class TimerFired(msgspec.Struct, tag="timer", omit_defaults=True, frozen=True, gc=False):
    run_id: str
    timer_id: str
    time: float


class Stop(msgspec.Struct, tag="stop", omit_defaults=True, frozen=True, gc=False):
    """Stop a pipeline run (``path == ""``) or one op of it."""

    run_id: str
    time: float
    path: str = ""
    reason: str | None = None


class Approve(msgspec.Struct, tag="approve", omit_defaults=True, frozen=True, gc=False):
    run_id: str
    path: str
    time: float


class Resume(msgspec.Struct, tag="resume", omit_defaults=True, frozen=True, gc=False):
    """Run a finished, unsuccessful pipeline again from where it ended: ops that succeeded (or
    were skipped) keep their results; failed, stopped and upstream_failed ops run again, with
    new attempt numbers."""

    run_id: str
    time: float


Event = Submit | OpStatus | TimerFired | Stop | Approve | Resume

# --------------------------------------------------------------------------------- commands


class StartOp(msgspec.Struct, tag="start_op", omit_defaults=True, frozen=True, gc=False):
    """Run one attempt of a job-like op. ``key`` is unique and deterministic for
    (run, path, attempt): an adapter that sees the same key twice must not start twice."""

    run_id: str
    path: str
    attempt: int
    key: str
    kind: str  # job | service | tfjob | pytorchjob | mpijob | ...
    # the op's inputs/outputs/context params, resolved to literals and type-coerced
    params: dict[str, Any]
    # the runtime body with every template rendered (container, environment, init, ...)
    run: dict[str, Any]
    # env vars the adapter adds to the main container (params with toEnv)
    env: dict[str, str] = {}
    termination: Termination = Termination()
    namespace: str | None = None
    outputs: list[str] = []
    # POLYFLOW §5.10: set when the op may reuse a cached result: a digest of the component's
    # content and its resolved inputs (restricted by cache.io). The executor looks it up before
    # starting and reports ``succeeded`` with reason ``CacheHit`` and the original outputs.
    cache_key: str | None = None
    # seconds a cached result stays usable after it finished (cache.ttl); None: forever
    cache_ttl: float | None = None


class StopOp(msgspec.Struct, tag="stop_op", omit_defaults=True, frozen=True, gc=False):
    run_id: str
    path: str
    attempt: int
    key: str
    reason: str | None = None


class SetTimer(msgspec.Struct, tag="set_timer", omit_defaults=True, frozen=True, gc=False):
    """Deliver ``TimerFired(run_id, timer_id, time>=at)`` back to the engine at ``at``.
    Setting an existing ``timer_id`` again replaces it."""

    run_id: str
    timer_id: str
    at: float


class CancelTimer(msgspec.Struct, tag="cancel_timer", omit_defaults=True, frozen=True, gc=False):
    run_id: str
    timer_id: str


class StatusChanged(msgspec.Struct, tag="status", omit_defaults=True, frozen=True, gc=False):
    """Every status change of the pipeline (``path == ""``) or of one of its ops.
    ``key`` is deterministic so a replayed transition produces the same event key."""

    run_id: str
    path: str
    status: str
    time: float
    attempt: int = 0
    key: str = ""
    message: str | None = None
    reason: str | None = None
    outputs: dict[str, Any] | None = None
    # on ``compiled``: the runs the op's joins selected, "<run id>/<op path>" (lineage, §8.4)
    joined: list[str] | None = None


class PipelineDone(msgspec.Struct, tag="done", omit_defaults=True, frozen=True, gc=False):
    run_id: str
    status: str
    time: float
    message: str | None = None
    # deterministic: ``<run id>:done`` (``<run id>:done@<n>`` after the n-th resume)
    key: str = ""


class StartHook(msgspec.Struct, tag="start_hook", omit_defaults=True, frozen=True, gc=False):
    """A finished op's hook (POLYFLOW §8.3), decided. ``status`` ``created``: submit ``pipeline``
    as a new, separate run ``hook_run_id`` (with ``Submit.hook_of = source``), on the adapter's
    usual submission path; ``skipped``: its conditions were false; ``failed``: it could not be
    resolved (``message``), nothing runs. ``hook_run_id`` derives from the source run, op path,
    attempt, epoch and hook index, so a redelivered or replayed transition asks for the same run
    and the adapter's once-per-run-id submission makes it run once. Never changes the source."""

    source: HookOf
    hook_run_id: str
    status: str
    time: float
    key: str
    pipeline: Op | None = None
    seed: int = 0
    context: dict[str, str] = {}
    message: str | None = None

    @property
    def run_id(self) -> str:
        return self.source.run_id


Command = StartOp | StopOp | SetTimer | CancelTimer | StatusChanged | PipelineDone | StartHook
