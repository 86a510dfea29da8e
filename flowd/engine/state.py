"""The persisted state of pipeline runs.

Everything here is plain data that msgspec encodes: a snapshot is exactly these structs. What can
be derived from them (the op spec of each node, downstream edges, concurrency limits) is rebuilt
on restore by :mod:`flowd.engine.core` and never stored twice.

One flat ``nodes`` map per run holds every op at every depth, keyed by its path (``a``,
``outer/inner``, ``sweep[3]``, ``sweep[3]/inner``; the root pipeline is ``""``). Nodes are
inserted parents-first, so iterating the map in order is a valid rebuild order.
"""

from __future__ import annotations

from typing import Any

import msgspec

from flowd.engine import status as S
from flowd.engine.messages import HookOf
from flowd.spec.compiled import Op

SNAPSHOT_VERSION = 1

# node kinds that have children
PIPELINE_KINDS = frozenset({"dag", "matrix", "schedule"})


def child_path(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


class Node(msgspec.Struct, array_like=True, gc=False, omit_defaults=True):
    path: str
    # path of the pipeline node this op belongs to (None for the root)
    parent: str | None
    name: str
    # position in the parent DAG's ops, or the child number of a matrix
    index: int
    # job | service | tfjob | ... for leaf runs; dag | matrix for pipelines
    kind: str
    status: str = "created"
    created_at: float = 0.0
    attempt: int = 0
    # readiness counters over the upstream ops (POLYFLOW §5.4), updated as each one finishes
    n_up: int = 0
    n_done: int = 0
    n_ok: int = 0
    n_bad: int = 0
    # approval given (literal isApproved: false starts as False)
    approved: bool = True
    # the trigger fired (or an event edge matched); preparation may still wait for approval
    ready: bool = False
    # holds one of its parent's concurrency slots
    holds_slot: bool = False
    params: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = None
    started_at: float | None = None
    finished_at: float | None = None
    message: str | None = None
    reason: str | None = None
    # matrix children: the suggestion merged over the matrix op's params
    suggestion: dict[str, Any] | None = None
    # --- pipelines (dag, matrix) only ---
    children: list[str] | None = None
    n_children_done: int = 0
    n_children_failed: int = 0
    n_children_stopped: int = 0
    n_services_live: int = 0
    active: int = 0
    # children compiled and waiting for a slot, in admission order; ``waiting_head`` is the next
    waiting: list[str] | None = None
    waiting_head: int = 0
    stopping: bool = False
    # set when early stopping fired: the status the pipeline ends with
    early_outcome: str | None = None
    # every descendant run created, and those failed/upstream_failed (early stopping population)
    desc_total: int = 0
    desc_bad: int = 0
    # --- schedules ---
    # schedule children: the tick this child runs for (globals.schedule_at)
    schedule_at: float | None = None
    # the schedule node: the tick waiting on a timer, the latest tick given a child, and whether
    # no tick will ever follow (maxRuns, endAt, stopped)
    next_at: float | None = None
    last_at: float | None = None
    exhausted: bool = False
    # --- event keys ---
    # statuses already emitted for the current attempt in the current epoch (one bit each, see
    # ``status_bit``) and how many emissions repeated one of them: a repeat (``created`` again
    # when the op is held for approval, ``running`` again after ``unknown``) is a distinct event,
    # so its key gets ``~N`` and a consumer that dedupes on keys keeps it
    emitted: int = 0
    repeats: int = 0
    # --- tuned matrices (hyperband, bayes, tpe, iterative) ---
    # on a child: the iteration (and hyperband round, ``bracket_iteration``) that created it; on
    # the matrix node: the iteration in progress. With the children's params and metrics this is
    # all a tuner needs, so the suggestions after a restore are the ones before it.
    iteration: int | None = None
    bracket: int | None = None
    # hyperband with ``resume: true``: the path of the run this one continues with more resource
    origin: str | None = None
    # intermediate metrics a running child reported: [[step, value], ...] per metric name
    curves: dict[str, list[list[float]]] | None = None
    # matrix node: metric reports seen so far (early-stopping policies evaluate every
    # ``evaluationInterval`` of them)
    n_reports: int = 0
    # --- joins (POLYFLOW §8.4) ---
    # lineage: "<run id>/<op path>" of every run the op's joins selected, in order
    joined: list[str] | None = None


class HookRecord(msgspec.Struct, gc=False, omit_defaults=True):
    """A hook of an op of this run, decided (POLYFLOW §8.3): the run it started (``status``
    ``created``), or why none (``skipped``: conditions false; ``failed``: ``message``)."""

    path: str
    attempt: int
    index: int
    hub_ref: str
    trigger_status: str
    run_id: str
    status: str
    message: str | None = None


class RunState(msgspec.Struct, gc=False, omit_defaults=True):
    run_id: str
    pipeline: Op
    seed: int
    created_at: float
    nodes: dict[str, Node]
    # timer id -> due time, for every timer set and not yet fired or cancelled
    timers: dict[str, float] = {}
    done: bool = False
    # how many times the run was resumed: part of event keys, so a transition repeated after a
    # resume is a new event, never mistaken for a duplicate of the first one
    epoch: int = 0
    # the submission's context for `globals` (owner, project, paths)
    context: dict[str, str] = {}
    # a hook run: whose hook it is; a source run: the hooks its ops fired, in firing order
    hook_of: HookOf | None = None
    hooks: list[HookRecord] = []


class Snapshot(msgspec.Struct, omit_defaults=True):
    version: int
    runs: list[RunState]


def attempt_key(run: RunState, node: Node) -> str:
    """The deterministic identity of an op attempt: adapters never start one key twice."""
    return f"{run.run_id}/{node.path}#{node.attempt}"


# one bit per status in ``Node.emitted`` (keys are built by ``Step.emit_status``)
STATUS_BITS = {status: 1 << i for i, status in enumerate(sorted(S.ALL))}
# a status outside the known set (never emitted today) shares one bit: still unique keys
OTHER_BIT = 1 << len(STATUS_BITS)


def status_bit(status: str) -> int:
    return STATUS_BITS.get(status, OTHER_BIT)


def done_key(run: RunState) -> str:
    """The key of the run's completion event: one per epoch (``RUN:done``, ``RUN:done@1``...)."""
    return f"{run.run_id}:done{epoch_suffix(run)}"


def epoch_suffix(run: RunState) -> str:
    """Appended to event keys after a resume, so repeated transitions are new events."""
    return f"@{run.epoch}" if run.epoch else ""
