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

from flowd.engine import StartOp
from flowd.spec.compiled import Op

__all__ = [
    "WIRE_VERSION", "Submission", "StopCommand", "ApproveCommand", "OpReport", "TimerFiring",
    "ResumeCommand", "RunsMessage", "StatusEvent", "CompletionEvent", "EventsMessage", "ExternalEvent",
    "Subscription", "DeadLetter", "Diagnostic", "SnapshotRecord", "DaemonState", "TOPIC_TYPES",
    "encode", "decode_runs", "decode_events", "decode_external", "decode_subscription",
    "encode_snapshot", "decode_snapshot", "decode_deadletter",
]

WIRE_VERSION = 1

# gc=False: wire values are decoded JSON, never cyclic; untracked, they cost the collector nothing
_S = dict(tag_field="type", omit_defaults=True, kw_only=True, forbid_unknown_fields=False, gc=False)

# ------------------------------------------------------------------------------- runs (input)


class Submission(msgspec.Struct, tag="submit", **_S):  # type: ignore[call-arg]
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


class StopCommand(msgspec.Struct, tag="stop", **_S):  # type: ignore[call-arg]
    """Stop a run (``path == ""``) or one op of it; also ends a trigger subscription."""

    run_id: str
    time: float
    path: str = ""
    reason: str | None = None


class ApproveCommand(msgspec.Struct, tag="approve", **_S):  # type: ignore[call-arg]
    run_id: str
    path: str
    time: float


class ResumeCommand(msgspec.Struct, tag="resume", **_S):  # type: ignore[call-arg]
    """Run a finished, unsuccessful run again from where it ended."""

    run_id: str
    time: float


class OpReport(msgspec.Struct, tag="op_status", **_S):  # type: ignore[call-arg]
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


class TimerFiring(msgspec.Struct, tag="timer", **_S):  # type: ignore[call-arg]
    """A timer the engine set came due (produced by the daemon's timer service)."""

    run_id: str
    timer_id: str
    time: float


RunsMessage = Submission | StopCommand | ApproveCommand | ResumeCommand | OpReport | TimerFiring

# ---------------------------------------------------------------------------- events (output)


class StatusEvent(msgspec.Struct, tag="status", **_S):  # type: ignore[call-arg]
    """A status change of a pipeline (``path == ""``) or of one of its ops. ``key`` is
    deterministic (run, path, attempt, status): consumers dedupe on it. Key: ``run_id``."""

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


class Diagnostic(msgspec.Struct, omit_defaults=True, kw_only=True):
    """One ``flowd check`` finding of an invalid submission."""

    path: str
    location: str
    message: str
    line: int | None = None
    column: int | None = None
    severity: str = "error"


class CompletionEvent(msgspec.Struct, tag="done", **_S):  # type: ignore[call-arg]
    """The final status of a pipeline run; emitted exactly once per run (``key = RUN:done``)."""

    run_id: str
    pipeline: str
    status: str
    time: float
    key: str
    message: str | None = None
    # an invalid submission: the diagnostics ``flowd check`` would print
    diagnostics: list[Diagnostic] = []


EventsMessage = StatusEvent | CompletionEvent

# --------------------------------------------------------------------------- external (input)


class ExternalEvent(msgspec.Struct, tag="external", **_S):  # type: ignore[call-arg]
    """An event from outside flowd, e.g. a git push: ``ref="connections.repo"``,
    ``kind="connection_git_commit"``. ``key`` is the producer's idempotency key: the same key
    never triggers a subscribed pipeline twice. Kafka key: ``ref``."""

    ref: str
    kind: str
    key: str
    time: float
    payload: dict[str, Any] = {}


# ----------------------------------------------------------------- subscriptions (compacted)


class Subscription(msgspec.Struct, tag="subscription", **_S):  # type: ignore[call-arg]
    """A pipeline waiting for events (top-level ``events:``). Written by the daemon owning the
    submission; a tombstone (null value) ends it. Key: ``id`` (the submission's run id)."""

    id: str
    # [{ref: runs.UUID | pipelines.NAME | connections.NAME, kinds: [...]}]
    events: list[dict[str, Any]]
    # the pipeline each matching event starts (``events`` cleared)
    pipeline: Op
    time: float


# -------------------------------------------------------------------------------- deadletter


class DeadLetter(msgspec.Struct, tag="deadletter", **_S):  # type: ignore[call-arg]
    """An input the daemon could not use, kept verbatim with where it came from."""

    reason: str  # undecodable | invalid | unsupported
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


class SnapshotRecord(msgspec.Struct, omit_defaults=True, kw_only=True):
    """The latest state of one ``runs`` partition; ``offset`` is the next input offset it does
    not cover (replay starts there). Written in the same transaction as that offset's commit."""

    format: int = 1
    partition: int
    offset: int
    time: float
    engine: bytes
    daemon: DaemonState = msgspec.field(default_factory=DaemonState)


TOPIC_TYPES: dict[str, Any] = {
    "runs": RunsMessage,
    "events": EventsMessage,
    "external": ExternalEvent,
    "subscriptions": Subscription,
    "deadletter": DeadLetter,
    "snapshots": SnapshotRecord,
}

_json_encoder = msgspec.json.Encoder()
_runs_decoder = msgspec.json.Decoder(RunsMessage)
_events_decoder = msgspec.json.Decoder(EventsMessage)
_external_decoder = msgspec.json.Decoder(ExternalEvent)
_subscription_decoder = msgspec.json.Decoder(Subscription)
_snapshot_decoder = msgspec.msgpack.Decoder(SnapshotRecord)
_deadletter_decoder = msgspec.json.Decoder(DeadLetter)
_msgpack_encoder = msgspec.msgpack.Encoder()


def encode(message: Any) -> bytes:
    return _json_encoder.encode(message)


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
        out["description"] = "msgpack-encoded (bytes fields are msgpack bin); internal to the daemon"
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
