"""The wire contract: proto/v1 is exactly what the msgspec types generate, and messages
round-trip. If this fails after a change to flowd/daemon/wire.py or flowd/spec/compiled.py,
regenerate with ``python -m flowd.daemon.wire proto`` and review the diff as a contract change."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from flowd.daemon import wire

PROTO = Path(__file__).resolve().parents[3] / "proto" / f"v{wire.WIRE_VERSION}"


@pytest.mark.parametrize("topic", sorted(wire.TOPIC_TYPES))
def test_checked_in_schema_matches_the_code(topic: str) -> None:
    path = PROTO / f"{topic}.schema.json"
    assert path.exists(), f"{path} is missing: run `python -m flowd.daemon.wire proto`"
    checked_in = json.loads(path.read_text())
    assert checked_in == json.loads(json.dumps(wire.schema(topic))), (
        f"{path} drifted from flowd.daemon.wire: run `python -m flowd.daemon.wire proto` and review the diff"
    )


def test_every_topic_has_a_schema_file_and_nothing_else() -> None:
    assert sorted(p.name for p in PROTO.glob("*.schema.json")) == sorted(f"{t}.schema.json" for t in wire.TOPIC_TYPES)


def test_a_foreign_submission_decodes() -> None:
    # what proto/README.md tells a producer in another language to send
    raw = b'{"type":"submit","run_id":"r1","time":1700000000.5,"spec":"version: 1.1\\nkind: component\\n","params":{"lr":"0.1"},"extra":1}'
    msg = wire.decode_runs(raw)
    assert isinstance(msg, wire.Submission) and msg.params == {"lr": "0.1"} and msg.pipeline is None


@pytest.mark.parametrize("message", [
    wire.StopCommand(run_id="r", time=1.0, path="a", reason="why"),
    wire.ApproveCommand(run_id="r", path="a", time=1.0),
    wire.OpReport(run_id="r", path="a", attempt=2, status="succeeded", time=1.0, outputs={"x": 1}),
    wire.TimerFiring(run_id="r", timer_id="timeout:a#1", time=2.0),
])
def test_runs_messages_round_trip(message: object) -> None:
    assert wire.decode_runs(wire.encode(message)) == message


def test_events_round_trip_and_tags() -> None:
    status = wire.StatusEvent(run_id="r", pipeline="p", path="", status="running", time=1.0, key="r/#0:running")
    done = wire.CompletionEvent(run_id="r", pipeline="p", status="failed", time=2.0, key="r:done",
                                diagnostics=[wire.Diagnostic(path="f.yaml", location="run", message="bad", line=3)])
    for event in (status, done):
        data = wire.encode(event)
        assert json.loads(data)["type"] in ("status", "done")
        assert wire.decode_events(data) == event


def test_snapshot_record_round_trips_in_msgpack() -> None:
    rec = wire.SnapshotRecord(partition=3, offset=42, time=1.0, engine=b"\x01\x02")
    assert wire.decode_snapshot(wire.encode_snapshot(rec)) == rec


def test_bad_input_raises_decode_errors() -> None:
    with pytest.raises(msgspec.ValidationError):
        wire.decode_runs(b'{"type":"submit","time":"soon"}')
    with pytest.raises(msgspec.DecodeError):
        wire.decode_runs(b"\x00garbage")
