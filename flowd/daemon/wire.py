"""Wire types: the messages on flowd's Kafka topics (contract v1, checked against ``proto/v1``).

These are *not* the engine's events and commands (flowd.engine.messages): the daemon translates
between the two (:mod:`flowd.daemon.translate`), so the wire can evolve by version without touching
the engine, and the engine can change its internals without breaking producers in other languages.

One topic, one union, one tag field (``type``)::

    runs        (input)  Submission | StopCommand | ApproveCommand | OpReport | TimerFiring
    events      (output) StatusEvent | CompletionEvent
    external    (input)  ExternalEvent
    subscriptions (compacted, key = subscription id) Subscription
    deadletter  (output) DeadLetter
    snapshots   (compacted, key = partition number, msgpack) SnapshotRecord

Every message about one pipeline run is keyed by its run id, so one partition (one owner) sees
all of it in order. JSON for everything a foreign producer or consumer may touch; msgpack for
snapshots, which only the daemon reads.

Compatibility rule (v1): fields may be added with defaults; nothing is removed or retyped
without a new ``proto/vN`` and a new tag. Unknown fields are ignored by decoders.
"""

from __future__ import annotations

import inspect
from typing import Any, Literal

import msgspec

from flowd.engine import HookOf, StartOp
from flowd.spec.compiled import Op

__all__ = [
    "WIRE_VERSION", "Submission", "StopCommand", "ApproveCommand", "OpReport", "TimerFiring",
    "ResumeCommand", "RunsMessage", "StatusEvent", "CompletionEvent", "HookEvent", "HookSource", "EventsMessage",
    "ExternalEvent",
    "Subscription", "DeadLetter", "Diagnostic", "SnapshotRecord", "DaemonState", "TOPIC_TYPES",
    "encode", "decode_runs", "decode_events", "decode_external", "decode_subscription",
    "encode_snapshot", "decode_snapshot", "decode_deadletter", "HandlingMarker", "encode_marker",
    "decode_marker", "marker_key",
    "RunSummary", "OpSummary", "run_summary",
    "decode_status", "BlobRef", "SnapshotIndex", "SnapshotHead", "RunAttempts", "DaemonBlob",
    "snapshot_format", "decode_head", "encode_head",
]

WIRE_VERSION = 1

# gc=False: wire values are decoded JSON, never cyclic; untracked, they cost the collector nothing
_S = dict(tag_field="type", omit_defaults=True, kw_only=True, forbid_unknown_fields=False, gc=False)

# ------------------------------------------------------------------------------- runs (input)


# the run and op a hook run was started for: the engine's own struct (as StartOp is), so the
# daemon passes it through instead of copying it field by field
HookSource = HookOf


class Submission(msgspec.Struct, tag="submit", **_S):
    """Start a pipeline run. Give either ``spec`` (the Polyaxonfile text, compiled by the daemon:
    what a producer in another language sends) or ``pipeline`` (already compiled by
    ``flowd submit``). Key: ``run_id``."""

    run_id: str
    time: float
    spec: str | None = None
    # values for the top-level component's inputs (``--param``); only with ``spec``
    params: dict[str, Any] = {}
    pipeline: Op | None = None
    # a file name for messages (``spec`` only)
    source: str | None = None
    seed: int = 0
    # urlRef documents the daemon fetched for ``spec`` (url -> text), and the URLs it could not
    # fetch or refused (url -> why). The daemon fills them in and publishes the submission again
    # (flowd.daemon.urlrefs); a producer may fill them in itself instead of the daemon fetching.
    url_documents: dict[str, str] = {}
    url_errors: dict[str, str] = {}
    # a hook run (POLYFLOW §8.3), published by the daemon itself in the transaction of the
    # source's transition; its ``run_id`` is derived, so it runs once however often it arrives
    hook_of: HookSource | None = None
    # the source run's context for ``globals`` (owner, project, paths)
    context: dict[str, str] = {}


class StopCommand(msgspec.Struct, tag="stop", **_S):
    """Stop a run (``path == ""``) or one op of it; also ends a trigger subscription."""

    run_id: str
    time: float
    path: str = ""
    reason: str | None = None


class ApproveCommand(msgspec.Struct, tag="approve", **_S):
    run_id: str
    path: str
    time: float


class ResumeCommand(msgspec.Struct, tag="resume", **_S):
    """Run a finished, unsuccessful run again from where it ended."""

    run_id: str
    time: float


class OpReport(msgspec.Struct, tag="op_status", **_S):
    """An executor's report on one attempt (produced by the daemon's executors)."""

    run_id: str
    path: str
    attempt: int
    status: str
    time: float
    message: str | None = None
    reason: str | None = None
    exit_code: int | None = None
    outputs: dict[str, Any] | None = None
    # intermediate metrics reported by the running attempt ($FLOWD_METRICS lines)
    metrics: list[dict[str, Any]] | None = None


class TimerFiring(msgspec.Struct, tag="timer", **_S):
    """A timer the engine set came due (produced by the daemon's timer service)."""

    run_id: str
    timer_id: str
    time: float


RunsMessage = Submission | StopCommand | ApproveCommand | ResumeCommand | OpReport | TimerFiring

# ---------------------------------------------------------------------------- events (output)


class StatusEvent(msgspec.Struct, tag="status", **_S):
    """A status change of a pipeline (``path == ""``) or of one of its ops. Kafka key: ``run_id``.

    ``key`` identifies the event: ``RUN/PATH#ATTEMPT:STATUS``, then ``~N`` when the op already
    emitted that status for that attempt in that epoch (e.g. ``created~1`` with reason
    ``PendingApproval`` when it is held for approval), then ``@EPOCH`` after a resume. Distinct
    events have distinct keys and a replay re-derives the same ones: consumers dedupe on it."""

    run_id: str
    pipeline: str
    path: str
    status: str
    time: float
    key: str
    attempt: int = 0
    message: str | None = None
    reason: str | None = None
    outputs: dict[str, Any] | None = None
    # how many times the run was resumed before this event (0: never); the ``@N`` of ``key``
    epoch: int = 0
    # on ``compiled``: the runs the op's joins selected, ``<run id>/<op path>``, in order (lineage)
    joined: list[str] | None = None


class Diagnostic(msgspec.Struct, omit_defaults=True, kw_only=True):
    """One ``flowd check`` finding of an invalid submission."""

    path: str
    location: str
    message: str
    line: int | None = None
    column: int | None = None
    severity: str = "error"


class CompletionEvent(msgspec.Struct, tag="done", **_S):
    """The final status of a pipeline run. Emitted exactly once per epoch: once when the run
    ends (``key = RUN:done``, ``epoch = 0``), and once more each time a resumed run ends again
    (``RUN:done@1``, ``epoch = 1``, ...). The one with the highest ``epoch`` is the run's final status."""

    run_id: str
    pipeline: str
    status: str
    time: float
    key: str
    message: str | None = None
    # an invalid submission: the diagnostics ``flowd check`` would print
    diagnostics: list[Diagnostic] = []
    # how many times the run was resumed before it ended this time (the ``@N`` of ``key``)
    epoch: int = 0


class HookEvent(msgspec.Struct, tag="hook", **_S):
    """A hook of an op (``path``; ``""``: the pipeline) of run ``run_id`` was decided when the op
    ended ``trigger_status`` (POLYFLOW §8.3). ``status`` ``created``: the separate run
    ``hook_run_id`` was submitted (its own events are keyed by that id); ``skipped``: its
    conditions were false; ``failed``: it could not be resolved (``message``), nothing runs.
    Kafka key: ``run_id`` (the source). ``key``: ``RUN/PATH#ATTEMPT:hook-INDEX`` (``@EPOCH``
    after a resume)."""

    run_id: str
    pipeline: str
    path: str
    attempt: int
    index: int
    hub_ref: str
    trigger_status: str
    hook_run_id: str
    status: str
    time: float
    key: str
    message: str | None = None
    epoch: int = 0


EventsMessage = StatusEvent | CompletionEvent | HookEvent

# --------------------------------------------------------------------------- external (input)


class ExternalEvent(msgspec.Struct, tag="external", **_S):
    """An event from outside flowd, e.g. a git push: ``ref="connections.repo"``,
    ``kind="connection_git_commit"``. ``key`` is the producer's idempotency key: the same key
    never triggers a subscribed pipeline twice. Kafka key: ``ref``."""

    ref: str
    kind: str
    key: str
    time: float
    payload: dict[str, Any] = {}


# ----------------------------------------------------------------- subscriptions (compacted)


class Subscription(msgspec.Struct, tag="subscription", **_S):
    """A pipeline waiting for events (top-level ``events:``). Written by the daemon owning the
    submission; a tombstone (null value) ends it. Key: ``id`` (the submission's run id)."""

    id: str
    # [{ref: runs.UUID | pipelines.NAME | connections.NAME, kinds: [...]}]
    events: list[dict[str, Any]]
    # the pipeline each matching event starts (``events`` cleared)
    pipeline: Op
    time: float


# -------------------------------------------------------------------------------- deadletter


class DeadLetter(msgspec.Struct, tag="deadletter", **_S):
    """An input the daemon did not act on, kept verbatim with where it came from.

    ``reason``: ``undecodable`` (not JSON, or a tombstone), ``invalid`` (not a v1 message),
    ``wrong_key`` (a ``runs`` record whose Kafka key is not its ``run_id``), ``unknown_run`` (a
    command or report for a run its partition does not know), ``unknown_op`` (stop/approve of an
    op the run does not have), ``rejected`` (the engine refused it), ``handler_error`` (handling
    it raised: the partition was rebuilt and went on without it), ``crashed`` (the daemon died
    twice while handling it). ``error`` says what exactly."""

    reason: str
    error: str
    topic: str
    partition: int
    offset: int
    time: float
    key: bytes | None = None
    value: bytes | None = None


# ---------------------------------------------------------------------- snapshots (msgpack)


class DaemonState(msgspec.Struct, omit_defaults=True, kw_only=True):
    """What the daemon keeps beside the engine for one partition."""

    # attempts started and not yet terminal: key -> the command (re-issued after a restore)
    inflight: dict[str, StartOp] = {}
    # keys of those the engine asked to stop
    stopping: list[str] = []
    # run id -> finish time of runs dropped from the engine (a late duplicate Submit is ignored)
    finished: dict[str, float] = {}
    subscriptions: dict[str, Subscription] = {}
    # run id -> a submission whose urlRefs are being fetched (re-issued after a restore)
    fetching: dict[str, Submission] = {}


class SnapshotRecord(msgspec.Struct, omit_defaults=True, kw_only=True):
    """Format 1 (flowd before issue 15): the whole state of one ``runs`` partition in one record;
    ``offset`` is the next input offset it does not cover (replay starts there). Written in the
    same transaction as that offset's commit. Still read (a partition whose latest snapshot is
    one of these is restored from it, and its next snapshot is written in format 2)."""

    format: int = 1
    partition: int
    offset: int
    time: float
    engine: bytes
    daemon: DaemonState = msgspec.field(default_factory=DaemonState)


# --- format 2: incremental snapshots (flowd.daemon.snapshots) ----------------------------------
#
# A partition's state is a set of *blobs*: one per run (``run:<run id>``), one for the daemon's
# own bookkeeping (``daemon``) and an ``index`` naming every live blob. A blob is a byte string
# of frames (4-byte big-endian length + msgpack value), cut into chunk records of at most
# ``snapshots.CHUNK_BYTES`` keyed ``<partition>/<seq>/<name>/<i>``. The head (key
# ``<partition>``, where the format-1 record lived) is written last, in the same transaction.


class BlobRef(msgspec.Struct, array_like=True, gc=False):
    """Where one blob's chunks are: written by snapshot ``seq``, ``size`` bytes in all, chunk i
    at ``offsets[i]`` of the partition (keys ``<partition>/<seq>/<name>/<i>``)."""

    seq: int
    size: int
    offsets: list[int]


class SnapshotIndex(msgspec.Struct, omit_defaults=True, kw_only=True):
    """The live blobs of a partition (frame 0 of the ``index`` blob)."""

    runs: dict[str, BlobRef] = {}
    daemon: BlobRef | None = None
    # ``spec:<digest>`` -> a compiled pipeline shared by the runs whose ``RunAttempts.spec`` is
    # that digest (added after format 2's first release: an index without it has no spec blobs)
    specs: dict[str, BlobRef] = {}


class SnapshotHead(msgspec.Struct, kw_only=True):  # every field written: ``format`` tells it apart
    """The latest state of one ``runs`` partition, format 2 (key ``<partition>``): ``offset`` is
    the next input offset it does not cover, ``seq`` counts the partition's snapshots, ``index``
    locates the ``index`` blob. Written last, in the transaction that commits ``offset``."""

    format: int = 2
    partition: int
    offset: int
    time: float
    seq: int
    index: BlobRef


class RunAttempts(msgspec.Struct, omit_defaults=True, kw_only=True):
    """Frame 0 of a ``run:<id>`` blob (the engine's parts of the run follow, ``parts`` of them).

    The daemon's attempts in flight of the run are not stored: they are derived from the engine
    state (``Engine.in_flight``), except ``started``: attempts in flight whose command cannot be
    derived (rendered from templates; or the engine already ended the op, e.g. a timeout, while
    the executor still stops it); ``not_in_flight``: keys the state would derive that are not in
    flight; ``stopping``: keys of attempts the engine asked to stop."""

    parts: int
    started: list[StartOp] = []
    not_in_flight: list[str] = []
    stopping: list[str] = []
    # the run's compiled pipeline is the ``spec:<this>`` blob, not in its engine parts (empty:
    # it is in the parts, as written before spec blobs existed)
    spec: str = ""


class DaemonBlob(msgspec.Struct, omit_defaults=True, kw_only=True):
    """Frame 0 of the ``daemon`` blob: ``DaemonState`` without what the run blobs carry
    (``inflight`` here holds only attempts of runs the engine has forgotten)."""

    finished: dict[str, float] = {}
    subscriptions: dict[str, Subscription] = {}
    fetching: dict[str, Submission] = {}
    inflight: dict[str, StartOp] = {}
    stopping: list[str] = []


class HandlingMarker(msgspec.Struct, omit_defaults=True, kw_only=True):
    """"I am about to handle ``runs`` records [offset, end) of ``partition``": written (msgpack,
    key ``<partition>.handling``) to the ``snapshots`` topic before each batch, and read by the
    next owner. A marker at or past the committed offset, from another daemon, means its writer
    died while handling those records: the next owner handles them one at a time (each with its
    own marker) and dead-letters (``crashed``) one whose handling killed ``attempt >= 2`` owners.
    Internal to the daemon, like snapshots."""

    partition: int
    offset: int
    end: int
    # how many owners have started handling this range (this one included)
    attempt: int = 1
    # a record handled alone while isolating a suspected batch: where that batch ends
    range_end: int = 0
    # the daemon process that wrote it (its own markers never count as a death)
    owner: str
    time: float


class OpSummary(msgspec.Struct, omit_defaults=True, kw_only=True, gc=False):
    status: str
    attempt: int = 0
    message: str | None = None
    outputs: dict[str, Any] | None = None
    # why it is in its status: ``CacheHit`` (``message`` names the source run/op), ``Timeout``...
    reason: str | None = None
    # the op's resolved inputs (what the UI shows beside its outputs)
    params: dict[str, Any] | None = None
    # the last value of each intermediate metric it reported (what the UI's matrix table sorts by)
    metrics: dict[str, float] | None = None
    # when its current attempt started and when it ended (epoch seconds; the UI shows them)
    started_at: float | None = None
    finished_at: float | None = None


class CacheEntry(msgspec.Struct, tag="cache_entry", **_S):
    """A cached result (topic ``cache``, compacted, key = the cache key): the outputs of the
    attempt that succeeded with that key, written in the same transaction as the events that
    complete the op. Every replica reads the whole topic; an op whose key is found (and younger
    than its ``cache.ttl``) is reported ``succeeded`` with reason ``CacheHit`` without running."""

    key: str
    run_id: str
    path: str
    finished_at: float
    outputs: dict[str, Any] | None = None


class RunSummary(msgspec.Struct, tag="run_summary", **_S):
    """The latest status of one run (topic ``status``, compacted, key = run id, written in the
    same transaction as the run's events): what ``flowd runs`` and ``flowd status`` read instead
    of folding ``events``. ``ops`` is left out (``ops_omitted``) for runs with more than
    ``OPS_IN_SUMMARY`` ops; ``counts`` always has the ops by status."""

    run_id: str
    pipeline: str
    status: str
    time: float
    started_at: float | None = None
    finished_at: float | None = None
    message: str | None = None
    counts: dict[str, int] = {}
    ops: dict[str, OpSummary] = {}
    ops_omitted: bool = False
    # the run's DAG drawn from its compiled pipeline (left out with ``ops``): every node's kind
    # by path, in drawing order (nested DAGs' ops and matrix children after their parent, ops
    # not created yet included), and the dependency edges [upstream path, downstream path]
    kinds: dict[str, str] = {}
    edges: list[list[str]] = []


OPS_IN_SUMMARY = 2000


def run_summary(view: Any, *, time: float, pipeline: Op | None = None) -> RunSummary:
    """A :class:`RunSummary` from an engine ``RunView``; with the run's compiled ``pipeline``,
    its graph (``kinds``, ``edges``) too."""
    counts: dict[str, int] = {}
    for op in view.ops.values():
        counts[op.status] = counts.get(op.status, 0) + 1
    many = len(view.ops) > OPS_IN_SUMMARY
    ops = {} if many else {p: OpSummary(status=o.status, attempt=o.attempts, message=o.message, outputs=o.outputs,
                                        reason=o.reason, params=o.params or None,
                                        metrics=o.metrics, started_at=o.started_at, finished_at=o.finished_at) for p, o in view.ops.items()}
    kinds: dict[str, str] = {}
    edges: list[list[str]] = []
    if pipeline is not None and not many:
        from flowd.dagview import build_graph

        graph = build_graph(pipeline, view)
        kinds = {path: node.kind for path, node in graph.nodes.items()}
        edges = [list(e) for e in graph.edges]
    return RunSummary(run_id=view.run_id, pipeline=view.pipeline, status=view.status, time=time,
                      started_at=view.started_at, finished_at=view.finished_at, message=view.message,
                      counts=counts, ops=ops, ops_omitted=many, kinds=kinds, edges=edges)


TOPIC_TYPES: dict[str, Any] = {
    "runs": RunsMessage,
    "events": EventsMessage,
    "external": ExternalEvent,
    "subscriptions": Subscription,
    "deadletter": DeadLetter,
    "snapshots": SnapshotRecord,
    "status": RunSummary,
    "cache": CacheEntry,
}

_json_encoder = msgspec.json.Encoder()
_runs_decoder = msgspec.json.Decoder(RunsMessage)
_events_decoder = msgspec.json.Decoder(EventsMessage)
_external_decoder = msgspec.json.Decoder(ExternalEvent)
_subscription_decoder = msgspec.json.Decoder(Subscription)
_snapshot_decoder = msgspec.msgpack.Decoder(SnapshotRecord)
_deadletter_decoder = msgspec.json.Decoder(DeadLetter)
_status_decoder = msgspec.json.Decoder(RunSummary)


def decode_status(data: bytes) -> RunSummary:
    return _status_decoder.decode(data)


_cache_decoder = msgspec.json.Decoder(CacheEntry)


def decode_cache_entry(data: bytes) -> CacheEntry | None:
    """A ``cache`` record, or None for one that does not decode (skipped: a cache that cannot
    be read only costs a run)."""
    try:
        return _cache_decoder.decode(data)
    except msgspec.DecodeError:
        return None

_msgpack_encoder = msgspec.msgpack.Encoder()


def encode(message: Any) -> bytes:
    return _json_encoder.encode(message)


def marker_key(partition: int) -> bytes:
    """The ``snapshots`` key of a partition's handling marker (its snapshot's key is ``<partition>``)."""
    return f"{partition}.handling".encode()


def decode_runs(data: bytes) -> RunsMessage:
    return _runs_decoder.decode(data)


def decode_events(data: bytes) -> EventsMessage:
    return _events_decoder.decode(data)


def decode_external(data: bytes) -> ExternalEvent:
    return _external_decoder.decode(data)


def decode_subscription(data: bytes) -> Subscription:
    return _subscription_decoder.decode(data)


def decode_deadletter(data: bytes) -> DeadLetter:
    return _deadletter_decoder.decode(data)


_marker_decoder = msgspec.msgpack.Decoder(HandlingMarker)


def encode_marker(marker: HandlingMarker) -> bytes:
    return _msgpack_encoder.encode(marker)


def decode_marker(data: bytes) -> HandlingMarker:
    return _marker_decoder.decode(data)


class _Format(msgspec.Struct):
    format: int = 1


_format_decoder = msgspec.msgpack.Decoder(_Format)
_head_decoder = msgspec.msgpack.Decoder(SnapshotHead)


def snapshot_format(data: bytes) -> int:
    """1 for a whole-partition ``SnapshotRecord``, 2 for a ``SnapshotHead``."""
    return _format_decoder.decode(data).format


def encode_head(head: SnapshotHead) -> bytes:
    return _msgpack_encoder.encode(head)


def decode_head(data: bytes) -> SnapshotHead:
    return _head_decoder.decode(data)


def encode_snapshot(record: SnapshotRecord) -> bytes:
    return _msgpack_encoder.encode(record)


def decode_snapshot(data: bytes) -> SnapshotRecord:
    return _snapshot_decoder.decode(data)


def _normalise_descriptions(node: Any) -> Any:
    # msgspec copies docstrings into "description" and its releases differ in how they clean them
    # (0.23 dedents, earlier ones did not): the contract is our text, so we clean it ourselves
    if isinstance(node, dict):
        return {k: (inspect.cleandoc(v) if k == "description" and isinstance(v, str)
                    else _normalise_descriptions(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_normalise_descriptions(v) for v in node]
    return node


def schema(topic: str) -> dict[str, Any]:
    """The JSON Schema of one topic's messages (``proto/v1/<topic>.schema.json``)."""
    out = _normalise_descriptions(msgspec.json.schema(TOPIC_TYPES[topic]))
    out = {"$schema": "https://json-schema.org/draft/2020-12/schema",
           "$id": f"https://flowd.dev/proto/v{WIRE_VERSION}/{topic}.schema.json",
           "title": f"flowd {topic} topic, v{WIRE_VERSION}", **out}
    if topic == "snapshots":
        # every kind of record on the topic: the format-2 head and the frames of its blobs, the
        # format-1 record, the handling marker (chunk records are slices of a blob's frames)
        kinds = (SnapshotHead, SnapshotIndex, RunAttempts, DaemonBlob, SnapshotRecord, HandlingMarker)
        refs, defs = msgspec.json.schema_components(kinds, ref_template="#/$defs/{name}")
        out = {k: v for k, v in out.items() if k in ("$schema", "$id", "title")}
        out["oneOf"] = refs
        out["$defs"] = _normalise_descriptions(defs)
        out["description"] = ("msgpack-encoded (bytes fields are msgpack bin); internal to the daemon. "
                              "Key <N>: SnapshotHead (format 2) or SnapshotRecord (format 1); "
                              "<N>.handling: HandlingMarker; <N>/<seq>/<blob>/<i>: a chunk of a blob, whose "
                              "frames are SnapshotIndex (blob index), RunAttempts + engine parts "
                              "(run:<id>), DaemonBlob (daemon)")
    return out


EncodingName = Literal["json", "msgpack"]
TOPIC_ENCODING: dict[str, EncodingName] = {t: ("msgpack" if t == "snapshots" else "json") for t in TOPIC_TYPES}


def write_schemas(directory: str) -> list[str]:
    """Write ``proto/v1/<topic>.schema.json`` for every topic; returns the paths written."""
    import json
    from pathlib import Path

    out = Path(directory) / f"v{WIRE_VERSION}"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for topic in TOPIC_TYPES:
        path = out / f"{topic}.schema.json"
        path.write_text(json.dumps(schema(topic), indent=2, sort_keys=True) + "\n")
        written.append(str(path))
    return written


if __name__ == "__main__":  # python -m flowd.daemon.wire proto/
    import sys

    for written_path in write_schemas(sys.argv[1] if len(sys.argv) > 1 else "proto"):
        print(written_path)
